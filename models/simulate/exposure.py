"""One exposure of the fake microscope: specimen -> optics -> motion -> detector.

Image formation (weak-phase object, RELION's CTF convention, see :mod:`models.ctf`):

1. The ice is cut into slabs (<= 10 nm each). Each slab holds the particles whose centre lies
   in it and a random field of vitreous water; its phase ``Phi_s(k)`` is transferred with the
   CTF at that slab's defocus (``defocus + z``), so thick ice damps the Thon rings as in
   CTFFIND5's model, and every particle is imaged at its own height.
2. ``C(k) = sum_s CTF_s Phi_s`` times the temporal and spatial coherence envelopes, a B-factor,
   the beam-tilt phase and the detector MTF.
3. Frame f: the radiation-damage filter at its mid-frame dose, its mean shift, the blur of its
   straight motion path, then the local deformation (bicubic warp), giving the contrast c_f.
4. Electrons per pixel: ``dose_f * A_px * (1 - 2 P_el c_f)`` without an energy filter (the
   inelastic fraction ``1 - P_el = 1 - exp(-t / Lambda_in)`` arrives too but carries no
   contrast) or ``dose_f * A_px * P_el * (1 - 2 c_f)`` behind a zero-loss slit; Poisson counts
   scaled by the pixel sensitivity, plus hot pixels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from causalscope.models.ctf import (
    beam_tilt_phase,
    bfactor_envelope,
    ctf_at,
    frequency_grid,
    spatial_coherence_envelope,
    temporal_coherence_envelope,
)
from causalscope.models.dose import dose_filter
from causalscope.models.simulate._particles import Particles, draw_particles, slab_atoms
from causalscope.models.simulate.detector import (
    DetectorTruth,
    MtfFunction,
    analytic_counting_mtf,
    count_electrons,
)
from causalscope.models.simulate.motion import MotionTruth, draw_motion, local_displacement_px
from causalscope.models.simulate.specimen import (
    Specimen,
    composite_form_factor,
    euler_zyz_from_matrices,
    gridding_correction,
    splat_bilinear,
    water_phase_psd,
)
from causalscope.models.units import (
    ANGSTROM_PER_NM,
    electron_wavelength_angstrom,
    relativistic_gamma,
)

__all__ = [
    "ExposureParameters",
    "SimulatedExposure",
    "inelastic_mean_free_path_nm",
    "simulate_exposure",
]

_MAX_SLAB_NM = 10.0


def inelastic_mean_free_path_nm(voltage_kv: float) -> float:
    """Inelastic mean free path in vitreous ice: ~350 nm at 300 kV, scaled by beta^2 below."""
    gamma = relativistic_gamma(voltage_kv)
    beta2 = 1.0 - 1.0 / gamma**2
    gamma300 = relativistic_gamma(300.0)
    return 350.0 * beta2 / (1.0 - 1.0 / gamma300**2)


@dataclass(frozen=True)
class ExposureParameters:
    """Every generating parameter of one exposure (the truth file records all of them)."""

    size_px: int = 1024
    n_frames: int = 20
    pixel_size_angstrom: float = 1.0
    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.07
    chromatic_aberration_mm: float = 2.7
    energy_spread_ev: float = 0.8
    illumination_aperture_mrad: float = 0.01
    energy_filter: bool = False
    dose_e_per_a2: float = 40.0
    defocus_u_angstrom: float = 15_000.0
    defocus_v_angstrom: float = 14_600.0
    defocus_angle_deg: float = 30.0
    phase_shift_deg: float = 0.0
    ice_thickness_nm: float = 30.0
    beam_tilt_x_mrad: float = 0.0
    beam_tilt_y_mrad: float = 0.0
    bfactor_angstrom2: float = 20.0
    drift_total_px: float = 8.0
    drift_direction_deg: float = 30.0
    drift_decay_frames: float = 4.0
    drift_jitter_px: float = 0.3
    local_motion_px: float = 1.0
    intra_frame_blur: bool = True
    n_particles: int = 40
    broken_fraction: float = 0.0
    aggregate_fraction: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "size_px": self.size_px >= 16,
            "n_frames": self.n_frames >= 1,
            "pixel_size_angstrom": self.pixel_size_angstrom > 0,
            "voltage_kv": 60 <= self.voltage_kv <= 400,
            "amplitude_contrast": 0 <= self.amplitude_contrast < 1,
            "dose_e_per_a2": self.dose_e_per_a2 > 0,
            "ice_thickness_nm": self.ice_thickness_nm > 0,
            "n_particles": self.n_particles >= 0,
            "broken_fraction": 0 <= self.broken_fraction <= 1,
            "aggregate_fraction": 0 <= self.aggregate_fraction <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name} out of range: {getattr(self, name)!r}")


@dataclass
class SimulatedExposure:
    """A simulated movie and everything known about it.

    Attributes
    ----------
    frames
        ``(F, h, w)`` raw counts (uint8, or uint16 where counts exceed 255).
    truth
        JSON-able truth record (see :func:`simulate_exposure`).
    static_counts
        ``(h, w)`` expected total counts without motion or noise (the movie's ideal sum).
    clean_phase
        ``(h, w)`` projected phase of the particles alone (radians): no CTF, ice or noise.
    motion
        The drawn motion.
    """

    frames: np.ndarray
    truth: dict[str, Any]
    static_counts: np.ndarray
    clean_phase: np.ndarray
    motion: MotionTruth
    expected_frames: np.ndarray | None = field(default=None, repr=False)


def simulate_exposure(
    params: ExposureParameters,
    *,
    specimen: Specimen,
    mtf: MtfFunction | None = None,
    detector: DetectorTruth | None = None,
    keep_expected: bool = False,
    device: torch.device | str = "cpu",
) -> SimulatedExposure:
    """Render one movie and its truth from ``params`` (deterministic for a given seed).

    ``truth`` holds every field of ``params`` plus ``shifts_px`` (``[[x, y]]`` per frame,
    frame 0 = ``[0, 0]``), ``particles`` (``[[x, y]]`` px in frame 0), per-particle
    ``particle_classes``, ``particle_depths_nm`` and ``particle_euler_deg`` (RELION rot, tilt,
    psi), the local-motion coefficients and profile, the beam tilt and the detector's defects.
    """
    rng = np.random.default_rng(params.seed)
    torch_rng = torch.Generator(device=device).manual_seed(params.seed)
    motion = draw_motion(
        rng,
        n_frames=params.n_frames,
        total_drift_px=params.drift_total_px,
        direction_deg=params.drift_direction_deg,
        decay_frames=params.drift_decay_frames,
        jitter_px=params.drift_jitter_px,
        local_amplitude_px=params.local_motion_px,
    )
    canvas = _canvas(params, motion, device)
    particles = draw_particles(
        rng,
        specimen,
        n_particles=params.n_particles,
        size_px=params.size_px,
        pixel_size_angstrom=params.pixel_size_angstrom,
        ice_thickness_nm=params.ice_thickness_nm,
        broken_fraction=params.broken_fraction,
        aggregate_fraction=params.aggregate_fraction,
    )
    total, particles_only, n_slabs = _specimen_wave(
        params, specimen, particles, canvas, rng=rng, generator=torch_rng
    )
    total = _apply_optics(total, params, canvas, analytic_counting_mtf if mtf is None else mtf)
    dose = _Dose.of(params)
    frames, expected_frames, mean_damage = _render_frames(
        total,
        params,
        motion,
        canvas,
        dose,
        detector,
        keep_expected=keep_expected,
        generator=torch_rng,
    )
    window, m_size, n_frames = canvas.window, canvas.size, params.n_frames
    static = torch.fft.irfft2(total * mean_damage, s=(m_size, m_size))[window, window]
    static_counts = (
        (n_frames * dose.counts_per_unit * (1.0 - dose.contrast_gain * static)).cpu().numpy()
    )
    clean = torch.fft.irfft2(particles_only, s=(m_size, m_size))[window, window].cpu().numpy()
    truth = _truth(params, specimen, motion, particles, detector)
    truth["p_elastic"] = dose.p_elastic
    truth["n_slabs"] = n_slabs
    return SimulatedExposure(
        frames,
        truth,
        static_counts.astype(np.float32),
        clean.astype(np.float32),
        motion,
        expected_frames,
    )


@dataclass(frozen=True)
class _Canvas:
    """The image plus room for the motion; ``rfft2`` frequencies (``*_c``: cycles/px, else 1/A)."""

    size: int  # canvas side, px (a multiple of 16)
    offset: int  # the image's first row and column on the canvas
    n: int  # the image's side, px
    kx_c: torch.Tensor
    ky_c: torch.Tensor
    kx: torch.Tensor
    ky: torch.Tensor
    k: torch.Tensor

    @property
    def window(self) -> slice:
        """The image's rows (or columns) on the canvas."""
        return slice(self.offset, self.offset + self.n)


def _canvas(params: ExposureParameters, motion: MotionTruth, device: torch.device | str) -> _Canvas:
    n, apix = params.size_px, params.pixel_size_angstrom
    margin = math.ceil(np.abs(motion.shifts_px).max() + 1.5 * params.local_motion_px + 16)
    m_size = int(math.ceil((n + 2 * margin) / 16) * 16)
    kx_c, ky_c = frequency_grid((m_size, m_size), pixel_size_angstrom=1.0, device=device)
    kx, ky = kx_c / apix, ky_c / apix
    k = torch.sqrt(kx * kx + ky * ky)
    return _Canvas(m_size, (m_size - n) // 2, n, kx_c, ky_c, kx, ky, k)


def _specimen_wave(
    params: ExposureParameters,
    specimen: Specimen,
    particles: Particles,
    canvas: _Canvas,
    *,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(C, particles, n_slabs)``: the CTF-transferred phase ``sum_s CTF_s Phi_s`` of every
    slab of ice (particles and water), and the particles' phase alone (``rfft2`` layout)."""
    apix, m_size, device = params.pixel_size_angstrom, canvas.size, canvas.k.device
    thickness_a = params.ice_thickness_nm * ANGSTROM_PER_NM
    n_slabs = max(1, math.ceil(params.ice_thickness_nm / _MAX_SLAB_NM))
    edges = np.linspace(-thickness_a / 2, thickness_a / 2, n_slabs + 1)
    slab_centres = 0.5 * (edges[:-1] + edges[1:])
    slab_of = np.clip(
        np.searchsorted(edges, particles.depths_angstrom, side="right") - 1, 0, n_slabs - 1
    )
    dtype = torch.float32
    atom_weights, shape_factor = composite_form_factor(
        specimen, canvas.k, voltage_kv=params.voltage_kv
    )
    gamma_lambda = relativistic_gamma(params.voltage_kv) * electron_wavelength_angstrom(
        params.voltage_kv
    )
    phase_scale = (
        (gamma_lambda / apix**2) * shape_factor * gridding_correction(canvas.kx_c, canvas.ky_c)
    )
    slab_psd = water_phase_psd(
        canvas.k, thickness_angstrom=thickness_a / n_slabs, voltage_kv=params.voltage_kv
    )
    solvent_scale = torch.sqrt(slab_psd / apix**2).to(dtype)
    total = torch.zeros_like(canvas.kx, dtype=torch.complex64)
    particles_only = torch.zeros_like(total)
    for s in range(n_slabs):
        points, weights = slab_atoms(
            atom_weights,
            specimen,
            particles,
            slab_of == s,
            apix=apix,
            offset=canvas.offset,
            rng=rng,
        )
        phi = torch.zeros_like(total)
        if len(points):
            splat = splat_bilinear(
                torch.as_tensor(points, dtype=torch.float64, device=device),
                torch.as_tensor(weights, dtype=torch.float64, device=device),
                (m_size, m_size),
            ).to(dtype)
            phi = torch.fft.rfft2(splat) * phase_scale
            particles_only += phi
        noise = torch.randn((m_size, m_size), generator=generator, device=device, dtype=dtype)
        phi = phi + torch.fft.rfft2(noise) * solvent_scale
        height = float(slab_centres[s])  # below mid-ice: that much more defocus
        ctf = ctf_at(
            canvas.kx,
            canvas.ky,
            defocus_u_angstrom=params.defocus_u_angstrom + height,
            defocus_v_angstrom=params.defocus_v_angstrom + height,
            defocus_angle_deg=params.defocus_angle_deg,
            voltage_kv=params.voltage_kv,
            spherical_aberration_mm=params.spherical_aberration_mm,
            amplitude_contrast=params.amplitude_contrast,
            phase_shift_deg=params.phase_shift_deg,
        )
        total += ctf * phi
    return total, particles_only, n_slabs


def _apply_optics(
    total: torch.Tensor, params: ExposureParameters, canvas: _Canvas, mtf: MtfFunction
) -> torch.Tensor:
    """``total`` times the coherence envelopes, the B-factor, the detector MTF and the
    beam-tilt phase."""
    kx, ky = canvas.kx, canvas.ky
    mean_defocus = 0.5 * (params.defocus_u_angstrom + params.defocus_v_angstrom)
    envelope = (
        temporal_coherence_envelope(
            kx,
            ky,
            voltage_kv=params.voltage_kv,
            chromatic_aberration_mm=params.chromatic_aberration_mm,
            energy_spread_ev=params.energy_spread_ev,
        )
        * spatial_coherence_envelope(
            kx,
            ky,
            defocus_angstrom=mean_defocus,
            voltage_kv=params.voltage_kv,
            spherical_aberration_mm=params.spherical_aberration_mm,
            illumination_aperture_mrad=params.illumination_aperture_mrad,
        )
        * bfactor_envelope(kx, ky, bfactor_angstrom2=params.bfactor_angstrom2)
        * mtf(torch.sqrt(canvas.kx_c**2 + canvas.ky_c**2))
    )
    tilt = beam_tilt_phase(
        kx,
        ky,
        beam_tilt_x_mrad=params.beam_tilt_x_mrad,
        beam_tilt_y_mrad=params.beam_tilt_y_mrad,
        voltage_kv=params.voltage_kv,
        spherical_aberration_mm=params.spherical_aberration_mm,
    )
    return total * envelope * torch.exp(1j * tilt)


@dataclass(frozen=True)
class _Dose:
    """How contrast becomes counts (step 4 of the module docstring)."""

    p_elastic: float  # fraction of electrons scattered elastically or not at all
    per_frame_e_per_a2: float
    counts_per_unit: float  # expected counts per pixel per frame at zero contrast
    contrast_gain: float  # counts = counts_per_unit * (1 - contrast_gain * contrast)

    @classmethod
    def of(cls, params: ExposureParameters) -> _Dose:
        mfp = inelastic_mean_free_path_nm(params.voltage_kv)
        p_elastic = math.exp(-params.ice_thickness_nm / mfp)
        dose_frame = params.dose_e_per_a2 / params.n_frames
        filtered = params.energy_filter
        counts_per_unit = (
            dose_frame * params.pixel_size_angstrom**2 * (p_elastic if filtered else 1.0)
        )
        return cls(p_elastic, dose_frame, counts_per_unit, 2.0 * (1.0 if filtered else p_elastic))


def _render_frames(
    total: torch.Tensor,
    params: ExposureParameters,
    motion: MotionTruth,
    canvas: _Canvas,
    dose: _Dose,
    detector: DetectorTruth | None,
    *,
    keep_expected: bool,
    generator: torch.Generator,
) -> tuple[np.ndarray, np.ndarray | None, torch.Tensor]:
    """``(frames, expected_frames, mean_damage)``: each frame's counts (uint8, or uint16 where
    they exceed 255), optionally its expected counts, and the frames' mean damage filter."""
    n, n_frames, m_size, device = params.size_px, params.n_frames, canvas.size, canvas.k.device
    mid_doses = (np.arange(n_frames) + 0.5) * dose.per_frame_e_per_a2
    ramp_x = torch.fft.rfftfreq(m_size, device=device, dtype=torch.float64)
    ramp_y = torch.fft.fftfreq(m_size, device=device, dtype=torch.float64)
    frames = np.empty((n_frames, n, n), dtype=np.uint8)
    expected_frames = np.empty((n_frames, n, n), dtype=np.float32) if keep_expected else None
    mean_damage = torch.zeros_like(canvas.k)
    warp = (
        _LocalWarp(motion, n, m_size, canvas.offset, device) if params.local_motion_px > 0 else None
    )
    for f in range(n_frames):
        damage = dose_filter(
            canvas.k, accumulated_dose_e_per_a2=float(mid_doses[f]), voltage_kv=params.voltage_kv
        )
        mean_damage += damage / n_frames
        sx, sy = motion.shifts_px[f]
        # the shift's phase ramp is separable: two 1-D exponentials, one outer product
        ramp = (
            torch.exp(-2j * math.pi * ramp_y * sy)[:, None]
            * torch.exp(-2j * math.pi * ramp_x * sx)[None, :]
        ).to(torch.complex64)
        spectrum = total * damage * ramp
        if params.intra_frame_blur:
            px, py = motion.frame_paths_px[f]
            spectrum *= torch.sinc(canvas.kx_c * px + canvas.ky_c * py)
        contrast = torch.fft.irfft2(spectrum, s=(m_size, m_size))
        del spectrum, ramp
        if warp is not None:
            contrast = F.grid_sample(
                contrast[None, None],
                warp.grid(f)[None],
                mode="bicubic",
                padding_mode="border",
                align_corners=False,
            )[0, 0]
        else:
            contrast = contrast[canvas.window, canvas.window]
        expected = (dose.counts_per_unit * (1.0 - dose.contrast_gain * contrast)).clamp(min=0.0)
        if expected_frames is not None:
            expected_frames[f] = expected.cpu().numpy()
        counts = count_electrons(expected, detector=detector, generator=generator)
        if counts.max().item() > np.iinfo(frames.dtype).max:
            frames = frames.astype(np.uint16)  # rare: hot pixels or a very high dose
        frames[f] = counts.cpu().numpy()
    return frames, expected_frames, mean_damage


class _LocalWarp:
    """Sampling grids of the local warp: one spatial field, scaled per frame by the profile."""

    def __init__(
        self, motion: MotionTruth, n: int, m_size: int, offset: int, device: torch.device | str
    ) -> None:
        ys, xs = np.mgrid[0:n, 0:n].astype(np.float32)
        field = local_displacement_px(
            motion.local_coefficients_px, np.ones(1), x_px=xs, y_px=ys, size_px=n, frame=0
        )
        scale = 2.0 / m_size
        base = np.stack([(xs + offset + 0.5), (ys + offset + 0.5)], axis=-1) * scale - 1.0
        self._base = torch.from_numpy(base.astype(np.float32)).to(device)
        self._field = torch.from_numpy((field * scale).astype(np.float32)).to(device)
        self._profile = motion.local_profile

    def grid(self, frame: int) -> torch.Tensor:
        """``(n, n, 2)`` grid_sample coordinates of frame ``frame``."""
        return self._base - float(self._profile[frame]) * self._field


def _truth(
    params: ExposureParameters,
    specimen: Specimen,
    motion: MotionTruth,
    particles: Particles,
    detector: DetectorTruth | None,
) -> dict[str, Any]:
    centres, rotations, classes = particles.centres, particles.rotations, particles.classes
    depths_a = particles.depths_angstrom
    truth: dict[str, Any] = asdict(params)
    truth.update(
        beam_tilt_mrad=[params.beam_tilt_x_mrad, params.beam_tilt_y_mrad],
        shifts_px=np.round(motion.shifts_px, 5).tolist(),
        local_motion_coefficients_px=np.round(motion.local_coefficients_px, 6).tolist(),
        local_motion_profile=np.round(motion.local_profile, 6).tolist(),
        particles=np.round(centres, 3).tolist(),
        particle_classes=[str(c) for c in classes],
        particle_depths_nm=np.round(depths_a / ANGSTROM_PER_NM, 3).tolist(),
        particle_euler_deg=np.round(euler_zyz_from_matrices(rotations), 4).tolist()
        if len(rotations)
        else [],
        particle_radius_angstrom=round(specimen.radius_angstrom, 2),
        structure=specimen.name,
        n_particles_placed=len(centres),
    )
    if detector is not None:
        truth.update(
            dead_columns=list(detector.dead_columns),
            dead_pixels=[list(p) for p in detector.dead_pixels],
            hot_pixels=[list(p) for p in detector.hot_pixels],
        )
    return truth
