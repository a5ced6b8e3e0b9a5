"""The whole-frame alignment's measured frequency weights (``models/motion/_weights.py``)."""

from __future__ import annotations

import math

import numpy as np
import torch

from causalscope.daemon.bench.motion import motion_errors, simulate_bench_movie
from causalscope.models.dose import dose_filter
from causalscope.models.motion import align_global, apply_gain_and_defects
from causalscope.models.motion._align import DamageModel
from causalscope.models.motion._fourier import bfactor_filter, crop_frequencies
from causalscope.models.motion._weights import signal_weights


def _specimen_power(k: torch.Tensor) -> torch.Tensor:
    """A CTF-like power: rings with zeros, under a Gaussian envelope (cycles/px)."""
    return 400.0 * torch.sin(math.pi * k / 0.04) ** 2 * torch.exp(-30.0 * k**2)


def test_weights_follow_the_specimens_power_and_the_damage() -> None:
    """Known truth: 12 frames of one specimen drawn with a ring-shaped power (zeros every
    0.04 cycles/px), each damaged at its dose and with white noise of known power per frame,
    summed aligned. Averaged on rings two samples wide (as they are measured), the weights
    must match ``D_f A_f S / (N_f (A_f^2 S + N_ref))`` computed from the true ``S`` averaged
    on the same rings, up to a common scale (where that is above 0.3 of the largest, half the
    rings within 2 % and nine in ten within 5 %, measured 0.3 % and 1.9 %; everywhere within
    0.1 of the largest, as the noise and its subtracted margin blur weak rings; on rings of 100
    coefficients or more), and fall from the first frame to the last at high frequency
    (damage). A blank movie (no signal, no noise) beside it is reported as such."""
    generator = torch.Generator().manual_seed(3)
    shape = (512, 512)
    crop = (512, 512)
    ky, kx = crop_frequencies(shape, crop, device=torch.device("cpu"))
    k = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    frames = 12
    noise = torch.linspace(20.0, 30.0, frames, dtype=torch.float64)
    dose = (torch.arange(frames, dtype=torch.float64) + 0.5) * 2.0
    damage = dose_filter(k, accumulated_dose_e_per_a2=dose, voltage_kv=300.0)  # (F, H, Wr)
    power = _specimen_power(k)

    def complex_normal(variance: torch.Tensor) -> torch.Tensor:
        parts = torch.randn((2, *variance.shape), generator=generator, dtype=torch.float64)
        return torch.complex(parts[0], parts[1]) * torch.sqrt(variance / 2.0)

    specimen = complex_normal(power)
    total = damage.sum(dim=0) * specimen
    for f in range(frames):
        total = total + complex_normal(noise[f].expand_as(power))
    filt = bfactor_filter(ky, kx, pixel_size_angstrom=1.0, bfactor_angstrom2=20.0)
    # two movies: the specimen, and a blank one (no signal, no noise)
    weights, measured = signal_weights(
        filt,
        ky,
        kx,
        shape,
        torch.stack([total * filt, torch.zeros_like(total)]).to(torch.complex64),
        torch.stack([noise, torch.zeros_like(noise)]).to(torch.float32),
        damage=DamageModel(dose, 300.0, 1.0).amplitudes,
    )
    assert weights.shape == (2, frames, *k.shape)
    assert measured.tolist() == [True, False]
    assert float(weights[1].abs().max()) == 0.0
    applied = weights[0].to(torch.float64) * filt.square()  # what each cross-spectrum gets

    ring = torch.round(k * shape[0] / 2.0).long()
    count = torch.bincount(ring.reshape(-1)).to(torch.float64)

    def on_rings(values: torch.Tensor) -> torch.Tensor:
        flat = values.reshape(-1, ring.numel())
        sums = torch.zeros((flat.shape[0], len(count)), dtype=torch.float64)
        return sums.index_add_(1, ring.reshape(-1), flat) / count.clamp(min=1)

    # the truth as the weights see it: the specimen's mean power on each ring
    ring_power = on_rings(power)[0][ring]
    others = damage.sum(dim=0, keepdim=True) - damage
    noise_others = noise.sum() - noise
    ideal = (
        damage
        * others
        * ring_power
        / (noise[:, None, None] * (others**2 * ring_power + noise_others[:, None, None]))
    )
    ideal_rings = on_rings(ideal)
    ideal_rings = ideal_rings / ideal_rings.max()
    full = count >= 100
    strong = (ideal_rings > 0.3) & full
    applied_rings = on_rings(applied)
    # the weights' scale is free: take it on the strong rings
    applied_rings = applied_rings / (applied_rings[strong] / ideal_rings[strong]).median()
    relative = (applied_rings / ideal_rings - 1.0)[strong].abs()
    quantiles = torch.quantile(relative, torch.tensor([0.5, 0.9], dtype=torch.float64))
    assert float(quantiles[0]) < 0.02 and float(quantiles[1]) < 0.05, quantiles
    assert float((applied_rings - ideal_rings)[:, full].abs().max()) < 0.1
    centre = torch.arange(len(count), dtype=torch.float64) * 2.0 / shape[0]
    band = (centre > 0.18) & (centre < 0.22)
    assert float(applied_rings[0, band].sum()) > 3.0 * float(applied_rings[-1, band].sum())


