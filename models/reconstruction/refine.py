"""Gold-standard refinement against a reference, particle batch by particle batch:
:class:`RunningRefinement`.

Two half-sets are kept apart from the start (RELION's and cryoSPARC's gold standard): each
particle is aligned only against the map of its own half, and each half's map only ever holds
its own particles, so the FSC between the halves is not inflated by shared noise. The
reference is low-passed (30 A by default) so that the start does not bias the result. A new
batch is aligned (a global search over an SO(3) grid and a coarse grid of offsets at low
resolution, then local turns of shrinking steps with every offset) and added to its half's
sums; :meth:`RunningRefinement.update` then rebuilds both half-maps, their FSC and the
references the next batch is aligned against (each half-map Wiener-filtered with the SNR its
FSC implies). A full pass (:meth:`RunningRefinement.refine`)
re-aligns every particle and rebuilds the sums from scratch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from causalscope.models.reconstruction.alignment import (
    Alignment,
    global_search,
    local_search,
    shift_grid,
    so3_grid,
)
from causalscope.models.reconstruction.backprojection import Accumulator
from causalscope.models.reconstruction.fsc import HalfMapFsc, half_map_fsc, soft_spherical_mask
from causalscope.models.reconstruction.particle_ctf import ParticleCtfs
from causalscope.models.reconstruction.projection import Projector
from causalscope.models.reconstruction.symmetry import symmetry_matrices

__all__ = ["RefinementSettings", "RunningRefinement", "low_pass"]


def low_pass(
    volume: torch.Tensor, *, resolution_angstrom: float, pixel_size_angstrom: float
) -> torch.Tensor:
    """``volume`` with frequencies beyond ``1 / resolution_angstrom`` removed (a raised-cosine
    edge one shell wide)."""
    box, device = volume.shape[-1], volume.device
    k = torch.sqrt(
        torch.fft.fftfreq(box, device=device)[:, None, None] ** 2
        + torch.fft.fftfreq(box, device=device)[None, :, None] ** 2
        + torch.fft.rfftfreq(box, device=device)[None, None, :] ** 2
    )
    cutoff = pixel_size_angstrom / resolution_angstrom
    edge = 1.0 / box
    filter_ = (0.5 * (1 + torch.cos(math.pi * ((k - cutoff) / edge).clamp(0, 1)))).to(volume.dtype)
    return torch.fft.irfftn(torch.fft.rfftn(volume) * filter_, s=volume.shape)


@dataclass(frozen=True)
class RefinementSettings:
    """How particles are aligned.

    ``initial_resolution_angstrom``: the reference's low-pass and the first search's limit.
    ``grid_step_deg``: the global search's SO(3) grid. ``local_steps_deg``: the local turns
    after it, one search each. ``max_shift_px``: the offset search's radius.
    ``mask_radius_px``: the soft mask of the masked FSC (default 40 % of the box).
    ``symmetry``: the point group (:func:`symmetry_matrices`: C1, C<n>, D<n>, T, O, I) in its
    standard orientation; every particle is added at all its symmetry mates.
    """

    initial_resolution_angstrom: float = 30.0
    grid_step_deg: float = 15.0
    local_steps_deg: tuple[float, ...] = (7.5, 3.75, 1.9)
    max_shift_px: float = 4.0
    mask_radius_px: float | None = None
    symmetry: str = "C1"


@dataclass
class _Half:
    accumulator: Accumulator
    volume: torch.Tensor  # the map the half's particles are aligned against
    reference: Projector


@dataclass
class RunningRefinement:
    """The running 3D refinement of one session (box ``box_px``, ``pixel_size_angstrom``).

    ``device``: where the half-maps, their sums and the searches live; particles arrive on the
    CPU and move there batch by batch; alignments, the FSC and :meth:`state_dict` are on the
    CPU (a saved state loads where there is no GPU).
    """

    reference: torch.Tensor
    pixel_size_angstrom: float
    settings: RefinementSettings = field(default_factory=RefinementSettings)
    resolution_angstrom: float = math.nan
    fsc: HalfMapFsc | None = None
    device: torch.device | str = "cpu"

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        box = self.reference.shape[-1]
        start = low_pass(
            self.reference.to(self.device, torch.float32),
            resolution_angstrom=self.settings.initial_resolution_angstrom,
            pixel_size_angstrom=self.pixel_size_angstrom,
        )
        group = symmetry_matrices(self.settings.symmetry)
        self._symmetry = None if len(group) == 1 else torch.as_tensor(group, dtype=torch.float32)
        self._halves = [_Half(self._accumulator(box), start, Projector(start)) for _ in range(2)]
        self._grid = so3_grid(self.settings.grid_step_deg).to(self.device)
        self.resolution_angstrom = self.settings.initial_resolution_angstrom
        radius = self.settings.mask_radius_px or 0.4 * box
        mask = soft_spherical_mask(box, radius_px=radius, edge_px=max(3.0, box / 16))
        self._mask = mask.to(self.device)

    def _accumulator(self, box_px: int) -> Accumulator:
        return Accumulator(box_px, symmetry=self._symmetry, device=self.device)

    @property
    def box_px(self) -> int:
        return int(self.reference.shape[-1])

    @property
    def particle_count(self) -> int:
        return sum(h.accumulator.count for h in self._halves)

    def half_counts(self) -> tuple[int, int]:
        """Particles in half-set 1 and in half-set 2."""
        return self._halves[0].accumulator.count, self._halves[1].accumulator.count

    def _search_frequency(self) -> float:
        # a little beyond the current resolution, never beyond Nyquist
        return min(0.5, 1.1 * self.pixel_size_angstrom / self.resolution_angstrom)

    def align(self, images: torch.Tensor, ctfs: ParticleCtfs, half_set: np.ndarray) -> Alignment:
        """Poses and offsets of ``(n, b, b)`` particles, each against its own half's map
        (``half_set`` ``(n,)`` of 1 and 2); on the CPU."""
        half_set = np.asarray(half_set)
        if half_set.shape != (images.shape[0],) or not np.isin(half_set, (1, 2)).all():
            raise ValueError(f"half_set must be ({images.shape[0]},) of 1 and 2, got {half_set}")
        images = images.to(self.device)
        ctf = ctfs.rfft_grid(self.box_px, device=self.device)
        frequency = self._search_frequency()
        rotations = torch.zeros(images.shape[0], 3, 3, device=self.device)
        offsets = torch.zeros(images.shape[0], 2, device=self.device)
        scores = torch.zeros(images.shape[0], device=self.device)
        for h, half in enumerate(self._halves, start=1):
            rows = torch.as_tensor(np.flatnonzero(half_set == h), device=self.device)
            if not len(rows):
                continue
            # offsets on a grid of 2 px (1 px below 4 px), at frequencies that an offset
            # error of half a step turns by at most an eighth of a turn
            shift_step = 2.0 if self.settings.max_shift_px >= 4 else 1.0
            coarse = min(frequency, 0.25 / shift_step)
            found = global_search(
                images[rows],
                ctf[rows],
                half.reference,
                grid=self._grid,
                max_frequency=coarse,
                shifts_px=shift_grid(self.settings.max_shift_px, shift_step).to(self.device),
            )
            for turn_deg in self.settings.local_steps_deg:
                found = local_search(
                    images[rows],
                    ctf[rows],
                    half.reference,
                    found,
                    step_deg=turn_deg,
                    max_frequency=frequency,
                    max_shift_px=self.settings.max_shift_px,
                )
            rotations[rows], offsets[rows], scores[rows] = (
                found.rotations,
                found.offsets_px,
                found.scores,
            )
        return Alignment(rotations.cpu(), offsets.cpu(), scores.cpu())

    def add(
        self,
        images: torch.Tensor,
        ctfs: ParticleCtfs,
        half_set: np.ndarray,
        alignment: Alignment | None = None,
    ) -> Alignment:
        """Align a batch (unless ``alignment`` is given) and add it to its halves' sums."""
        alignment = self.align(images, ctfs, half_set) if alignment is None else alignment
        images = images.to(self.device)
        grid = ctfs.rfft_grid(self._halves[0].accumulator.padded_px, device=self.device)
        for h, half in enumerate(self._halves, start=1):
            rows = np.flatnonzero(np.asarray(half_set) == h)
            if len(rows):
                index = torch.as_tensor(rows, device=self.device)
                half.accumulator.add(
                    images[index],
                    alignment.rotations[rows],
                    grid[index],
                    shifts_px=alignment.offsets_px[rows],
                )
        return alignment

    def half_maps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The two half-maps, Wiener-filtered with the SNR of the last FSC (if any)."""
        snr = None
        if self.fsc is not None:
            fsc = self.fsc.unmasked.cpu().clamp(1e-4, 0.999)
            snr_box = fsc / (1 - fsc)  # per half-map
            padded = self._halves[0].accumulator.padded_px
            shells = torch.arange(padded // 2 + 1, dtype=torch.float32) * self.box_px / padded
            snr = torch.as_tensor(
                np.interp(shells.numpy(), np.arange(len(snr_box)), snr_box.numpy())
            )
        a, b = (h.accumulator.reconstruct(spectral_snr=snr) for h in self._halves)
        return a, b

    def update(self) -> HalfMapFsc:
        """Rebuild the half-maps, their FSC, the resolution and the references."""
        if min(h.accumulator.count for h in self._halves) == 0:
            raise ValueError("both half-sets need particles before an update")
        self.fsc = None
        a, b = self.half_maps()
        fsc = half_map_fsc(a, b, pixel_size_angstrom=self.pixel_size_angstrom, mask=self._mask)
        self.fsc = HalfMapFsc(fsc.unmasked.cpu(), fsc.masked.cpu(), fsc.pixel_size_angstrom)
        resolution = self.fsc.resolution_angstrom(0.143)
        self.resolution_angstrom = (
            resolution if math.isfinite(resolution) else self.settings.initial_resolution_angstrom
        )
        a, b = self.half_maps()
        for half, volume in zip(self._halves, (a, b), strict=True):
            filtered = low_pass(
                volume,
                resolution_angstrom=self.resolution_angstrom,
                pixel_size_angstrom=self.pixel_size_angstrom,
            )
            half.volume, half.reference = filtered, Projector(filtered)
        return self.fsc

    def state_dict(self) -> dict[str, Any]:
        """Everything a restart needs (numbers and CPU tensors), for :meth:`load_state_dict`."""
        return {
            "pixel_size_angstrom": self.pixel_size_angstrom,
            "resolution_angstrom": self.resolution_angstrom,
            "fsc": None if self.fsc is None else (self.fsc.unmasked, self.fsc.masked),
            "halves": [
                {
                    "data": h.accumulator.data.cpu(),
                    "weight": h.accumulator.weight.cpu(),
                    "count": h.accumulator.count,
                    "volume": h.volume.cpu(),
                }
                for h in self._halves
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (same box, pixel size and settings), on this
        refinement's device."""
        if abs(state["pixel_size_angstrom"] - self.pixel_size_angstrom) > 1e-6:
            raise ValueError(
                f"saved pixel size {state['pixel_size_angstrom']} differs from "
                f"{self.pixel_size_angstrom}"
            )
        self.resolution_angstrom = float(state["resolution_angstrom"])
        if state["fsc"] is not None:
            unmasked, masked = state["fsc"]
            self.fsc = HalfMapFsc(unmasked.cpu(), masked.cpu(), self.pixel_size_angstrom)
        for half, saved in zip(self._halves, state["halves"], strict=True):
            if saved["data"].shape != half.accumulator.data.shape:
                raise ValueError(f"saved sums {tuple(saved['data'].shape)} do not fit this box")
            accumulator, volume = half.accumulator, saved["volume"].to(self.device)
            accumulator.data = saved["data"].to(self.device)
            accumulator.weight = saved["weight"].to(self.device)
            accumulator.count = int(saved["count"])
            half.volume, half.reference = volume, Projector(volume)

    def refine(
        self,
        images: torch.Tensor,
        ctfs: ParticleCtfs,
        half_set: np.ndarray,
        *,
        iterations: int = 3,
        progress: Callable[[int, float], None] | None = None,
    ) -> Alignment:
        """Full passes: align every particle, rebuild both halves' sums, update; repeated."""
        alignment = None
        for iteration in range(iterations):
            for half in self._halves:
                half.accumulator = self._accumulator(self.box_px)
            alignment = self.add(images, ctfs, half_set)
            self.update()
            if progress is not None:
                progress(iteration + 1, self.resolution_angstrom)
        assert alignment is not None
        return alignment
