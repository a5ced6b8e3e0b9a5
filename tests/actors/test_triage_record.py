"""The exposure worker's triage: the micrograph binned to ~4 A/px (block means) gives the
verdict the triage gives at that sampling, its statistics those of a Fourier binning, and a
field too narrow for its statistics gives none."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from causalscope.actors._repro import triage_binned, triage_record
from causalscope.models.simulate.triage_scenes import simulate_triage_micrograph


@pytest.mark.parametrize("kind", ["usable", "ice_only"])
def test_a_2_a_per_px_micrograph_is_binned_and_classified(kind: str) -> None:
    scene = simulate_triage_micrograph(kind, size_px=1024, pixel_size_angstrom=2.0, seed=3)
    record = triage_record(torch.as_tensor(scene.image), pixel_size_angstrom=2.0)
    assert record is not None and record.label == kind, record
    assert sum(record.scores.values()) == pytest.approx(1.0)
    assert record.p_usable == pytest.approx(record.scores["usable"])
    assert (record.p_usable > 0.5) == (kind == "usable")


def test_a_narrow_field_is_not_triaged() -> None:
    image = torch.as_tensor(np.random.default_rng(0).normal(100.0, 10.0, (512, 512)))
    assert triage_record(image, pixel_size_angstrom=3.0) is None  # 1536 A wide


@pytest.mark.parametrize("kind", ["usable", "ice_only", "empty"])
def test_block_means_keep_the_statistics_of_a_fourier_binning(kind: str) -> None:
    """At 1 A/px the micrograph is binned 4x4 to 4 A/px by block means: the verdict is right,
    and the statistics the verdict rests on agree with a Fourier binning: the power over the
    white floor within 2 % (white noise stays white under block means; the signal at
    1/200-1/20 A loses 0-12 % of its power), the others within 3 %."""
    from causalscope.models.picking._common import crop_spectrum
    from causalscope.models.triage import triage_features

    scene = simulate_triage_micrograph(kind, size_px=2048, pixel_size_angstrom=1.0, seed=1)
    image = torch.as_tensor(scene.image, dtype=torch.float32)
    record = triage_record(image, pixel_size_angstrom=1.0)
    assert record is not None and record.label == kind, record
    spectrum = crop_spectrum(torch.fft.rfft2(image), (512, 512))
    fourier = (torch.fft.irfft2(spectrum, s=(512, 512)) / 16).numpy()
    binned, apix = triage_binned(image, pixel_size_angstrom=1.0)
    assert apix == 4.0 and binned.shape == (512, 512)
    assert binned[3, 5] == pytest.approx(float(image[12:16, 20:24].mean()), rel=1e-6)
    a = triage_features(fourier, pixel_size_angstrom=4.0)
    b = triage_features(binned, pixel_size_angstrom=4.0)
    assert b.noise_to_mean == pytest.approx(a.noise_to_mean, rel=0.03)
    assert b.local_mean_range == pytest.approx(a.local_mean_range, rel=0.03)
    assert 1 + b.structure_excess == pytest.approx(1 + a.structure_excess, rel=0.02)
    # the kurtosis of ice alone is near 0: compared absolutely there
    assert b.blob_kurtosis == pytest.approx(a.blob_kurtosis, rel=0.03, abs=0.01)


@pytest.mark.parametrize(("kind", "seed"), [("crystalline_ice", 0), ("usable", 0), ("ice_only", 2)])
def test_crystalline_ice_is_seen_although_the_binning_hides_its_planes(
    kind: str, seed: int
) -> None:
    """At 1.2 A/px the micrograph is binned to 3.6 A/px, where Nyquist (7.2 A) is far from the
    ice's 3.4-4.0 A planes: windows at full sampling still find the Bragg spots of crystalline
    domains (in seed 0 they do not cover the centre), and find none in amorphous ice."""
    scene = simulate_triage_micrograph(kind, size_px=2048, pixel_size_angstrom=1.2, seed=seed)
    record = triage_record(torch.as_tensor(scene.image), pixel_size_angstrom=1.2)
    assert record is not None and record.label == kind, record
    if kind == "crystalline_ice":
        assert "Bragg spots" in record.reason
