"""Periodogram normalisation, layout, batching and spectrum recognition."""

from __future__ import annotations

import math
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from causalscope.models.ctf_estimation import looks_like_power_spectrum, power_spectrum


@pytest.mark.parametrize("taper_px", [0, 32])
def test_white_noise_gives_a_flat_spectrum_of_its_variance(taper_px: int) -> None:
    sigma = 3.0
    g = torch.Generator().manual_seed(0)
    image = sigma * torch.randn(1024, 1024, generator=g, dtype=torch.float64)
    ps = power_spectrum(image, box_px=256, taper_px=taper_px)
    values = ps.values.clone()
    values[128, 128] = float("nan")  # the tile mean is removed: DC is ~0
    assert float(values.nanmean()) == pytest.approx(sigma**2, rel=0.01)
    # flat: quadrant means agree (a taper must not tilt the floor)
    for q in (values[:128, :128], values[128:, 128:], values[:128, 128:]):
        assert float(q.nanmean()) == pytest.approx(sigma**2, rel=0.02)
    assert ps.n_tiles == 49 and ps.n_independent < ps.n_tiles


def test_centred_layout_puts_a_cosine_at_its_frequency() -> None:
    n, box = 512, 128
    y, x = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    image = torch.cos(2 * math.pi * (8 * x / box + 4 * y / box)).double()
    ps = power_spectrum(image, box_px=box, taper_px=0).values
    peak = np.unravel_index(int(torch.argmax(ps)), ps.shape)
    assert {tuple(int(v) for v in peak)} <= {(64 + 4, 64 + 8), (64 - 4, 64 - 8)}
    assert float(ps[64 + 4, 64 + 8]) == pytest.approx(float(ps[64 - 4, 64 - 8]))


def test_batched_equals_looped() -> None:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(3, 600, 700, generator=g)
    batched = power_spectrum(images, box_px=256).values
    for i in range(3):
        torch.testing.assert_close(batched[i], power_spectrum(images[i], box_px=256).values)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="smaller than box_px"):
        power_spectrum(torch.zeros(100, 100), box_px=256)
    with pytest.raises(ValueError, match="even"):
        power_spectrum(torch.zeros(300, 300), box_px=255)
    with pytest.raises(ValueError, match="overlap"):
        power_spectrum(torch.zeros(300, 300), box_px=256, overlap=0.95)


def test_recognises_power_spectra(shared_data: Path) -> None:
    files = sorted((shared_data / "relion_tutorial" / "power_spectra").glob("*_PS.mrc"))
    assert len(files) == 12
    for path in files:
        with mrcfile.open(path) as mrc:
            data = np.array(mrc.data)
        assert looks_like_power_spectrum(data), path.name
        assert looks_like_power_spectrum(np.log(data)), path.name


def test_micrographs_are_not_power_spectra() -> None:
    g = torch.Generator().manual_seed(2)
    micrograph = torch.poisson(torch.full((512, 512), 40.0), generator=g)
    assert not looks_like_power_spectrum(micrograph)
    assert looks_like_power_spectrum(power_spectrum(micrograph, box_px=256).values)
    assert not looks_like_power_spectrum(torch.ones(64, 64))
    assert not looks_like_power_spectrum(torch.zeros(64, 32))
