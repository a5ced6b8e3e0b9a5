"""The Cramér–Rao bound of a periodogram's CTF fit against Monte Carlo Whittle fits."""

from __future__ import annotations

import math

import pytest
import torch

from causalscope.models.ctf_estimation._model import Optics, phase
from causalscope.models.ctf_estimation.bound import CtfBound, ctf_cramer_rao

OPTICS = {
    "pixel_size_angstrom": 1.0,
    "voltage_kv": 300.0,
    "spherical_aberration_mm": 2.7,
    "amplitude_contrast": 0.07,
}
D_U, D_V, ANGLE = 15_200.0, 14_800.0, 30.0
K_MIN, K_MAX = 1.0 / 20.0, 1.0 / 4.0


def _signal(k: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.exp(-((k / 0.3) ** 2))


def _background(k: torch.Tensor) -> torch.Tensor:
    return 1.0 + 0.5 * torch.exp(-k / 0.1)


def _profiles() -> dict[str, torch.Tensor]:
    k = torch.linspace(0.0, 0.75, 1501, dtype=torch.float64)
    return {"profile_k": k, "signal": _signal(k), "background": _background(k)}


def _bound(size: int, **changes: float) -> CtfBound:
    geometry = {"defocus_u_angstrom": D_U, "defocus_v_angstrom": D_V, "defocus_angle_deg": ANGLE}
    return ctf_cramer_rao(size, **OPTICS, **{**geometry, **changes}, **_profiles())  # type: ignore[arg-type]


def _whittle_fits(size: int, draws: int, seed: int) -> torch.Tensor:
    """Maximum-Whittle-likelihood ``(d, a1, a2)`` of ``draws`` Gaussian images whose spectrum is
    ``B + E sin^2(chi + w)``: Fisher scoring from the truth on the whole ``rfft2`` band (each
    conjugate pair on the kx = 0 column twice: that changes the likelihood's scale, not its
    maximum). Independent of the bound's own grid, so a wrong pairing there shows."""
    optics = Optics(300.0, 2.7, 0.07)
    half, two = 0.5 * (D_U - D_V), math.radians(2 * ANGLE)
    truth = torch.tensor(
        [0.5 * (D_U + D_V), half * math.cos(two), half * math.sin(two), 0.0], dtype=torch.float64
    )
    ky = torch.fft.fftfreq(size, dtype=torch.float64)
    kx = torch.fft.rfftfreq(size, dtype=torch.float64)
    gy, gx = torch.meshgrid(ky, kx, indexing="ij")
    k = torch.sqrt(gx * gx + gy * gy)
    theta = torch.atan2(gy, gx)
    cos2, sin2 = torch.cos(2 * theta), torch.sin(2 * theta)
    sig, bg = _signal(k), _background(k)
    mu_true = bg + sig * torch.sin(phase(k, cos2, sin2, truth, optics)) ** 2
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(draws, size, size, generator=gen, dtype=torch.float64)
    images = torch.fft.irfft2(torch.fft.rfft2(noise) * mu_true.sqrt(), s=(size, size))
    band = (k >= K_MIN) & (k <= K_MAX)
    power = (torch.fft.rfft2(images).abs() ** 2 / size**2)[:, band]
    kb, c2, s2, sb, bb = k[band], cos2[band], sin2[band], sig[band], bg[band]
    basis = torch.stack([torch.ones_like(c2), c2, s2], dim=-1)
    lam = optics.wavelength_angstrom
    params = truth.expand(draws, 4).clone()
    for _ in range(10):
        chi = phase(kb, c2, s2, params, optics)
        mu = bb + sb * torch.sin(chi) ** 2
        jac = (sb * torch.sin(2 * chi) * math.pi * lam * kb * kb)[..., None] * basis
        score = torch.einsum("dm,dmi->di", (power - mu) / mu**2, jac)
        fisher = torch.einsum("dmi,dmj->dij", jac / mu[..., None] ** 2, jac)
        params[:, :3] += torch.linalg.solve(fisher, score)
    return params[:, :3]


def test_bound_matches_monte_carlo_whittle_fits() -> None:
    size, draws = 256, 300
    fits = _whittle_fits(size, draws, seed=7)
    bound = _bound(size)
    defocus, astig = fits[:, 0], 2.0 * torch.hypot(fits[:, 1], fits[:, 2])
    assert abs(float(defocus.std()) / bound.defocus_sd_angstrom - 1.0) < 0.15
    assert abs(float(astig.std()) / bound.astigmatism_sd_angstrom - 1.0) < 0.15
    # unbiased: d, a1 and a2 (|a| itself is biased up by noise, ~sd^2 / (2 |a|))
    half, two = 0.5 * (D_U - D_V), math.radians(2 * ANGLE)
    truth = torch.tensor([0.5 * (D_U + D_V), half * math.cos(two), half * math.sin(two)])
    error = (fits.mean(0) - truth.to(fits.dtype)).abs()
    assert bool((error < 3.0 * fits.std(0) / math.sqrt(draws)).all()), error


def test_sd_halves_when_the_image_doubles() -> None:
    small, large = _bound(512), _bound(1024)
    for name in ("defocus_sd_angstrom", "astigmatism_sd_angstrom", "angle_sd_deg"):
        assert getattr(large, name) / getattr(small, name) == pytest.approx(0.5, rel=0.03)


def test_astigmatism_sd_is_2_sqrt2_defocus_sd_without_astigmatism() -> None:
    # many rings (3 um, to 3 A): cos^2 2theta and sin^2 2theta average 1/2 over each ring
    bound = _bound(1024, defocus_u_angstrom=30_000.0, defocus_v_angstrom=30_000.0)
    sd = torch.linalg.inv(bound.fisher).diagonal().sqrt()
    assert float(sd[1] / sd[0]) == pytest.approx(math.sqrt(2.0), rel=0.1)
    assert float(sd[2] / sd[0]) == pytest.approx(math.sqrt(2.0), rel=0.1)
    ratio = bound.astigmatism_sd_angstrom / bound.defocus_sd_angstrom
    assert ratio == pytest.approx(2.0 * math.sqrt(2.0), rel=0.1)
    assert bound.angle_sd_deg is None


@pytest.mark.parametrize(
    ("size", "changes", "message"),
    [
        (255, {}, "255"),
        (0, {}, "size_px"),
        (256, {"background": -2.0}, "background"),
        (256, {"signal_length": 3.0}, "profile lengths"),
        (256, {"min_resolution_angstrom": 3.5}, "3.5"),
    ],
)
def test_bad_inputs_name_the_value(size: int, changes: dict[str, float], message: str) -> None:
    profiles = _profiles()
    if "background" in changes:
        profiles["background"] = profiles["background"] + changes.pop("background")
    if changes.pop("signal_length", None):
        profiles["signal"] = profiles["signal"][:3]
    geometry = {"defocus_u_angstrom": D_U, "defocus_v_angstrom": D_V, "defocus_angle_deg": ANGLE}
    with pytest.raises(ValueError, match=message):
        ctf_cramer_rao(size, **OPTICS, **geometry, **profiles, **changes)  # type: ignore[arg-type]
