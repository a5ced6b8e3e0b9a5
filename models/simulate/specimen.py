"""The specimen: particles made of atoms, projected at known poses, embedded in vitreous ice.

Projected potential is handled as a phase (radians, weak-phase approximation). One atom of
element e contributes ``gamma lambda f_e(k)`` (Angstrom^2) to the continuous Fourier transform
of the phase, and displaces ``v_atom`` of water whose potential it no longer carries (solvent
flattening, which lowers low-resolution contrast to that of protein *minus* ice). Vitreous water
is a random arrangement of molecules: its projected phase is a Gaussian random field whose
power spectrum is ``n t |gamma lambda f_w(k)|^2 S(k)`` with the structure factor ``S`` of
amorphous ice (low at low k, the ice-ring peak near 1/3.7 A^-1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from causalscope.models.rotations import euler_zyz_from_matrices, random_rotations
from causalscope.models.simulate.scattering import ELECTRON_FORM_FACTORS, form_factor
from causalscope.models.units import (
    electron_wavelength_angstrom,
    interaction_constant_rad_per_v_angstrom,
    relativistic_gamma,
)

__all__ = [
    "ICE_MEAN_INNER_POTENTIAL_V",
    "ICE_RING_FREQUENCY_PER_ANGSTROM",
    "WATER_MOLECULES_PER_A3",
    "Specimen",
    "composite_form_factor",
    "elongated_phantom_specimen",
    "euler_zyz_from_matrices",
    "gridding_correction",
    "ice_structure_factor",
    "phantom_specimen",
    "random_rotations",
    "splat_bilinear",
    "water_phase_psd",
]

#: molecules per cubic Angstrom of vitreous ice (0.94 g/cm^3)
WATER_MOLECULES_PER_A3 = 0.0314
#: mean inner potential of amorphous ice, volts (3.5 +- 0.8 V measured by electron holography)
ICE_MEAN_INNER_POTENTIAL_V = 3.6
#: volume of water displaced per non-hydrogen protein atom, A^3 (0.73 cm^3/g, ~13.5 Da/atom)
DISPLACED_VOLUME_PER_ATOM_A3 = 16.4
#: the amorphous-ice diffraction ring (3.7 A)
ICE_RING_FREQUENCY_PER_ANGSTROM = 1.0 / 3.7
_ICE_RING_WIDTH_PER_ANGSTROM = 0.02
_ICE_RING_PEAK = 2.3
_ICE_LOW_K = 0.06
_SOLVENT_EDGE_BFACTOR_A2 = 10.0


@dataclass(frozen=True)
class Specimen:
    """A particle as atoms (or pseudo-atoms), centred on its centre of mass.

    Attributes
    ----------
    coords_angstrom
        ``(n, 3)`` positions ``[x, y, z]``.
    element_index
        ``(n,)`` index into ``elements``.
    elements
        Element symbols.
    scattering_a, scattering_b
        ``(n_elements, k)`` electron form factor coefficients (A, A^2).
    weights
        ``(n,)`` multiplier per atom (1 for real atoms; density for pseudo-atoms of a map).
    name
        Where it came from.
    """

    coords_angstrom: np.ndarray
    element_index: np.ndarray
    elements: tuple[str, ...]
    scattering_a: np.ndarray
    scattering_b: np.ndarray
    weights: np.ndarray = field(default_factory=lambda: np.ones(0))
    name: str = "specimen"

    def __post_init__(self) -> None:
        n = self.coords_angstrom.shape[0]
        if self.coords_angstrom.shape != (n, 3):
            raise ValueError(f"coords must be (n, 3), got {self.coords_angstrom.shape}")
        if self.element_index.shape != (n,):
            raise ValueError(f"element_index must be ({n},), got {self.element_index.shape}")
        if self.weights.size == 0:
            object.__setattr__(self, "weights", np.ones(n))

    @property
    def radius_angstrom(self) -> float:
        """Radius of the smallest centred sphere that holds every atom."""
        return float(np.sqrt((self.coords_angstrom**2).sum(axis=1).max()))


def phantom_specimen(*, seed: int = 0) -> Specimen:
    """A built-in apoferritin-like shell (outer radius 60 A, inner 40 A, 24 lumps, ~480 kDa).

    Used when no structure is given, so the simulator works without any data files.
    """
    rng = np.random.default_rng(seed)
    n_candidates = 90_000
    radius = np.cbrt(rng.uniform(40.0**3, 60.0**3, n_candidates))
    directions = rng.normal(size=(n_candidates, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    # 24 subunits on a Fibonacci sphere; atoms within 0.5 rad of a subunit axis are kept
    i = np.arange(24) + 0.5
    polar = np.arccos(1 - 2 * i / 24)
    azimuth = math.pi * (1 + 5**0.5) * i
    axes = np.stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], 1
    )
    closeness = (directions @ axes.T).max(axis=1)
    keep = closeness > math.cos(0.5)
    coords = (directions * radius[:, None])[keep][:34_000]
    symbols = ("C", "N", "O", "S")
    element_index = rng.choice(4, size=coords.shape[0], p=[0.63, 0.17, 0.19, 0.01])
    a = np.array([ELECTRON_FORM_FACTORS[s][0] for s in symbols])
    b = np.array([ELECTRON_FORM_FACTORS[s][1] for s in symbols])
    coords = coords - coords.mean(axis=0)
    return Specimen(coords, element_index, symbols, a, b, name="phantom:apoferritin-like")


def elongated_phantom_specimen(*, seed: int = 0, n_atoms: int = 12_000) -> Specimen:
    """A built-in elongated, asymmetric particle (~160 kDa at the default ``n_atoms``).

    Two ellipsoidal lobes of unequal size along x (centres 45 A apart, semi-axes 38 x 24 x 24 A
    and 26 x 20 x 20 A) joined by a thin rod, plus a side knob along +y, so that every view
    and in-plane rotation looks different from its mirror. A second shape for tests that must
    run without structure files; unlike :func:`phantom_specimen` it has no symmetry.
    """
    if n_atoms < 100:
        raise ValueError(f"n_atoms must be >= 100, got {n_atoms}")
    rng = np.random.default_rng(seed)
    # (centre, semi-axes, share of the atoms) of each part, in Angstrom
    parts = (
        ((-25.0, 0.0, 0.0), (38.0, 24.0, 24.0), 0.55),
        ((30.0, 0.0, 0.0), (26.0, 20.0, 20.0), 0.25),
        ((0.0, 0.0, 0.0), (30.0, 7.0, 7.0), 0.08),
        ((-20.0, 30.0, 0.0), (12.0, 12.0, 12.0), 0.12),
    )
    chunks = []
    for centre, axes, share in parts:
        m = round(share * n_atoms)
        direction = rng.normal(size=(m, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        radius = np.cbrt(rng.uniform(0.0, 1.0, m))[:, None]
        chunks.append(np.asarray(centre) + direction * radius * np.asarray(axes))
    coords = np.concatenate(chunks)
    symbols = ("C", "N", "O", "S")
    element_index = np.asarray(rng.choice(4, size=len(coords), p=[0.63, 0.17, 0.19, 0.01]))
    a = np.array([ELECTRON_FORM_FACTORS[s][0] for s in symbols])
    b = np.array([ELECTRON_FORM_FACTORS[s][1] for s in symbols])
    coords = coords - coords.mean(axis=0)
    return Specimen(coords, element_index, symbols, a, b, name="phantom:elongated")


def splat_bilinear(
    points_px: torch.Tensor, weights: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """Deposit weighted points ``(m, 2)`` ``[x, y]`` onto an ``(h, w)`` grid, bilinearly.

    Points outside the grid are dropped. The transfer function of this deposit is
    ``sinc^2(kx) sinc^2(ky)`` (k in cycles/pixel); :func:`gridding_correction` undoes it.
    """
    h, w = shape
    x0 = torch.floor(points_px[:, 0])
    y0 = torch.floor(points_px[:, 1])
    fx = points_px[:, 0] - x0
    fy = points_px[:, 1] - y0
    xi0, yi0 = x0.long(), y0.long()
    out = torch.zeros(h * w, dtype=weights.dtype, device=weights.device)
    # when every corner lands on the grid (the usual case), skip the per-corner masks
    all_inside = len(points_px) == 0 or bool(
        (xi0.min() >= 0) & (xi0.max() < w - 1) & (yi0.min() >= 0) & (yi0.max() < h - 1)
    )
    base = yi0 * w + xi0
    for dx, dy, wgt in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        if all_inside:
            out.index_add_(0, base + (dy * w + dx), weights * wgt)
            continue
        xi = xi0 + dx
        yi = yi0 + dy
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        out.index_add_(0, (yi * w + xi)[inside], (weights * wgt)[inside])
    return out.reshape(h, w)


def gridding_correction(kx_cycles: torch.Tensor, ky_cycles: torch.Tensor) -> torch.Tensor:
    """``1 / (sinc^2(kx) sinc^2(ky))``: undoes the bilinear deposit's low-pass."""
    return 1.0 / (torch.sinc(kx_cycles) ** 2 * torch.sinc(ky_cycles) ** 2)


