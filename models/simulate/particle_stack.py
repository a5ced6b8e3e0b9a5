"""Extracted particle boxes with known truth, as the pipeline writes them.

Each box is imaged as in :mod:`models.simulate.exposure` (weak-phase object, RELION's CTF):

1. The projected phase of the pick on a canvas twice the box (so the CTF's delocalisation
   neither wraps round nor is lost at the box edge): the specimen's atoms rotated as
   ``coords @ R.T``, projected along z, splatted bilinearly (one batched call per species
   and chunk of particles), times ``gamma lambda f(k) / apix^2`` with the displaced solvent
   and the gridding correction (:func:`composite_form_factor`); or the phase map of the junk.
   Optionally the random phase of the ice layer (:func:`water_phase_psd`).
2. ``CTF(k)`` of the particle's own defocus and astigmatism, times ``exp(-B k^2 / 4)``
   (the B-factor stands for every envelope: radiation damage, motion, coherence, MTF).
3. Counts ``N (1 - 2 P_el c)`` with ``N = dose * apix^2`` and ``P_el`` the fraction of
   electrons not scattered inelastically in the ice, plus Gaussian shot noise of variance
   ``N (1 - 2 P_el c)`` (Poisson at these counts).
4. The central box, phase-flipped with the true CTF, inverted (protein bright) and normalised
   to zero mean and unit standard deviation outside 75 % of half the box
   (:func:`models.restoration.ctf_correction.phase_flip`,
   :func:`models.restoration.normalise.normalise_particles`).

Junk: ``"ice"`` (a dense round contaminant much larger or smaller than the particle),
``"aggregate"`` (3-5 overlapping copies of one species at random poses, 1.2 radii apart rms)
and ``"carbon"`` (the edge of a 5-15 nm film crossing the box), see :mod:`._junk`.

Atom stride: ``atom_stride=k`` keeps every k-th atom with weight k. The projection's mean is
unchanged and so is the signal at low resolution (where the atoms add coherently, coarser than
~10 A), but at high resolution (Wilson statistics, intensity ``sum f_j^2``) the power grows
k-fold. Use it for speed tests, not for resolution figures; the default is every atom.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from causalscope.models.ctf import bfactor_envelope, ctf_at, frequency_grid
from causalscope.models.restoration.ctf_correction import phase_flip
from causalscope.models.restoration.normalise import normalise_particles
from causalscope.models.simulate._junk import carbon_edge_phase, ice_blob_phase
from causalscope.models.simulate.exposure import inelastic_mean_free_path_nm
from causalscope.models.simulate.specimen import (
    Specimen,
    composite_form_factor,
    euler_zyz_from_matrices,
    gridding_correction,
    random_rotations,
    splat_bilinear,
    water_phase_psd,
)
from causalscope.models.units import (
    ANGSTROM_PER_NM,
    ANGSTROM_PER_UM,
    electron_wavelength_angstrom,
    relativistic_gamma,
)

__all__ = ["JUNK_KINDS", "ParticleStack", "project_specimen", "simulate_particle_stack"]

#: the labels of junk picks
JUNK_KINDS = ("ice", "aggregate", "carbon")
_POINTS_PER_CHUNK = 3_000_000  # projected atoms splatted per call (memory ~ 150 MB)
_MAX_CHUNK = 256


@dataclass(frozen=True)
class ParticleStack:
    """``n`` particle boxes and their truth.

    Attributes
    ----------
    images
        ``(n, box, box)`` float32: phase-flipped, inverted (protein bright), normalised.
    rotations
        ``(n, 3, 3)`` pose of each particle (of the first copy for an aggregate; drawn but
        unused for ice and carbon).
    euler_deg
        ``(n, 3)`` RELION rot, tilt, psi of ``rotations``.
    shifts_px
        ``(n, 2)`` ``[x, y]``: the particle's centre lies at ``box // 2 + shift``.
    defocus_u_angstrom, defocus_v_angstrom, defocus_angle_deg
        ``(n,)`` the CTF of each particle (RELION's convention).
    labels
        ``(n,)`` str: the species' name (its key in ``specimens``) or a junk kind.
    """

    images: np.ndarray
    rotations: np.ndarray
    euler_deg: np.ndarray
    shifts_px: np.ndarray
    defocus_u_angstrom: np.ndarray
    defocus_v_angstrom: np.ndarray
    defocus_angle_deg: np.ndarray
    labels: np.ndarray
    pixel_size_angstrom: float
    voltage_kv: float
    spherical_aberration_mm: float
    amplitude_contrast: float
    phase_flipped: bool = True

    @property
    def n(self) -> int:
        """Number of particles."""
        return int(self.images.shape[0])

    @property
    def box_px(self) -> int:
        """Box side in pixels."""
        return int(self.images.shape[-1])


@dataclass(frozen=True)
class _Optics:
    box: int
    canvas: int
    apix: float
    voltage_kv: float
    cs_mm: float
    q: float


@dataclass(frozen=True)
class _Instances:
    """Every specimen copy to splat: particle index, species index, pose, centre offset (px)."""

    particle: np.ndarray
    species: np.ndarray
    rotation: np.ndarray
    offset_px: np.ndarray


def simulate_particle_stack(
    specimens: Mapping[str, Specimen],
    *,
    n: int,
    box_px: int,
    pixel_size_angstrom: float,
    seed: int,
    species_fractions: Mapping[str, float] | None = None,
    junk_fractions: Mapping[str, float] | None = None,
    dose_e_per_a2: float = 40.0,
    defocus_range_um: tuple[float, float] = (0.8, 2.5),
    astigmatism_angstrom: float = 400.0,
    bfactor_angstrom2: float = 60.0,
    max_shift_px: float = 2.0,
    rotations: np.ndarray | None = None,
    ice_thickness_nm: float = 30.0,
    ice_noise: bool = True,
    noiseless: bool = False,
    voltage_kv: float = 300.0,
    spherical_aberration_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    atom_stride: int = 1,
) -> ParticleStack:
    """Simulate ``n`` extracted particles of ``specimens`` and junk (module docstring).

    ``species_fractions`` (default equal) splits the good particles between species;
    ``junk_fractions`` maps junk kinds to their share of all ``n`` picks (default none).
    Defocus is uniform in ``defocus_range_um`` with astigmatism ``dU - dV`` uniform in
    ``[0, astigmatism_angstrom]`` at a uniform angle; shifts are uniform in
    ``[-max_shift_px, max_shift_px]^2``; poses uniform on SO(3) unless ``rotations``
    ``(n, 3, 3)`` is given. ``noiseless`` drops the shot noise and the ice's random phase.
    Deterministic for a given ``seed``.
    """
    names = list(specimens)
    _check_inputs(names, n, box_px, pixel_size_angstrom, dose_e_per_a2, atom_stride, rotations)
    rng = np.random.default_rng(seed)
    labels = _draw_labels(rng, n, names, species_fractions, junk_fractions)
    if rotations is None:
        rotations = random_rotations(rng, n)
    rotations = np.asarray(rotations, dtype=np.float64)
    shifts = rng.uniform(-max_shift_px, max_shift_px, size=(n, 2))
    lo, hi = sorted(defocus_range_um)
    mean_df = rng.uniform(lo, hi, n) * ANGSTROM_PER_UM
    astig = rng.uniform(0.0, astigmatism_angstrom, n)
    angle = rng.uniform(0.0, 180.0, n)
    optics = _Optics(
        box_px, 2 * box_px, pixel_size_angstrom, voltage_kv, spherical_aberration_mm,
        amplitude_contrast,
    )  # fmt: skip
    p_species = _species_probabilities(names, species_fractions)
    instances = _instances(
        rng, labels, rotations, shifts, names, p_species, specimens, pixel_size_angstrom
    )
    junk_seeds = rng.integers(0, 2**62, size=n)
    radius_px = max(s.radius_angstrom for s in specimens.values()) / pixel_size_angstrom
    phases = _PhaseRenderer(specimens, names, optics, atom_stride)
    counts_per_px = dose_e_per_a2 * pixel_size_angstrom**2
    mfp = inelastic_mean_free_path_nm(voltage_kv)
    gain = 2.0 * math.exp(-ice_thickness_nm / mfp)
    images = np.empty((n, box_px, box_px), dtype=np.float32)
    generator = torch.Generator().manual_seed(seed)
    for idx in _chunks(n, instances, specimens):
        phi = phases.render(idx, instances)
        phi += _junk_spectra(idx, labels, shifts, junk_seeds, optics, radius_px)
        if ice_noise and not noiseless:
            phi += phases.ice(len(idx), ice_thickness_nm, generator)
        ctf = dict(
            defocus_u_angstrom=torch.as_tensor(mean_df[idx] + astig[idx] / 2),
            defocus_v_angstrom=torch.as_tensor(mean_df[idx] - astig[idx] / 2),
            defocus_angle_deg=torch.as_tensor(angle[idx]),
        )
        contrast = phases.transfer(phi, ctf, bfactor_angstrom2)
        expected = counts_per_px * (1.0 - gain * contrast)
        if not noiseless:
            noise = torch.randn(expected.shape, generator=generator, dtype=expected.dtype)
            expected = expected + noise * expected.clamp(min=0.0).sqrt()
        images[idx] = _as_extracted(expected, ctf, optics).numpy()
    return ParticleStack(
        images, rotations, euler_zyz_from_matrices(rotations), shifts,
        mean_df + astig / 2, mean_df - astig / 2, angle, labels,
        pixel_size_angstrom, voltage_kv, spherical_aberration_mm, amplitude_contrast,
    )  # fmt: skip


def project_specimen(
    specimen: Specimen,
    rotations: np.ndarray,
    *,
    box_px: int,
    pixel_size_angstrom: float,
    voltage_kv: float = 300.0,
    shifts_px: np.ndarray | None = None,
    atom_stride: int = 1,
) -> np.ndarray:
    """``(n, box, box)`` float32 projected phase (radians) of ``specimen`` at ``rotations``
    ``(n, 3, 3)``: no CTF, envelope or noise; the centre at ``box // 2 + shifts_px``."""
    rotations = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    n = rotations.shape[0]
    shifts = np.zeros((n, 2)) if shifts_px is None else np.asarray(shifts_px, dtype=np.float64)
    optics = _Optics(box_px, 2 * box_px, pixel_size_angstrom, voltage_kv, 2.7, 0.07)
    renderer = _PhaseRenderer({"s": specimen}, ["s"], optics, atom_stride)
    instances = _Instances(np.arange(n), np.zeros(n, dtype=int), rotations, shifts)
    out = np.empty((n, box_px, box_px), dtype=np.float32)
    for idx in _chunks(n, instances, {"s": specimen}):
        phi = renderer.render(idx, instances)
        real = torch.fft.irfft2(phi, s=(optics.canvas, optics.canvas))
        out[idx] = _crop(real, optics).numpy()
    return out


def _check_inputs(
    names: list[str],
    n: int,
    box_px: int,
    apix: float,
    dose: float,
    atom_stride: int,
    rotations: np.ndarray | None,
) -> None:
    checks = {
        "specimens": len(names) > 0 and not set(names) & set(JUNK_KINDS),
        "n": n >= 1,
        "box_px": box_px >= 16 and box_px % 2 == 0,
        "pixel_size_angstrom": apix > 0,
        "dose_e_per_a2": dose > 0,
        "atom_stride": atom_stride >= 1,
    }
    values = {"specimens": names, "n": n, "box_px": box_px, "pixel_size_angstrom": apix}
    values |= {"dose_e_per_a2": dose, "atom_stride": atom_stride}
    for name, ok in checks.items():
        if not ok:
            raise ValueError(f"{name} out of range: {values[name]!r}")
    if rotations is not None and np.shape(rotations) != (n, 3, 3):
        raise ValueError(f"rotations must be ({n}, 3, 3), got {np.shape(rotations)}")


def _species_probabilities(names: list[str], fractions: Mapping[str, float] | None) -> np.ndarray:
    if fractions is None:
        return np.full(len(names), 1.0 / len(names))
    unknown = set(fractions) - set(names)
    if unknown:
        raise ValueError(f"species_fractions names unknown species {sorted(unknown)}")
    p = np.array([float(fractions.get(s, 0.0)) for s in names])
    if np.any(p < 0) or p.sum() <= 0:
        raise ValueError(f"species_fractions must be >= 0 with a positive sum, got {fractions}")
    return p / p.sum()


def _draw_labels(
    rng: np.random.Generator,
    n: int,
    names: list[str],
    species_fractions: Mapping[str, float] | None,
    junk_fractions: Mapping[str, float] | None,
) -> np.ndarray:
    junk = dict(junk_fractions or {})
    unknown = set(junk) - set(JUNK_KINDS)
    if unknown:
        raise ValueError(f"junk_fractions: unknown kinds {sorted(unknown)}, use {JUNK_KINDS}")
    p_junk = np.array([float(junk.get(k, 0.0)) for k in JUNK_KINDS])
    if np.any(p_junk < 0) or p_junk.sum() > 1:
        raise ValueError(f"junk_fractions must be >= 0 and sum to <= 1, got {junk}")
    p = np.concatenate(
        [(1 - p_junk.sum()) * _species_probabilities(names, species_fractions), p_junk]
    )
    categories = np.array(names + list(JUNK_KINDS), dtype=object)
    return categories[rng.choice(len(categories), size=n, p=p / p.sum())].astype(str)


def _instances(
    rng: np.random.Generator,
    labels: np.ndarray,
    rotations: np.ndarray,
    shifts: np.ndarray,
    names: list[str],
    p_species: np.ndarray,
    specimens: Mapping[str, Specimen],
    apix: float,
) -> _Instances:
    """The copies to splat: one per good particle, 3-5 per aggregate (of one random species)."""
    particle, species, rots, offsets = [], [], [], []
    for i, label in enumerate(labels):
        if label in ("ice", "carbon"):
            continue
        s = names.index(label) if label != "aggregate" else int(rng.choice(len(names), p=p_species))
        particle.append(i)
        species.append(s)
        rots.append(rotations[i])
        offsets.append(shifts[i])
        if label == "aggregate":
            step = 1.2 * specimens[names[s]].radius_angstrom
            for _ in range(int(rng.integers(2, 5))):
                particle.append(i)
                species.append(s)
                rots.append(random_rotations(rng, 1)[0])
                offsets.append(shifts[i] + step * rng.normal(size=2) / 1.4 / apix)
    if not particle:
        return _Instances(np.zeros(0, int), np.zeros(0, int), np.zeros((0, 3, 3)), np.zeros((0, 2)))
    return _Instances(np.asarray(particle), np.asarray(species), np.stack(rots), np.stack(offsets))


def _chunks(n: int, instances: _Instances, specimens: Mapping[str, Specimen]) -> list[np.ndarray]:
    """Particle indices in chunks of about ``_POINTS_PER_CHUNK`` projected atoms."""
    atoms = np.array([s.coords_angstrom.shape[0] for s in specimens.values()])
    per_particle = np.bincount(instances.particle, atoms[instances.species], minlength=n)
    out, start, total = [], 0, 0.0
    for i in range(n):
        total += per_particle[i]
        if total > _POINTS_PER_CHUNK or i - start >= _MAX_CHUNK:
            if i > start:
                out.append(np.arange(start, i))
            start, total = i, float(per_particle[i])
    out.append(np.arange(start, n))
    return out


class _PhaseRenderer:
    """The specimens' projected phase on the canvas, and the optics that image it."""

    def __init__(
        self, specimens: Mapping[str, Specimen], names: list[str], optics: _Optics, stride: int
    ) -> None:
        self.optics = optics
        c = optics.canvas
        kx_c, ky_c = frequency_grid((c, c), pixel_size_angstrom=1.0)
        self.kx, self.ky = kx_c / optics.apix, ky_c / optics.apix
        k = torch.sqrt(self.kx**2 + self.ky**2)
        gamma_lambda = relativistic_gamma(optics.voltage_kv) * electron_wavelength_angstrom(
            optics.voltage_kv
        )
        gridding = gridding_correction(kx_c, ky_c)
        self.coords: list[torch.Tensor] = []
        self.weights: list[torch.Tensor] = []
        self.scales: list[torch.Tensor] = []
        for name in names:
            specimen = specimens[name]
            weights, shape = composite_form_factor(specimen, k, voltage_kv=optics.voltage_kv)
            coords = torch.as_tensor(specimen.coords_angstrom, dtype=torch.float64)
            self.coords.append(coords[::stride] / optics.apix)
            self.weights.append(weights[::stride] * stride)
            self.scales.append((gamma_lambda / optics.apix**2) * shape * gridding)
        self.radius_px = [float(torch.linalg.norm(x, dim=1).max()) for x in self.coords]
        self.k = k

    def render(self, idx: np.ndarray, instances: _Instances) -> torch.Tensor:
        """``(len(idx), c, c // 2 + 1)`` complex64: the phase spectrum of particles ``idx``."""
        c = self.optics.canvas
        local = np.full(int(idx.max()) + 1, -1)
        local[idx] = np.arange(len(idx))
        phi = torch.zeros((len(idx), c, c // 2 + 1), dtype=torch.complex64)
        member = np.isin(instances.particle, idx)
        for s in range(len(self.coords)):
            pick = np.flatnonzero(member & (instances.species == s))
            if pick.size == 0:
                continue
            rot = torch.as_tensor(instances.rotation[pick, :2, :])
            xy = torch.einsum("mj,nij->nmi", self.coords[s], rot)
            offsets = instances.offset_px[pick]
            xy += torch.as_tensor(offsets)[:, None, :] + c // 2
            safe = self.radius_px[s] + np.abs(offsets).max() + 2 < c // 2
            # what falls off its own canvas is dropped (it would land on the next one)
            inside = None if safe else ((xy >= 0) & (xy < c - 1)).all(dim=-1)
            # only the canvases of this species' particles are splatted and transformed
            rows, row_of = np.unique(local[instances.particle[pick]], return_inverse=True)
            xy[..., 1] += torch.as_tensor(row_of * c)[:, None]
            weights = self.weights[s][None, :].expand(len(pick), -1)
            if inside is None:
                points, weights = xy.reshape(-1, 2), weights.reshape(-1)
            else:
                points, weights = xy[inside], weights[inside]
            splat = splat_bilinear(points, weights, (len(rows) * c, c))
            rows_t = torch.as_tensor(rows)
            phi[rows_t] += torch.fft.rfft2(splat.reshape(len(rows), c, c).float()) * self.scales[s]
        return phi

    def ice(self, m: int, thickness_nm: float, generator: torch.Generator) -> torch.Tensor:
        """``(m, c, c // 2 + 1)``: the random phase of a layer of vitreous ice."""
        psd = water_phase_psd(
            self.k,
            thickness_angstrom=thickness_nm * ANGSTROM_PER_NM,
            voltage_kv=self.optics.voltage_kv,
        )
        c = self.optics.canvas
        noise = torch.randn((m, c, c), generator=generator)
        return torch.fft.rfft2(noise) * torch.sqrt(psd / self.optics.apix**2).float()

    def transfer(
        self, phi: torch.Tensor, ctf: dict[str, torch.Tensor], bfactor_angstrom2: float
    ) -> torch.Tensor:
        """``(m, box, box)`` float64 contrast: the central box of ``CTF * envelope * phi``."""
        o = self.optics
        transfer = ctf_at(
            self.kx, self.ky, voltage_kv=o.voltage_kv, spherical_aberration_mm=o.cs_mm,
            amplitude_contrast=o.q, **ctf,
        ) * bfactor_envelope(self.kx, self.ky, bfactor_angstrom2=bfactor_angstrom2)  # fmt: skip
        real = torch.fft.irfft2(phi * transfer, s=(o.canvas, o.canvas))
        return _crop(real, o).to(torch.float64)


def _crop(canvas: torch.Tensor, optics: _Optics) -> torch.Tensor:
    """The box whose pixel ``box // 2`` is the canvas's ``canvas // 2``."""
    start = optics.canvas // 2 - optics.box // 2
    return canvas[..., start : start + optics.box, start : start + optics.box]


def _junk_spectra(
    idx: np.ndarray,
    labels: np.ndarray,
    shifts: np.ndarray,
    seeds: np.ndarray,
    optics: _Optics,
    radius_px: float,
) -> torch.Tensor:
    """``(len(idx), c, c // 2 + 1)``: the phase spectra of the ice blobs and carbon edges."""
    c = optics.canvas
    out = torch.zeros((len(idx), c, c // 2 + 1), dtype=torch.complex64)
    junk = [j for j, i in enumerate(idx) if labels[i] in ("ice", "carbon")]
    if not junk:
        return out
    maps = np.zeros((len(junk), c, c))
    for m, j in enumerate(junk):
        i = idx[j]
        rng = np.random.default_rng(int(seeds[i]))
        if labels[i] == "ice":
            maps[m] = ice_blob_phase(
                rng, c, centre_px=shifts[i], particle_radius_px=radius_px,
                pixel_size_angstrom=optics.apix, voltage_kv=optics.voltage_kv,
            )  # fmt: skip
        else:
            maps[m] = carbon_edge_phase(
                rng, c, box_px=optics.box, pixel_size_angstrom=optics.apix,
                voltage_kv=optics.voltage_kv,
            )  # fmt: skip
    out[torch.as_tensor(junk)] = torch.fft.rfft2(torch.from_numpy(maps).float())
    return out


def _as_extracted(
    counts: torch.Tensor, ctf: dict[str, torch.Tensor], optics: _Optics
) -> torch.Tensor:
    """Phase-flipped with the true CTF, inverted and normalised, as extraction writes them."""
    flipped = phase_flip(
        counts, pixel_size_angstrom=optics.apix, voltage_kv=optics.voltage_kv,
        spherical_aberration_mm=optics.cs_mm, amplitude_contrast=optics.q, **ctf,
    )  # fmt: skip
    return normalise_particles(-flipped, background_radius_px=0.375 * optics.box).float()
