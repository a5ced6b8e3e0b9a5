"""Projection matching: each particle's pose and origin offset against a reference map.

The score of a pose ``A`` and offset ``o`` is the normalised cross-correlation of the
particle ``X`` with the reference's projection ``P_A`` seen through the particle's CTF ``C``:
``Re sum_k conj(X) C P_A e^(-2 pi i k.(-o)) / sqrt(sum_k C^2 |P_A|^2)`` over the frequencies up
to ``max_frequency`` (the current resolution: finer detail is noise). Poses are RELION's
(:mod:`models.rotations`), offsets RELION's origins (the particle's centre sits at the box
centre minus its offset).

- :func:`global_search` scores every pose of a grid over SO(3) (:func:`so3_grid`) and every
  offset of a coarse grid (:func:`shift_grid`) as matrix products (the CTF and the offset's
  phase ramp move onto the particle: ``conj(C X e^...) P``), so a particle costs ``m s`` dot
  products, not ``m`` projections.
- :func:`local_search` tries small turns around each particle's pose (27 per step: -1, 0, +1
  step about each axis) and, for each, every offset within ``max_shift_px`` at once from one
  inverse transform of ``conj(X) C P``, refined to a fraction of a pixel.
- :func:`posterior_search` keeps, from the same scores as :func:`global_search`, each
  particle's most probable poses and offsets with their probabilities (ab initio's soft
  assignment).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from causalscope.models.reconstruction._fourier import image_frequencies
from causalscope.models.reconstruction.projection import Projector, shift_phase
from causalscope.models.rotations import euler_matrices

__all__ = [
    "Alignment",
    "PosePosterior",
    "global_search",
    "local_search",
    "posterior_search",
    "shift_grid",
    "so3_grid",
]


@dataclass(frozen=True)
class Alignment:
    """``n`` particles' poses ``(n, 3, 3)``, offsets ``(n, 2)`` px and scores ``(n,)``."""

    rotations: torch.Tensor
    offsets_px: torch.Tensor
    scores: torch.Tensor


def so3_grid(step_deg: float) -> torch.Tensor:
    """``(m, 3, 3)`` poses about ``step_deg`` apart: viewing directions on a Fibonacci sphere
    (``4 pi / step^2`` of them) times in-plane turns every ``step_deg``."""
    if not 0 < step_deg <= 90:
        raise ValueError(f"step_deg must be in (0, 90], got {step_deg}")
    step = math.radians(step_deg)
    n_directions = max(2, round(4 * math.pi / step**2))
    i = np.arange(n_directions) + 0.5
    tilt = np.degrees(np.arccos(1 - 2 * i / n_directions))
    rot = np.degrees(np.pi * (1 + 5**0.5) * i) % 360
    psi = np.arange(0.0, 360.0, step_deg)
    euler = np.stack(
        [np.repeat(rot, len(psi)), np.repeat(tilt, len(psi)), np.tile(psi, n_directions)], 1
    )
    return torch.as_tensor(euler_matrices(euler), dtype=torch.float32)


