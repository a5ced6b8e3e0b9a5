"""Superposing one map on another, in either hand: :func:`align_map`, :func:`match_hand`.

A map found without a reference sits in an arbitrary orientation and position, and in either
hand (projections are the same for a map and its mirror image turned by 180 degrees). The
search turns the moving map over an SO(3) grid (:func:`so3_grid`) on a coarse copy of both maps
(low-passed to ``resolution_angstrom``), finds the best translation of each turn from one
cross-correlation by FFT, then refines the best turn by local turns of shrinking steps on the
full grid, the translation to a fraction of a voxel. Both hands are tried; the one that
correlates better with the reference is the map's hand. A turned map is ``V(R^T r)`` (RELION's
convention: a pose ``R`` takes the map to the view), then moved by ``t``: ``V(R^T (r - t))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from causalscope.models.reconstruction.alignment import _turns, so3_grid
from causalscope.models.reconstruction.refine import low_pass
from causalscope.models.reconstruction.resample import rescale_map

__all__ = [
    "Handedness",
    "MapAlignment",
    "align_map",
    "apply_alignment",
    "match_hand",
    "mirror_map",
    "rotate_map",
]

_HANDS = ("as_is", "mirrored")


@dataclass(frozen=True)
class MapAlignment:
    """The turn ``(3, 3)`` and translation ``[x, y, z]`` (voxels) that put the moving map,
    in ``hand`` (``"as_is"`` or ``"mirrored"``), on the fixed one; the correlation reached and
    the best correlation in each hand tried."""

    rotation: torch.Tensor
    shift_px: torch.Tensor
    hand: str
    correlation: float
    correlations: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Handedness:
    """Which hand of a map matches a reference: ``hand`` and the correlation after alignment
    in each hand. ``decided``: the two differ by more than ``margin``."""

    hand: str
    correlation_as_is: float
    correlation_mirrored: float
    margin: float = 0.02

    @property
    def decided(self) -> bool:
        return abs(self.correlation_as_is - self.correlation_mirrored) > self.margin


def mirror_map(volume: torch.Tensor) -> torch.Tensor:
    """``(b, b, b)`` map reflected through the plane ``z = b // 2`` (the other hand)."""
    return torch.roll(volume.flip(0), 1 - volume.shape[0] % 2, dims=0)


def _coordinates(box_px: int, device: torch.device) -> torch.Tensor:
    axis = torch.arange(box_px, dtype=torch.float32, device=device) - box_px // 2
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    return torch.stack([x, y, z], dim=-1)  # (b, b, b, 3) as [x, y, z]