def composite_form_factor(
    specimen: Specimen, frequency_per_angstrom: torch.Tensor, *, voltage_kv: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-atom weights and the shared normalised scattering of ``specimen``.

    Returns ``(atom_weights, shape)``: splatting ``atom_weights`` (``f_e(0) * weight``, in A)
    and multiplying the transform by ``shape(k)`` gives ``sum_atoms f_e(k)`` up to the small
    differences between the elements' form-factor shapes (C, N and O agree within a few
    percent to 3 A). The displaced solvent is subtracted inside ``shape``.
    """
    a = torch.as_tensor(specimen.scattering_a, dtype=torch.float64)
    b = torch.as_tensor(specimen.scattering_b, dtype=torch.float64)
    f0 = a.sum(dim=1)  # (n_elements,)
    counts = torch.bincount(
        torch.as_tensor(specimen.element_index), minlength=len(specimen.elements)
    ).to(torch.float64)
    per_element = form_factor(frequency_per_angstrom.to(torch.float64), a_angstrom=a, b_angstrom2=b)
    mean_f = (counts.reshape(-1, *[1] * frequency_per_angstrom.dim()) * per_element).sum(0)
    mean_f0 = float((counts * f0).sum())
    n_atoms = float(counts.sum())
    # water displaced: sigma * V_ice * v_atom per atom, expressed in the same A units as f_e
    sigma = interaction_constant_rad_per_v_angstrom(voltage_kv)
    gamma_lambda = relativistic_gamma(voltage_kv) * electron_wavelength_angstrom(voltage_kv)
    displaced = sigma * ICE_MEAN_INNER_POTENTIAL_V * DISPLACED_VOLUME_PER_ATOM_A3 / gamma_lambda
    k2 = frequency_per_angstrom.to(torch.float64) ** 2
    solvent = n_atoms * displaced * torch.exp(-_SOLVENT_EDGE_BFACTOR_A2 * k2 / 4.0)
    shape = (mean_f - solvent) / mean_f0
    atom_weights = (
        torch.as_tensor(specimen.weights, dtype=torch.float64)
        * f0[torch.as_tensor(specimen.element_index)]
    )
    return atom_weights, shape.to(frequency_per_angstrom.dtype)


def ice_structure_factor(frequency_per_angstrom: torch.Tensor) -> torch.Tensor:
    """Structure factor S(k) of amorphous ice: ~0.06 at low k, the ring peak, 1 beyond."""
    k = frequency_per_angstrom
    rise = torch.clamp((k - 0.12) / 0.12, 0.0, 1.0)
    baseline = _ICE_LOW_K + (1.0 - _ICE_LOW_K) * rise * rise * (3.0 - 2.0 * rise)
    ring = (_ICE_RING_PEAK - 1.0) * torch.exp(
        -0.5 * ((k - ICE_RING_FREQUENCY_PER_ANGSTROM) / _ICE_RING_WIDTH_PER_ANGSTROM) ** 2
    )
    return baseline + ring


def water_phase_psd(
    frequency_per_angstrom: torch.Tensor, *, thickness_angstrom: float, voltage_kv: float
) -> torch.Tensor:
    """Power spectrum (rad^2 A^2) of the projected phase of a slab of vitreous ice."""
    k = frequency_per_angstrom
    h = ELECTRON_FORM_FACTORS["H"]
    o = ELECTRON_FORM_FACTORS["O"]
    f_w = form_factor(k, a_angstrom=torch.tensor(o[0]), b_angstrom2=torch.tensor(o[1])) + 2.0 * (
        form_factor(k, a_angstrom=torch.tensor(h[0]), b_angstrom2=torch.tensor(h[1]))
    )
    gamma_lambda = relativistic_gamma(voltage_kv) * electron_wavelength_angstrom(voltage_kv)
    return (
        WATER_MOLECULES_PER_A3
        * thickness_angstrom
        * (gamma_lambda * f_w) ** 2
        * ice_structure_factor(k)
    )
