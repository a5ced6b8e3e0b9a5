"""CTF-weighted backprojection: a map recovered from its own noiseless projections, and sums
that add up (new particles are added, never recomputed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch_fourier_shell_correlation import fourier_shell_correlation

from causalscope.models.reconstruction import Accumulator, backprojection
from tests.models.reconstruction._maps import blob_map, particle_images

APIX = 2.0


def _accumulate(images, rotations, ctfs, offsets, index=None, weights=None):  # type: ignore[no-untyped-def]
    index = np.arange(len(images)) if index is None else index
    accumulator = Accumulator(images.shape[-1])
    accumulator.add(
        images[index],
        rotations[index],
        ctfs.take(index).rfft_grid(accumulator.padded_px),
        shifts_px=offsets[index],
        weights=None if weights is None else weights[index],
    )
    return accumulator


def test_noiseless_projections_with_ctf_and_shifts_give_back_the_map() -> None:
    box = 32
    truth = blob_map(box, seed=1)
    images, rotations, ctfs, offsets = particle_images(truth, 1500, pixel_size_angstrom=APIX)
    reconstruction = _accumulate(images, rotations, ctfs, offsets).reconstruct()
    curve = fourier_shell_correlation(reconstruction, truth)
    # the blobs (1.5-3 px wide) have power in the first 7 of 17 shells;
    # measured: 0.957 or more to shell 6, then the truth's power vanishes
    assert float(curve[:7].min()) > 0.93
    scale = float((reconstruction * truth).sum() / (truth * truth).sum())
    assert 0.9 < scale < 1.1  # the Wiener sum keeps the map's scale


def test_two_half_sets_add_up_to_all_the_particles() -> None:
    images, rotations, ctfs, offsets = particle_images(blob_map(24), 60, pixel_size_angstrom=APIX)
    everything = _accumulate(images, rotations, ctfs, offsets)
    halves = [_accumulate(images, rotations, ctfs, offsets, np.arange(h, 60, 2)) for h in (0, 1)]
    merged = halves[0].merged(halves[1])
    assert merged.count == everything.count == 60
    torch.testing.assert_close(merged.data, everything.data, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(merged.weight, everything.weight, atol=1e-3, rtol=1e-4)


def test_a_weight_of_two_counts_a_particle_twice() -> None:
    images, rotations, ctfs, offsets = particle_images(blob_map(24), 5, pixel_size_angstrom=APIX)
    weights = torch.tensor([2.0, 1.0, 1.0, 1.0, 1.0])
    weighted = _accumulate(images, rotations, ctfs, offsets, weights=weights)
    twice = _accumulate(images, rotations, ctfs, offsets, np.array([0, 0, 1, 2, 3, 4]))
    torch.testing.assert_close(weighted.data, twice.data, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(weighted.weight, twice.weight, atol=1e-3, rtol=1e-4)


def test_many_particles_at_once_go_in_chunks_that_sum_as_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """120 particles in one call are inserted in chunks (so memory does not grow with the
    count): at box 24 (padded 48: 1,200 samples a particle) and 96 particles' samples a
    chunk, 96 and 24; the sums equal those of one chunk of all 120."""
    images, rotations, ctfs, offsets = particle_images(blob_map(24), 120, pixel_size_angstrom=APIX)
    weights = torch.linspace(0.5, 1.5, 120)
    calls: list[int] = []
    insert = backprojection.Accumulator._insert

    def counted(self: Accumulator, images: torch.Tensor, *args: Any) -> None:
        calls.append(len(images))
        insert(self, images, *args)

    monkeypatch.setattr(backprojection.Accumulator, "_insert", counted)
    monkeypatch.setattr(backprojection, "_SAMPLES_PER_CHUNK", 96 * 48 * 25)
    chunked = _accumulate(images, rotations, ctfs, offsets, weights=weights)
    assert calls == [96, 24]
    monkeypatch.setattr(backprojection, "_SAMPLES_PER_CHUNK", 1 << 40)
    whole = _accumulate(images, rotations, ctfs, offsets, weights=weights)
    assert calls[2:] == [120]
    assert chunked.count == whole.count == 120
    torch.testing.assert_close(chunked.data, whole.data, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(chunked.weight, whole.weight, atol=1e-3, rtol=1e-4)