def rotate_map(volume: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """``(n, b, b, b)`` copies of ``volume`` turned by each of ``rotations`` ``(n, 3, 3)``
    about the centre ``b // 2``, ``V(R^T r)`` (trilinear interpolation)."""
    box = volume.shape[-1]
    coordinates = _coordinates(box, volume.device).reshape(-1, 3)
    source = coordinates @ rotations.to(volume.device, torch.float32)  # rows: R^T r
    grid = (source + box // 2) * (2.0 / (box - 1)) - 1.0
    grid = grid.reshape(len(rotations), box, box, box, 3)
    moving = volume.to(torch.float32)[None, None].expand(len(rotations), 1, box, box, box)
    turned = F.grid_sample(moving, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return turned[:, 0]


def _shift(volume: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
    """``V(r - t)`` for ``t`` ``[x, y, z]`` voxels (a phase ramp: exact, periodic)."""
    box = volume.shape[-1]
    kz = torch.fft.fftfreq(box, device=volume.device)[:, None, None]
    ky = torch.fft.fftfreq(box, device=volume.device)[None, :, None]
    kx = torch.fft.rfftfreq(box, device=volume.device)[None, None, :]
    x, y, z = (float(v) for v in shift_px)
    phase = torch.polar(torch.ones(()), -2 * math.pi * (kx * x + ky * y + kz * z))
    return torch.fft.irfftn(torch.fft.rfftn(volume) * phase, s=volume.shape)


def _correlate(
    turned: torch.Tensor, fixed: torch.Tensor, max_shift_px: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best normalised correlation ``(n,)`` of ``(n, b, b, b)`` maps with ``fixed`` over
    translations within ``max_shift_px``, and the translation ``(n, 3)`` ``[x, y, z]``
    (refined by a parabola through the peak's neighbours on each axis)."""
    box = fixed.shape[-1]
    turned = turned - turned.mean(dim=(-3, -2, -1), keepdim=True)
    fixed = fixed - fixed.mean()
    cross = torch.fft.irfftn(
        torch.fft.rfftn(fixed) * torch.fft.rfftn(turned, dim=(-3, -2, -1)).conj(),
        s=(box, box, box),
        dim=(-3, -2, -1),
    )
    norm = turned.flatten(1).norm(dim=1) * fixed.norm()
    cross = cross / norm.clamp(min=1e-20)[:, None, None, None]
    lag = torch.fft.fftfreq(box) * box
    inside = lag[:, None, None] ** 2 + lag[None, :, None] ** 2 + lag[None, None, :] ** 2
    masked = torch.where(inside <= max_shift_px**2, cross, torch.tensor(-torch.inf))
    value, index = masked.flatten(1).max(dim=1)
    z, y, x = index // (box * box), (index // box) % box, index % box
    rows = torch.arange(len(value))
    shifts = []
    for axis, centre in ((x, (z, y, None)), (y, (z, None, x)), (z, (None, y, x))):

        def at(offset: int, axis: torch.Tensor = axis, centre: tuple = centre) -> torch.Tensor:
            where = [c if c is not None else (axis + offset) % box for c in centre]
            return cross[rows, where[0], where[1], where[2]]

        minus, plus = at(-1), at(1)
        curvature = minus - 2 * value + plus
        step = torch.where(curvature < 0, 0.5 * (minus - plus) / curvature.clamp(max=-1e-12), 0)
        shifts.append(lag[axis] + step.clamp(-0.5, 0.5))
    return value, torch.stack(shifts, dim=1)


def _search_copy(
    volume: torch.Tensor, *, pixel_size_angstrom: float, resolution_angstrom: float, box_px: int
) -> tuple[torch.Tensor, float]:
    """The map low-passed and binned to ``box_px`` (no finer than the low-pass needs)."""
    box = volume.shape[-1]
    size = min(box, max(16, 2 * round(box_px / 2)))
    apix = pixel_size_angstrom * box / size
    small = rescale_map(
        volume.float(), from_pixel_angstrom=pixel_size_angstrom, to_pixel_angstrom=apix, box_px=size
    )
    limit = max(resolution_angstrom, 2.0 * apix)
    return low_pass(small, resolution_angstrom=limit, pixel_size_angstrom=apix), apix


def _align_one(
    moving: torch.Tensor,
    fixed: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    resolution_angstrom: float,
    grid_step_deg: float,
    search_box_px: int,
    max_shift: float,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    box = fixed.shape[-1]
    small_moving, apix = _search_copy(
        moving,
        pixel_size_angstrom=pixel_size_angstrom,
        resolution_angstrom=resolution_angstrom,
        box_px=search_box_px,
    )
    small_fixed, _ = _search_copy(
        fixed,
        pixel_size_angstrom=pixel_size_angstrom,
        resolution_angstrom=resolution_angstrom,
        box_px=search_box_px,
    )
    small_box = small_fixed.shape[-1]
    grid = so3_grid(grid_step_deg)
    best_value, best_rotation = -math.inf, torch.eye(3)
    chunk = max(1, (1 << 22) // small_box**3)
    for first in range(0, len(grid), chunk):
        rotations = grid[first : first + chunk]
        value, _ = _correlate(
            rotate_map(small_moving, rotations), small_fixed, max_shift * small_box
        )
        top, index = value.max(dim=0)
        if float(top) > best_value:
            best_value, best_rotation = float(top), rotations[index]
    # local turns: on the coarse copy to a twelfth of the grid, then on the full maps
    full_moving = low_pass(
        moving.float(),
        resolution_angstrom=resolution_angstrom,
        pixel_size_angstrom=pixel_size_angstrom,
    )
    full_fixed = low_pass(
        fixed.float(),
        resolution_angstrom=resolution_angstrom,
        pixel_size_angstrom=pixel_size_angstrom,
    )
    step = grid_step_deg / 2
    shift = torch.zeros(3)
    for level in range(6):
        coarse = level < 3 and small_box < box
        source, target = (small_moving, small_fixed) if coarse else (full_moving, full_fixed)
        candidates = _turns(step) @ best_rotation
        values, shifts = _correlate(
            rotate_map(source, candidates), target, max_shift * target.shape[-1]
        )
        pick = int(values.argmax())
        best_rotation, best_value = candidates[pick], float(values[pick])
        shift = shifts[pick] * (apix / pixel_size_angstrom if coarse else 1.0)
        step /= 2
    return best_rotation, shift, best_value


def align_map(
    moving: torch.Tensor,
    fixed: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    resolution_angstrom: float = 20.0,
    grid_step_deg: float = 15.0,
    search_box_px: int = 20,
    max_shift: float = 0.25,
    hands: tuple[str, ...] = _HANDS,
) -> MapAlignment:
    """The turn and translation (within ``max_shift`` of the box) that superpose ``moving``
    on ``fixed`` (both ``(b, b, b)`` at ``pixel_size_angstrom``), in the better of ``hands``,
    compared to ``resolution_angstrom``. The grid search runs on copies binned to
    ``search_box_px``; local turns end at a quarter of a degree for ``grid_step_deg`` 15."""
    if moving.shape != fixed.shape or moving.ndim != 3 or len(set(fixed.shape)) != 1:
        raise ValueError(
            f"maps must be cubes of one shape, got {tuple(moving.shape)} and {tuple(fixed.shape)}"
        )
    if not set(hands) <= set(_HANDS) or not hands:
        raise ValueError(f"hands must be some of {_HANDS}, got {hands}")
    found: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
    for hand in hands:
        volume = mirror_map(moving) if hand == "mirrored" else moving
        found[hand] = _align_one(
            volume,
            fixed,
            pixel_size_angstrom=pixel_size_angstrom,
            resolution_angstrom=resolution_angstrom,
            grid_step_deg=grid_step_deg,
            search_box_px=search_box_px,
            max_shift=max_shift,
        )
    hand = max(found, key=lambda h: found[h][2])
    rotation, shift, value = found[hand]
    return MapAlignment(rotation, shift, hand, value, {h: v[2] for h, v in found.items()})


def apply_alignment(volume: torch.Tensor, alignment: MapAlignment) -> torch.Tensor:
    """``volume`` in the alignment's hand, turned and moved onto the fixed map."""
    if alignment.hand == "mirrored":
        volume = mirror_map(volume)
    turned = rotate_map(volume.float(), alignment.rotation[None])[0]
    return _shift(turned, alignment.shift_px)


def match_hand(
    moving: torch.Tensor,
    fixed: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    resolution_angstrom: float = 20.0,
    grid_step_deg: float = 15.0,
    search_box_px: int = 20,
    margin: float = 0.02,
) -> Handedness:
    """Which hand of ``moving`` matches ``fixed`` (each aligned, :func:`align_map`)."""
    found = align_map(
        moving,
        fixed,
        pixel_size_angstrom=pixel_size_angstrom,
        resolution_angstrom=resolution_angstrom,
        grid_step_deg=grid_step_deg,
        search_box_px=search_box_px,
    )
    return Handedness(
        found.hand, found.correlations["as_is"], found.correlations["mirrored"], margin
    )
