"""The particle-stack simulator against an independent projection (a direct Fourier sum over
the atoms), the fractions it was asked for, and the normalisation extraction promises."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from causalscope.models.ctf import bfactor_envelope, ctf_at, frequency_grid
from causalscope.models.restoration.ctf_correction import phase_flip
from causalscope.models.restoration.normalise import normalise_particles
from causalscope.models.simulate.particle_stack import project_specimen, simulate_particle_stack
from causalscope.models.simulate.specimen import (
    Specimen,
    composite_form_factor,
    elongated_phantom_specimen,
    random_rotations,
)
from causalscope.models.units import electron_wavelength_angstrom, relativistic_gamma

BOX, APIX, KV = 48, 2.5, 300.0


@pytest.fixture(scope="module")
def small() -> Specimen:
    return elongated_phantom_specimen(seed=3, n_atoms=400)


def _direct_phase_spectrum(
    specimen: Specimen, rotation: np.ndarray, shift_px: np.ndarray, canvas: int
) -> torch.Tensor:
    """The projected phase on the canvas's rfft grid by a direct sum over atoms (no splat)."""
    kx_c, ky_c = frequency_grid((canvas, canvas), pixel_size_angstrom=1.0, dtype=torch.float64)
    k = torch.sqrt(kx_c**2 + ky_c**2) / APIX
    weights, shape = composite_form_factor(specimen, k, voltage_kv=KV)
    xy = (specimen.coords_angstrom @ rotation.T)[:, :2] / APIX + shift_px + canvas // 2
    xy_t = torch.as_tensor(xy)
    phase = -2j * math.pi * (kx_c[..., None] * xy_t[:, 0] + ky_c[..., None] * xy_t[:, 1])
    total = (weights * torch.exp(phase)).sum(-1)
    gamma_lambda = relativistic_gamma(KV) * electron_wavelength_angstrom(KV)
    return total * shape * gamma_lambda / APIX**2


def _crop(image: torch.Tensor, canvas: int) -> np.ndarray:
    start = canvas // 2 - BOX // 2
    return image[..., start : start + BOX, start : start + BOX].numpy()


def _low_pass(image: np.ndarray, cycles_per_px: float = 0.3) -> np.ndarray:
    """Bilinear splatting's aliasing is an error near Nyquist: compare below 0.6 Nyquist."""
    k = np.fft.fftfreq(image.shape[-1])
    keep = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2) < cycles_per_px
    return np.fft.ifft2(np.fft.fft2(image) * keep).real


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _low_pass(a), _low_pass(b)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_projection_equals_a_direct_sum_over_the_atoms(small: Specimen) -> None:
    rotation = random_rotations(np.random.default_rng(5), 1)
    shift = np.array([1.3, -0.7])
    image = project_specimen(
        small, rotation, box_px=BOX, pixel_size_angstrom=APIX, shifts_px=shift[None]
    )[0]
    canvas = 2 * BOX
    truth = torch.fft.irfft2(_direct_phase_spectrum(small, rotation[0], shift, canvas))
    assert _corr(image, _crop(truth, canvas)) > 0.998
    # the transposed pose (the other rotation convention) is a different image
    wrong = torch.fft.irfft2(_direct_phase_spectrum(small, rotation[0].T, shift, canvas))
    assert _corr(image, _crop(wrong, canvas)) < 0.8
    # phase scale: the direct sum's mean phase per pixel, within 2 %
    assert image.sum() == pytest.approx(_crop(truth, canvas).sum(), rel=0.02)


def test_noiseless_particle_is_the_ctf_transfer_of_the_projection(small: Specimen) -> None:
    """Counts, CTF, B-factor, phase flip, inversion and normalisation of the direct sum."""
    rotations = random_rotations(np.random.default_rng(7), 3)
    stack = simulate_particle_stack(
        {"rod": small}, n=3, box_px=BOX, pixel_size_angstrom=APIX, seed=2, noiseless=True,
        rotations=rotations, bfactor_angstrom2=40.0, max_shift_px=3.0,
    )  # fmt: skip
    canvas = 2 * BOX
    kx, ky = frequency_grid((canvas, canvas), pixel_size_angstrom=APIX, dtype=torch.float64)
    for i in range(3):
        ctf = {
            "defocus_u_angstrom": float(stack.defocus_u_angstrom[i]),
            "defocus_v_angstrom": float(stack.defocus_v_angstrom[i]),
            "defocus_angle_deg": float(stack.defocus_angle_deg[i]),
        }
        transfer = ctf_at(
            kx, ky, voltage_kv=KV, spherical_aberration_mm=2.7, amplitude_contrast=0.07, **ctf
        ) * bfactor_envelope(kx, ky, bfactor_angstrom2=40.0)
        phi = _direct_phase_spectrum(small, rotations[i], stack.shifts_px[i], canvas)
        contrast = torch.as_tensor(_crop(torch.fft.irfft2(phi * transfer), canvas))
        counts = 1.0 - 0.3 * contrast  # any dose and gain: normalisation removes both
        flipped = phase_flip(
            counts, pixel_size_angstrom=APIX, voltage_kv=KV, spherical_aberration_mm=2.7,
            amplitude_contrast=0.07, **ctf,
        )  # fmt: skip
        expected = normalise_particles(-flipped, background_radius_px=0.375 * BOX).numpy()
        assert _corr(stack.images[i], expected) > 0.995
    assert stack.labels.tolist() == ["rod"] * 3


