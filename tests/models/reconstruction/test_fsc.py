"""Gold-standard FSC: identities, the SNR it implies, resolution crossings, and the mask's
correlation removed by phase randomisation."""

from __future__ import annotations

import math

import pytest
import torch

from causalscope.models.parallel import one_torch_thread
from causalscope.models.reconstruction import (
    fsc_resolution_angstrom,
    half_map_fsc,
    soft_spherical_mask,
)
from tests._fake_cuda import FakeCuda


def test_a_map_against_itself_reaches_nyquist() -> None:
    volume = torch.randn(32, 32, 32, generator=torch.Generator().manual_seed(0))
    result = half_map_fsc(volume, volume, pixel_size_angstrom=1.5)
    assert torch.allclose(result.unmasked, torch.ones_like(result.unmasked), atol=1e-5)
    assert result.resolution_angstrom(masked=False) == pytest.approx(3.0)


def test_fsc_of_white_signal_and_noise_is_snr_over_one_plus_snr() -> None:
    g = torch.Generator().manual_seed(1)
    signal = torch.randn(48, 48, 48, generator=g)
    noise_sd = 0.7  # SNR 1 / 0.49 per half-map: expected FSC 0.671
    a = signal + noise_sd * torch.randn(48, 48, 48, generator=g)
    b = signal + noise_sd * torch.randn(48, 48, 48, generator=g)
    curve = half_map_fsc(a, b, pixel_size_angstrom=1.0).unmasked
    expected = (1 / noise_sd**2) / (1 + 1 / noise_sd**2)
    assert float(curve[5:].mean()) == pytest.approx(expected, abs=0.01)


def test_resolution_is_where_the_curve_first_falls_below_the_threshold() -> None:
    curve = torch.tensor([1.0, 0.9, 0.6, 0.2, 0.1, 0.3, 0.05])  # 7 shells: shell i at i/12 1/px
    # 0.143 is crossed between shells 3 (0.2) and 4 (0.1): at 3.57 / 12 cycles per pixel
    expected = 1.0 / ((3 + (0.2 - 0.143) / 0.1) / 12 / 2.0)
    assert fsc_resolution_angstrom(curve, pixel_size_angstrom=2.0) == pytest.approx(expected)
    assert fsc_resolution_angstrom(curve, pixel_size_angstrom=2.0, threshold=0.5) == pytest.approx(
        1.0 / ((2 + 0.1 / 0.4) / 12 / 2.0)
    )
    assert math.isinf(
        fsc_resolution_angstrom(torch.tensor([1.0, 0.1, 0.0]), pixel_size_angstrom=1.0)
    )


def test_phase_randomisation_removes_the_correlation_a_sharp_mask_creates() -> None:
    g = torch.Generator().manual_seed(2)
    box = 48
    k = torch.sqrt(
        torch.fft.fftfreq(box)[:, None, None] ** 2
        + torch.fft.fftfreq(box)[None, :, None] ** 2
        + torch.fft.rfftfreq(box)[None, None, :] ** 2
    )
    smooth = torch.fft.irfftn(
        torch.fft.rfftn(torch.randn(box, box, box, generator=g)) * (k < 0.1), s=(box,) * 3
    )
    smooth = smooth / smooth.std()
    a = smooth + 0.3 * torch.randn(box, box, box, generator=g)
    b = smooth + 0.3 * torch.randn(box, box, box, generator=g)
    sharp = soft_spherical_mask(box, radius_px=14.0, edge_px=0.0)
    result = half_map_fsc(a, b, pixel_size_angstrom=1.0, mask=sharp)
    beyond = slice(int(0.15 * box), box // 2)  # no shared signal beyond 0.1 cycles per pixel
    uncorrected = half_map_fsc(a * sharp, b * sharp, pixel_size_angstrom=1.0).unmasked
    # measured: uncorrected 0.2-0.9 (the mask's edge spreads the shared low-resolution signal),
    # corrected -0.18 to 0.01, mean -0.05
    assert float(uncorrected[beyond].mean()) > 0.3
    assert abs(float(result.masked[beyond].mean())) < 0.1


def test_the_masked_fsc_keeps_to_the_maps_device() -> None:
    """Half-maps on "cuda" (CUDA's device rules enforced on this CPU, :mod:`tests._fake_cuda`)
    with a mask made on the CPU, as callers make it: the phase randomisation (its frequencies,
    phases and shell index were CPU tensors) follows the maps and gives the same curve."""
    g = torch.Generator().manual_seed(3)
    signal = torch.randn(24, 24, 24, generator=g)  # SNR 1 per half-map: an FSC of 0.5
    a = signal + torch.randn(24, 24, 24, generator=g)
    b = signal + torch.randn(24, 24, 24, generator=g)
    mask = soft_spherical_mask(24, radius_px=8.0, edge_px=3.0)
    plain = half_map_fsc(a, b, pixel_size_angstrom=1.0, mask=mask)
    with one_torch_thread(), FakeCuda():  # a CPU tensor meeting the maps' would raise
        result = half_map_fsc(a.to("cuda"), b.to("cuda"), pixel_size_angstrom=1.0, mask=mask)
        assert result.masked.device.type == "cuda"
        masked = result.masked.cpu()
    assert bool((plain.unmasked[1:] < 0.8).any())  # the randomisation ran
    torch.testing.assert_close(masked, plain.masked, rtol=0, atol=0)