def _half_plane_weights(
    box_px: int, max_frequency: float, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rfft2 samples within ``max_frequency`` (a mask) and their weight in a sum over the
    whole plane (2, or 1 on the ``kx = 0`` column, which holds both halves)."""
    frequencies = image_frequencies(box_px, device=device)
    mask = frequencies[..., :2].norm(dim=-1) <= max_frequency
    mask[0, 0] = False  # the mean carries no orientation
    weights = torch.where(frequencies[..., 0] == 0, 1.0, 2.0)
    return mask, weights[mask]


def _transform(images: torch.Tensor) -> torch.Tensor:
    return torch.fft.rfft2(torch.fft.ifftshift(images.to(torch.float32), dim=(-2, -1)))


def shift_grid(max_shift_px: float, step_px: float) -> torch.Tensor:
    """``(s, 2)`` offsets ``[x, y]`` on a square grid of ``step_px`` within ``max_shift_px``
    of zero (always including zero)."""
    if step_px <= 0 or max_shift_px < 0:
        raise ValueError(f"need step_px > 0 and max_shift_px >= 0, got {step_px}, {max_shift_px}")
    reach = int(max_shift_px // step_px)
    axis = torch.arange(-reach, reach + 1, dtype=torch.float32) * step_px
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([x.flatten(), y.flatten()], dim=1)
    return grid[grid.norm(dim=1) <= max_shift_px + 1e-6]


def _check(images: torch.Tensor, ctf: torch.Tensor, box: int) -> None:
    if images.shape[-2:] != (box, box) or ctf.shape != (images.shape[0], box, box // 2 + 1):
        raise ValueError(
            f"images (n, {box}, {box}) and ctf (n, {box}, {box // 2 + 1}) expected, got "
            f"{tuple(images.shape)} and {tuple(ctf.shape)}"
        )


def _grid_scores(
    images: torch.Tensor,
    ctf: torch.Tensor,
    projector: Projector,
    *,
    grid: torch.Tensor,
    max_frequency: float,
    shifts: torch.Tensor,
    chunk: int,
) -> Iterator[torch.Tensor]:
    """The normalised cross-correlation ``(k, s, m)`` of each chunk of particles
    with every pose of ``grid`` ``(m, 3, 3)`` at every offset ``(s, 2)``: the one scorer of
    :func:`global_search` and :func:`posterior_search`."""
    box, device = projector.box_px, projector.transform.device
    _check(images, ctf, box)
    mask, weights = _half_plane_weights(box, max_frequency, device)
    reference, power = _grid_projections(projector, grid, max_frequency, mask)
    ramps = shift_phase(box, shifts)[:, mask]  # (s, F): a particle moved by +o is centred
    for start in range(0, images.shape[0], chunk):
        rows = slice(start, start + chunk)
        data = _transform(images[rows].to(device))[:, mask]
        c = ctf[rows].to(device)[:, mask].to(torch.float32)
        moved = (c * data * weights)[:, None] * ramps[None]  # (k, s, F)
        numerator = torch.cat([moved.real, moved.imag], dim=2) @ reference.T  # (k, s, m)
        denominator = ((c * c * weights) @ power.T).clamp(min=1e-20).sqrt()  # (k, m)
        norm = ((data.abs() ** 2) * weights).sum(dim=1).clamp(min=1e-20).sqrt()  # (k,)
        yield numerator / denominator[:, None] / norm[:, None, None]


def global_search(
    images: torch.Tensor,
    ctf: torch.Tensor,
    projector: Projector,
    *,
    grid: torch.Tensor,
    max_frequency: float,
    shifts_px: torch.Tensor | None = None,
    chunk: int = 256,
) -> Alignment:
    """The best pose of ``grid`` ``(m, 3, 3)`` and offset of ``shifts_px`` ``(s, 2)``
    (default only zero; :func:`shift_grid`) for each particle ``(n, b, b)`` with its CTF
    ``(n, b, b//2 + 1)``. Each offset is a phase ramp on the particle, so the search costs
    ``s`` times the matrix products, never more projections. On the projector's device."""
    device = projector.transform.device
    shifts = torch.zeros((1, 2)) if shifts_px is None else shifts_px.to(torch.float32)
    shifts, grid = shifts.to(device), grid.to(device)
    m = len(grid)
    best_index, best_score = [], []
    for scores in _grid_scores(
        images,
        ctf,
        projector,
        grid=grid,
        max_frequency=max_frequency,
        shifts=shifts,
        chunk=chunk,
    ):
        score, index = scores.reshape(len(scores), -1).max(dim=1)
        best_index.append(index)
        best_score.append(score)
    index = torch.cat(best_index)
    return Alignment(grid[index % m], shifts[index // m], torch.cat(best_score))


@dataclass(frozen=True)
class PosePosterior:
    """Each of ``n`` particles' ``k`` most probable poses ``(n, k, 3, 3)`` and offsets
    ``(n, k, 2)`` px, their probabilities ``(n, k)`` (normalised over the ``k``) and
    correlations ``(n, k)``."""

    rotations: torch.Tensor
    offsets_px: torch.Tensor
    weights: torch.Tensor
    scores: torch.Tensor

    def best(self) -> Alignment:
        """The most probable pose of each particle."""
        return Alignment(self.rotations[:, 0], self.offsets_px[:, 0], self.scores[:, 0])


def posterior_search(
    images: torch.Tensor,
    ctf: torch.Tensor,
    projector: Projector,
    *,
    grid: torch.Tensor,
    max_frequency: float,
    shifts_px: torch.Tensor | None = None,
    top_k: int = 8,
    likelihood_scale: float = 1.0,
    chunk: int = 256,
) -> PosePosterior:
    """The posterior over poses of ``grid`` and offsets of ``shifts_px`` (as
    :func:`global_search` scores them) of each particle, kept to its ``top_k`` best.

    With white Gaussian noise and the best scale of the projection, the log-likelihood of a
    pose whose normalised correlation is ``r > 0`` is ``-(N / 2) ln(1 - r^2)`` for ``N`` real
    samples (the image's frequencies within ``max_frequency``); ``likelihood_scale`` (<= 1)
    flattens it (annealing, as the noise model of cryoSPARC's ab initio starts high). A flat
    prior over the grid.
    """
    if top_k < 1 or likelihood_scale <= 0:
        raise ValueError(
            f"need top_k >= 1 and likelihood_scale > 0, got {top_k}, {likelihood_scale}"
        )
    device = projector.transform.device
    shifts = torch.zeros((1, 2)) if shifts_px is None else shifts_px.to(torch.float32)
    shifts, grid = shifts.to(device), grid.to(device)
    m = len(grid)
    _, weights = _half_plane_weights(projector.box_px, max_frequency)
    samples = float(weights.sum())
    k = min(top_k, m * len(shifts))
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for scores in _grid_scores(
        images,
        ctf,
        projector,
        grid=grid,
        max_frequency=max_frequency,
        shifts=shifts,
        chunk=chunk,
    ):
        top, index = scores.reshape(len(scores), -1).topk(k, dim=1)
        r2 = top.clamp(0.0, 0.999999) ** 2  # a negative scale (inverted contrast) is not a fit
        log_likelihood = -0.5 * samples * likelihood_scale * torch.log1p(-r2)
        parts.append((top, index, torch.softmax(log_likelihood, dim=1)))
    top = torch.cat([p[0] for p in parts])
    index = torch.cat([p[1] for p in parts])
    return PosePosterior(grid[index % m], shifts[index // m], torch.cat([p[2] for p in parts]), top)


def _grid_projections(
    projector: Projector, grid: torch.Tensor, max_frequency: float, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The grid's projections within ``mask`` as ``(m, 2F)`` real and imaginary parts, and
    their power ``(m, F)``; kept on the projector for the next batch searched on the same grid
    (a live session aligns each exposure's particles against the same map)."""
    key = ("global", id(grid), float(max_frequency))
    found = projector.memo.get(key)
    if found is not None and found[0] is grid:
        return found[1], found[2]
    projections = projector.project_rfft(grid, max_frequency=max_frequency, oversampled=False)
    projections = projections[:, mask]
    reference = torch.cat([projections.real, projections.imag], dim=1)
    power = projections.abs() ** 2
    projector.memo[key] = (grid, reference, power)  # the grid held: its id stays its own
    return reference, power


def _turns(step_deg: float) -> torch.Tensor:
    """``(27, 3, 3)``: every combination of -step, 0, +step about x, y and z."""
    step = math.radians(step_deg)
    vectors = torch.tensor(list(np.ndindex(3, 3, 3)), dtype=torch.float64) - 1.0
    vectors = vectors * step
    angle = vectors.norm(dim=1).clamp(min=1e-12)
    axis = vectors / angle[:, None]
    k = torch.zeros(27, 3, 3, dtype=torch.float64)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.mT
    sin, cos = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    turns = torch.eye(3, dtype=torch.float64) + sin * k + (1 - cos) * (k @ k)
    return turns.float()


def _peak(surface: torch.Tensor, max_shift_px: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Best value and sub-pixel ``[x, y]`` of ``(..., b, b)`` correlation maps (origin at
    ``[0, 0]``, wrapped) within ``max_shift_px``."""
    box = surface.shape[-1]
    axis = torch.fft.fftfreq(box, device=surface.device) * box
    inside = axis[:, None] ** 2 + axis[None, :] ** 2 <= max_shift_px**2
    masked = torch.where(inside, surface, torch.tensor(-torch.inf, device=surface.device))
    flat = masked.flatten(-2)
    value, index = flat.max(dim=-1)
    row, col = index // box, index % box

    def parabola(minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
        curvature = minus - 2 * centre + plus
        ok = torch.isfinite(curvature) & (curvature < 0)
        return torch.where(ok, 0.5 * (minus - plus) / torch.where(ok, curvature, -1.0), 0.0)

    def at(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        index = ((r % box) * box + (c % box)).unsqueeze(-1)
        return surface.flatten(-2).gather(-1, index).squeeze(-1)

    dx = parabola(at(row, col - 1), value, at(row, col + 1))
    dy = parabola(at(row - 1, col), value, at(row + 1, col))
    return value, torch.stack([axis[col] + dx, axis[row] + dy], dim=-1)


def local_search(
    images: torch.Tensor,
    ctf: torch.Tensor,
    projector: Projector,
    start: Alignment,
    *,
    step_deg: float,
    max_frequency: float,
    max_shift_px: float = 4.0,
    chunk: int = 64,
) -> Alignment:
    """Each particle's best of 27 turns of ``step_deg`` around its pose in ``start``, with
    its best offset within ``max_shift_px`` of the box centre. On the projector's device."""
    box, device = projector.box_px, projector.transform.device
    frequencies = image_frequencies(box, device=device)
    mask = frequencies[..., :2].norm(dim=-1) <= max_frequency
    mask[0, 0] = False
    # the rfft2 half plane counts its inner columns twice in the norms below
    twice = torch.where(frequencies[..., 0] == 0, 1.0, 2.0)
    turns = _turns(step_deg).to(device)
    rotations, offsets, scores = [], [], []
    for first in range(0, images.shape[0], chunk):
        part = slice(first, first + chunk)
        data = _transform(images[part].to(device)) * mask
        c = ctf[part].to(device, torch.float32) * mask
        candidates = (turns[None] @ start.rotations[part, None].to(device)).reshape(-1, 3, 3)
        projections = projector.project_rfft(
            candidates, max_frequency=max_frequency, oversampled=False
        )
        projections = projections.reshape(-1, 27, box, box // 2 + 1)
        cross = (data.conj() * c)[:, None] * projections
        surface = torch.fft.irfft2(cross, s=(box, box)) * box * box
        model_norm = ((c * c)[:, None] * projections.abs() ** 2 * twice).sum((-2, -1)).sqrt()
        data_norm = ((data.abs() ** 2) * twice).sum((-2, -1)).sqrt()
        value, shift = _peak(surface, max_shift_px)
        value = value / model_norm.clamp(min=1e-20) / data_norm[:, None].clamp(min=1e-20)
        best_value, best = value.max(dim=1)
        rows = torch.arange(len(best), device=device)
        rotations.append(candidates.reshape(-1, 27, 3, 3)[rows, best])
        offsets.append(shift[rows, best])
        scores.append(best_value)
    return Alignment(torch.cat(rotations), torch.cat(offsets), torch.cat(scores))