def test_batched_projection_equals_one_at_a_time(small: Specimen) -> None:
    rotations = random_rotations(np.random.default_rng(1), 4)
    shifts = np.random.default_rng(2).uniform(-2, 2, (4, 2))
    batched = project_specimen(
        small, rotations, box_px=BOX, pixel_size_angstrom=APIX, shifts_px=shifts
    )
    for i in range(4):
        one = project_specimen(
            small, rotations[i : i + 1], box_px=BOX, pixel_size_angstrom=APIX,
            shifts_px=shifts[i : i + 1],
        )  # fmt: skip
        np.testing.assert_allclose(batched[i], one[0], atol=1e-6 * np.abs(one).max())


def test_labels_are_drawn_at_the_requested_fractions(small: Specimen) -> None:
    n = 1500
    junk = {"ice": 0.10, "aggregate": 0.15, "carbon": 0.05}
    stack = simulate_particle_stack(
        {"a": small, "b": small}, n=n, box_px=16, pixel_size_angstrom=12.0, seed=4,
        species_fractions={"a": 3.0, "b": 1.0}, junk_fractions=junk,
    )  # fmt: skip
    expected = {**junk, "a": 0.7 * 0.75, "b": 0.7 * 0.25}
    for label, p in expected.items():
        tolerance = 4.0 * math.sqrt(p * (1 - p) / n)
        assert np.mean(stack.labels == label) == pytest.approx(p, abs=tolerance), label


def test_images_are_normalised_and_protein_is_bright() -> None:
    rod = elongated_phantom_specimen(seed=1)
    kwargs = {
        "n": 40, "box_px": BOX, "pixel_size_angstrom": APIX, "seed": 9, "max_shift_px": 0.0,
        "junk_fractions": {"carbon": 0.2, "ice": 0.2},
    }  # fmt: skip
    stack = simulate_particle_stack({"rod": rod}, **kwargs)  # type: ignore[arg-type]
    c = np.arange(BOX) - BOX // 2
    r = np.sqrt(c[:, None] ** 2 + c[None, :] ** 2)
    background = stack.images[:, r > 0.375 * BOX]
    np.testing.assert_allclose(background.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(background.std(axis=1, ddof=1), 1.0, atol=1e-4)
    good = stack.labels == "rod"
    # the particle's centre is brighter than the background (noise of this mean: ~0.02)
    assert stack.images[good][:, r < 6].mean() > 0.2
    assert stack.euler_deg.shape == (40, 3)
    again = simulate_particle_stack({"rod": rod}, **kwargs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(stack.images, again.images)


def test_shot_noise_falls_with_dose() -> None:
    """Without ice the spectral SNR ``rho^2 / (1 - rho^2)`` against the noiseless image grows
    with the dose: 4x the electrons, 4x the SNR."""
    rod = elongated_phantom_specimen(seed=1)
    kwargs = {"n": 24, "box_px": BOX, "pixel_size_angstrom": APIX, "seed": 1, "ice_noise": False}
    clean = simulate_particle_stack({"rod": rod}, noiseless=True, **kwargs).images  # type: ignore[arg-type]
    snr = []
    for dose in (10.0, 40.0):
        noisy = simulate_particle_stack({"rod": rod}, dose_e_per_a2=dose, **kwargs).images  # type: ignore[arg-type]
        rho = (noisy * clean).sum() / np.sqrt((noisy**2).sum() * (clean**2).sum())
        snr.append(rho**2 / (1 - rho**2))
    assert snr[1] / snr[0] == pytest.approx(4.0, rel=0.15)


def test_bad_input_is_named(small: Specimen) -> None:
    with pytest.raises(ValueError, match="box_px"):
        simulate_particle_stack({"a": small}, n=2, box_px=15, pixel_size_angstrom=2.0, seed=0)
    with pytest.raises(ValueError, match="junk_fractions"):
        simulate_particle_stack(
            {"a": small}, n=2, box_px=16, pixel_size_angstrom=2.0, seed=0,
            junk_fractions={"dust": 0.1},
        )  # fmt: skip
    with pytest.raises(ValueError, match="specimens"):
        simulate_particle_stack({"ice": small}, n=2, box_px=16, pixel_size_angstrom=2.0, seed=0)


def test_apoferritin_projects_as_a_hollow_shell(shared_data) -> None:  # type: ignore[no-untyped-def]
    """6z6u (human apoferritin, a 24-mer shell of inner radius ~40 A and outer ~62 A): the
    rotational average of its projection peaks at the inner radius, where the chord through
    the shell is longest, and vanishes beyond the outer radius."""
    from causalscope.daemon.formats import read_structure

    atoms = read_structure(shared_data / "models" / "6z6u.pdb")
    specimen = Specimen(
        np.asarray(atoms.coords_angstrom, dtype=np.float64), np.asarray(atoms.element_index),
        tuple(atoms.elements), np.asarray(atoms.scattering_a), np.asarray(atoms.scattering_b),
    )  # fmt: skip
    rotations = random_rotations(np.random.default_rng(0), 3)
    image = project_specimen(specimen, rotations, box_px=96, pixel_size_angstrom=2.0).mean(0)
    c = np.arange(96) - 48
    ring = np.round(np.sqrt(c[:, None] ** 2 + c[None, :] ** 2)).astype(int).ravel()
    profile = np.bincount(ring, image.ravel()) / np.bincount(ring)
    assert 38.0 <= 2.0 * np.argmax(profile) <= 52.0
    assert 58.0 <= 2.0 * np.flatnonzero(profile > 0.05 * profile.max()).max() <= 70.0