def test_measured_weights_align_a_low_dose_movie_better_than_the_fixed_filter() -> None:
    """Bench seed 1 (1024^2 x 20, 2 e/A^2 per frame, 1.5 px local warp), errors as the bench
    scores them.

    - The global trajectory with the fixed filter (B = 80 A^2 and the damage) was 0.113 px,
      with the measured weights 0.084 px. Over bench seeds 0-31 the mean went from 0.084 to
      0.068 px, and the seeds above 0.1 px from 9 to 2.
    - The local field from the same global shifts, the patches aligned with their measured
      weights in one round against the fixed filter (B = 100 A^2 and the damage) in two:
      0.143 against 0.239 px through ``correct_motion``; over seeds 0-7 and 16-23 0.168
      against 0.232 px, better on every seed.
    """
    from causalscope.models.motion import align_patches, fit_local_model
    from causalscope.models.motion.global_alignment import damage_model

    torch.set_num_threads(1)
    sim, detector = simulate_bench_movie(1024, 20, 1)
    frames = apply_gain_and_defects(sim.frames, gain=detector.gain_reference).frames
    errors, shifts = {}, np.zeros((20, 2))
    for measured in (False, True):
        result = align_global(
            frames,
            pixel_size_angstrom=1.0,
            dose_per_frame_e_per_a2=2.0,
            voltage_kv=300.0,
            measured_weights=measured,
        )
        assert result.converged
        shifts = np.asarray(result.shifts_px)
        errors[measured] = motion_errors(shifts, None, sim)["global_rms_px"]
    assert errors[True] <= 0.1, errors
    assert errors[True] < 0.85 * errors[False], errors

    damage = damage_model(
        20,
        pixel_size_angstrom=1.0,
        dose_per_frame_e_per_a2=2.0,
        pre_exposure_e_per_a2=0.0,
        voltage_kv=300.0,
    )
    local = {}
    for measured, rounds in ((False, 2), (True, 1)):
        patches = align_patches(
            frames,
            shifts,
            patches=(5, 5),
            pixel_size_angstrom=1.0,
            iterations=rounds,
            damage=damage,
            measured_weights=measured,
        )
        model = fit_local_model(patches, shifts, image_shape=(1024, 1024))
        local[measured] = motion_errors(shifts, model, sim)["local_rms_px"]
    assert local[True] <= 0.2, local
    assert local[True] < 0.75 * local[False], local


def test_patches_aligned_together_match_patches_aligned_one_at_a_time() -> None:
    """A GPU aligns every patch in one stack, a CPU one patch at a time: with measured weights
    each patch must get its own (the same shifts either way, to 1e-6 px), a blank patch keeps
    the fixed (damage) filter, and the textured patches recover their true shifts (within
    0.1 px)."""
    import dataclasses

    from causalscope.models.motion._align import align_stack, prepare_spectra
    from causalscope.models.motion._fourier import phase_ramp

    generator = torch.Generator().manual_seed(5)
    frames, size = 8, 128
    truth = torch.cumsum(torch.rand((3, frames, 2), generator=generator, dtype=torch.float64), 1)
    truth = truth - truth[:, :1]
    ky = torch.fft.fftfreq(size, dtype=torch.float64)
    kx = torch.fft.rfftfreq(size, dtype=torch.float64)
    envelope = torch.exp(-200.0 * (ky[:, None] ** 2 + kx[None, :] ** 2))
    movies = torch.zeros((3, frames, size, size))
    for p in range(2):  # the third patch stays blank
        texture = torch.fft.rfft2(
            torch.randn((size, size), generator=generator, dtype=torch.float64)
        )
        texture = texture * envelope
        for f in range(frames):
            moved = texture * phase_ramp(truth[p, f : f + 1], ky, kx)[0]
            clean = 20.0 + 4.0 * torch.fft.irfft2(moved, s=(size, size)) / float(envelope.mean())
            movies[p, f] = torch.poisson(clean.clamp(min=0.0), generator=generator).float()
    stack = prepare_spectra(movies, pixel_size_angstrom=2.0, bfactor_angstrom2=50.0, taper_px=8)
    options = {
        "iterations": 3,
        "tolerance_px": 0.01,
        "max_shift_px": 4.0,
        "smooth": False,
        "measured_weights": True,
        "damage": DamageModel(torch.arange(frames, dtype=torch.float64) + 0.5, 300.0, 2.0),
    }
    start = torch.zeros((3, frames, 2), dtype=torch.float64)
    together, _, _, _ = align_stack(stack, initial_px=start, **options)
    for p in range(3):
        one = dataclasses.replace(
            stack, spectra=stack.spectra[p : p + 1], noise_power=stack.noise_power[p : p + 1]
        )
        alone, _, _, _ = align_stack(one, initial_px=start[p : p + 1], **options)
        assert float((alone[0] - together[p]).abs().max()) < 1e-6, p
    for p in range(2):
        error = together[p] - truth[p]
        error = error - error.mean(dim=0)
        assert float(error.abs().max()) < 0.1, (p, error)
