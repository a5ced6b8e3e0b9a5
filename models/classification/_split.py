"""Private: two populations in one class, found by splitting it in two.

A class can hold two populations that its average blends: compact views of a particle with
round ice blobs of their size. The blend explains both well enough that the E-step keeps
them together, and no per-particle statistic separates them (a simulated class of 24
beta-galactosidase views and 15 ice blobs: misfit z-scores of -2.2 to 2.0 against 0.0 to 3.6,
half of the blobs among the views). Two averages of the class's members at their poses, each
made from the particles it explains better (hard EM at 30 A), converge to the view and a
featureless disc, when they start from the right particles: the split starts from the
worst-explained third, the worst-explained fifth and the lightest third (:func:`_seeds`),
and the one whose parts differ most is kept (the lightest third found that class's blobs
where the worst-explained third found a second view).

Whether the two parts are two populations or two halves of one: the correlation of their
averages at low resolution, corrected for the noise of each (divided by the geometric mean
of their reliabilities, ``2 r / (1 + r)`` of each part's half-set correlation ``r``), is
about 1 for one population and falls for two: 0.70-0.73 for classes like the one above,
0.83 or more for 122 classes of one species in four simulated sessions (split from their
worst-explained third). A split made on the particles' own noise reads lower than the truth,
the more so at low signal and with three starts; below :data:`TWO_POPULATIONS` the smaller
part is scored again against the classes with the larger part's average in its class's
place (:meth:`.class2d.Class2D.reassign_all`), which costs an E-step of those particles when
the class was one population after all, and moves them only where another class explains
them better. The ice blobs went to classes of ice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from causalscope.models.classification._em import aligned_spectra
from causalscope.models.classification._grids import Grid
from causalscope.models.classification._settings import Assignment
from causalscope.models.classification.averages import half_set_frc, snr_from_frc, wiener_from_snr
from causalscope.models.reconstruction.particle_ctf import ParticleCtfs

__all__ = ["MIN_MEMBERS", "TWO_POPULATIONS", "MixedClass", "mixed_classes"]

#: classes with fewer (non-outlier) particles are not split
MIN_MEMBERS = 16
#: parts whose noise-corrected correlation is below this are two populations
TWO_POPULATIONS = 0.88
#: the resolution (A) the parts are found and compared at
SPLIT_RESOLUTION_ANGSTROM = 30.0
_MIN_PART = 4
_ITERATIONS = 10


@dataclass(frozen=True)
class MixedClass:
    """A class of two populations: the particles of its smaller part, and the average of the
    larger (mean zero, on the working grid)."""

    class_index: int
    minority: np.ndarray
    majority_average: torch.Tensor
    correlation: float


def mixed_classes(
    images: torch.Tensor,
    ctf: ParticleCtfs,
    assignment: Assignment,
    mass: np.ndarray,
    *,
    binning: float,
    grid: Grid,
    sigma2: torch.Tensor,
    prior_snr: torch.Tensor,
) -> list[MixedClass]:
    """The classes of two populations (module docstring).

    ``images`` ``(n, b, b)`` on the working ``grid`` (``binning`` times coarser than the
    input's pixels) with their CTFs; ``assignment`` of all of them (its outliers take no
    part; the half set is the id's parity); ``mass`` ``(n,)`` each image's mean (its
    projected mass); ``sigma2`` the noise power per ring;
    ``prior_snr`` per ring, the SNR of the parts' averages while they are found.
    """
    ring = round(grid.box * grid.pixel_size_angstrom / SPLIT_RESOLUTION_ANGSTROM)
    band = grid.band(int(min(max(ring, 2), grid.box // 2 - 1)))
    weight = (grid.multiplicity.flatten()[band] / sigma2[grid.ring.flatten()[band]]).double()
    device = grid.device  # where it computes (the images may be a host store)
    psi = torch.as_tensor(np.deg2rad(assignment.psi_deg), dtype=torch.float32, device=device)
    shift = torch.as_tensor(assignment.shift_px / binning, dtype=torch.float32, device=device)
    classes, ids, residual_z = assignment.class_index, assignment.ids, assignment.residual_z
    found = []
    for k in np.unique(classes[classes >= 0]):
        members = np.flatnonzero((classes == k) & ~assignment.outlier)
        if members.size < MIN_MEMBERS:
            continue
        x, d = aligned_spectra(images, ctf, members, psi[members], shift[members], grid=grid)
        x, d = x.to(torch.complex128), d.to(torch.float64)
        halves = ids[members] % 2
        best: tuple[float, np.ndarray] | None = None
        for seed in _seeds(residual_z[members], mass[members]):
            part = _two_parts(x, d, seed, grid=grid, band=band, weight=weight,
                              prior_snr=prior_snr)  # fmt: skip
            if part.sum() > members.size / 2:
                part = ~part  # the minority is `part`
            if min(part.sum(), (~part).sum()) < _MIN_PART:
                continue
            correlation = _corrected_correlation(x, d, part, halves, grid=grid, band=band,
                                                 prior_snr=prior_snr)  # fmt: skip
            if best is None or correlation < best[0]:
                best = (correlation, part)
        if best is not None and best[0] < TWO_POPULATIONS:
            correlation, part = best
            chosen = torch.as_tensor(~part, device=device)
            average = _average(x, d, chosen, torch.as_tensor(halves, device=device), grid=grid)
            found.append(MixedClass(int(k), members[part], average, correlation))
    return found


def _seeds(residual_z: np.ndarray, mass: np.ndarray) -> list[np.ndarray]:
    """Where the splits start: the worst-explained third and fifth of a class's members,
    and its lightest third (a contaminant differs from the class by its fit or by its
    projected mass, which is the same from every view of one species)."""
    return [
        residual_z > np.quantile(residual_z, 2.0 / 3.0),
        residual_z > np.quantile(residual_z, 0.8),
        mass < np.quantile(mass, 1.0 / 3.0),
    ]


def _two_parts(
    x: torch.Tensor,
    d: torch.Tensor,
    seed: np.ndarray,
    *,
    grid: Grid,
    band: torch.Tensor,
    weight: torch.Tensor,
    prior_snr: torch.Tensor,
) -> np.ndarray:
    """``(m,)`` bool: the part of each aligned particle (``x = CTF X``, ``d = CTF^2``), from
    ``seed`` by hard EM: each part's average with the ``prior_snr``, each particle to the
    average that explains it better (the log-likelihood of :mod:`._em` at its fixed pose, in
    ``band``)."""
    part = seed.copy()
    xb, db = x.flatten(1)[:, band], d.flatten(1)[:, band]
    for _ in range(_ITERATIONS):
        a = torch.stack([_prior_average(x, d, part == side, grid, prior_snr) for side in (0, 1)])
        a = a.flatten(1)[:, band]
        cross = (xb.conj()[:, None, :] * a[None]).real
        norm = db[:, None, :] * a.abs()[None] ** 2
        log_likelihood = ((cross - 0.5 * norm) * weight).sum(-1)
        updated = (log_likelihood[:, 1] > log_likelihood[:, 0]).cpu().numpy()
        if (updated == part).all() or updated.all() or not updated.any():
            return updated
        part = updated
    return part


def _prior_average(
    x: torch.Tensor, d: torch.Tensor, chosen: np.ndarray, grid: Grid, prior_snr: torch.Tensor
) -> torch.Tensor:
    """The Wiener average of the particles ``chosen`` with the SNR ``prior_snr`` per ring."""
    pick = torch.as_tensor(chosen, device=x.device)
    return wiener_from_snr(x[pick].sum(0), d[pick].sum(0), prior_snr, grid)


def _corrected_correlation(
    x: torch.Tensor,
    d: torch.Tensor,
    part: np.ndarray,
    halves: np.ndarray,
    *,
    grid: Grid,
    band: torch.Tensor,
    prior_snr: torch.Tensor,
) -> float:
    """The correlation in ``band`` of the two parts' averages over the geometric mean of their
    reliabilities (module docstring)."""
    weight = grid.multiplicity.flatten()[band].double()

    def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
        a, b = a.flatten()[band], b.flatten()[band]
        cross = float(((a * b.conj()).real * weight).sum())
        power = float(((a.abs() ** 2 * weight).sum() * (b.abs() ** 2 * weight).sum()).sqrt())
        return cross / max(power, 1e-30)

    reliability = 1.0
    for side in (False, True):
        r = correlation(*(_prior_average(x, d, (part == side) & (halves == h), grid, prior_snr)
                          for h in (0, 1)))  # fmt: skip
        reliability *= 2 * r / (1 + r) if r > 0 else 1e-3
    averages = [_prior_average(x, d, part == side, grid, prior_snr) for side in (False, True)]
    return correlation(*averages) / reliability**0.5


def _average(
    x: torch.Tensor, d: torch.Tensor, chosen: torch.Tensor, halves: torch.Tensor, *, grid: Grid
) -> torch.Tensor:
    """``(b, b)`` the average of the particles ``chosen`` as a class average is made (Wiener,
    the SNR from the FRC of its half-sets), mean zero."""
    shape = (2, *x.shape[1:])
    num = x.new_zeros(shape)
    den = d.new_zeros(shape)
    for half in (0, 1):
        pick = chosen & (halves == half)
        num[half], den[half] = x[pick].sum(0), d[pick].sum(0)
    snr = snr_from_frc(half_set_frc(num, den, grid))
    spectrum = wiener_from_snr(num.sum(0), den.sum(0), snr, grid)
    spectrum[0, 0] = 0.0
    return torch.fft.irfft2(spectrum, s=(grid.box, grid.box)).float()
