"""A map from particles without a reference: :func:`ab_initio`.

Stochastic gradient descent as cryoSPARC's ab initio does it (Punjani et al. 2017, Nature
Methods 14:290): the map starts as the reconstruction of a few particles at random poses; each
iteration takes a random minibatch, computes each particle's posterior over poses of an SO(3)
grid and offsets (:func:`posterior_search`) against the current map at the current resolution
limit, and takes a step towards the minibatch's reconstruction. With the diagonal
preconditioner ``sum CTF^2`` the step is a running backprojection with forgetting: the sums
``sum w CTF X`` and ``sum w CTF^2`` of earlier minibatches are scaled by ``keep`` before the new
one is added (:meth:`Accumulator.forget`), and the map is their Wiener ratio
``sum CTF X / (sum CTF^2 + 1/SNR)``. Each map is made non-negative (protein is white in
extracted particles) and softly masked in real space. The resolution limit grows from
``start_resolution_angstrom`` to ``final_resolution_angstrom`` while the likelihood sharpens
(the noise model's annealing). Then ``final_iterations`` full passes assign every particle its
best pose (the grid, then local turns; :func:`global_search`, :func:`local_search`) at the final
resolution, as cryoSPARC ends with full-batch iterations.

The work is done on particles Fourier-cropped to a pixel of ``final_resolution / 2.4`` (the
final limit sits below Nyquist); the map comes back at the particles' box and pixel size.
Projections do not fix the hand: the map is right-handed or mirrored with equal likelihood,
until compared with a known structure (:func:`match_hand`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch_fourier_shell_correlation import fourier_shell_correlation

from causalscope.models.reconstruction.alignment import (
    Alignment,
    PosePosterior,
    global_search,
    local_search,
    posterior_search,
    shift_grid,
    so3_grid,
)
from causalscope.models.reconstruction.backprojection import Accumulator
from causalscope.models.reconstruction.fsc import fsc_resolution_angstrom, soft_spherical_mask
from causalscope.models.reconstruction.map_align import mirror_map
from causalscope.models.reconstruction.particle_ctf import ParticleCtfs
from causalscope.models.reconstruction.projection import Projector
from causalscope.models.reconstruction.refine import low_pass
from causalscope.models.reconstruction.resample import fourier_crop, rescale_map
from causalscope.models.reconstruction.symmetry import symmetry_matrices
from causalscope.models.rotations import random_rotations

__all__ = ["AbInitioResult", "AbInitioSettings", "AbInitioStep", "ab_initio", "with_hand"]


@dataclass(frozen=True)
class AbInitioSettings:
    """How the map is found.

    ``iterations`` minibatches of ``batch_size`` particles; the resolution limit grows (in
    ``1/A``) from ``start_resolution_angstrom`` to ``final_resolution_angstrom`` over the first
    ``anneal_fraction`` of them, and the likelihood's scale from ``initial_likelihood_scale`` to
    1. ``keep``: the share of the running sums kept at each step (forgetting).
    ``grid_step_deg``: the SO(3) grid of the posterior; ``top_k`` poses kept per particle;
    offsets within ``max_shift_angstrom`` on a grid of ``shift_step_angstrom``.
    ``final_iterations``: full passes with each particle's best pose at the final resolution,
    refined by ``local_steps_deg``. ``snr``: the Wiener filter's signal-to-noise ratio.
    ``mask_radius``: the soft mask's radius as a share of the box. ``symmetry``: the point
    group (:func:`symmetry_matrices`), imposed on every map in its standard orientation.
    ``seed`` fixes the start and the minibatches.
    """

    iterations: int = 40
    batch_size: int = 100
    start_resolution_angstrom: float = 35.0
    final_resolution_angstrom: float = 12.0
    anneal_fraction: float = 0.75
    initial_likelihood_scale: float = 0.1
    keep: float = 0.7
    grid_step_deg: float = 15.0
    top_k: int = 8
    max_shift_angstrom: float = 8.0
    shift_step_angstrom: float = 4.0
    final_iterations: int = 2
    local_steps_deg: tuple[float, ...] = (7.5, 3.75)
    snr: float = 1.0
    mask_radius: float = 0.42
    positivity: bool = True
    symmetry: str = "C1"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1 or self.final_iterations < 0:
            raise ValueError(
                f"need iterations >= 1, batch_size >= 1 and final_iterations >= 0, got "
                f"{self.iterations}, {self.batch_size}, {self.final_iterations}"
            )
        if not 0 < self.final_resolution_angstrom <= self.start_resolution_angstrom:
            raise ValueError(
                f"final resolution {self.final_resolution_angstrom} A must be positive and no "
                f"coarser than the start {self.start_resolution_angstrom} A"
            )
        if not 0 <= self.keep < 1:
            raise ValueError(f"keep must be in [0, 1), got {self.keep}")
        symmetry_matrices(self.symmetry)  # raises on an unknown group


@dataclass(frozen=True)
class AbInitioStep:
    """One iteration: its resolution limit (A), the particles' mean best correlation and the
    mean probability of their most probable pose (near 1: the poses are decided)."""

    iteration: int
    resolution_angstrom: float
    mean_score: float
    mean_top_weight: float


@dataclass(frozen=True)
class AbInitioResult:
    """The map ``(b, b, b)`` at the particles' box and ``pixel_size_angstrom``; the last
    pass's poses and offsets (px of the particles); the resolution (A) at which the FSC of
    the last pass's two halves (alternate particles, poses from one map, so optimistic) falls
    to 0.143; the hand is undetermined (``mirror_map`` gives the other one)."""

    volume: torch.Tensor
    pixel_size_angstrom: float
    alignment: Alignment | None
    resolution_angstrom: float
    history: list[AbInitioStep] = field(default_factory=list)


def with_hand(volume: torch.Tensor, hand: str) -> torch.Tensor:
    """``volume`` as it is (``hand="as_is"``) or mirrored (``"mirrored"``)."""
    if hand == "as_is":
        return volume
    if hand == "mirrored":
        return mirror_map(volume)
    raise ValueError(f"hand must be 'as_is' or 'mirrored', got {hand!r}")


def _working_box(box_px: int, pixel_size_angstrom: float, final_angstrom: float) -> int:
    """The even box whose Nyquist sits a little beyond the final resolution."""
    wanted = box_px * pixel_size_angstrom * 2.4 / final_angstrom
    return int(min(box_px, max(16, 2 * math.ceil(wanted / 2))))


class _Map:
    """The running sums and what makes a map of them, on ``device``."""

    def __init__(
        self,
        box_px: int,
        settings: AbInitioSettings,
        symmetry: torch.Tensor | None,
        device: torch.device,
    ):
        self.box_px = box_px
        self.settings = settings
        self.symmetry = symmetry
        self.device = device
        self.mask = soft_spherical_mask(
            box_px, radius_px=settings.mask_radius * box_px, edge_px=max(2.0, box_px / 12)
        ).to(device)

    def accumulator(self) -> Accumulator:
        return Accumulator(self.box_px, symmetry=self.symmetry, device=self.device)

    def volume(
        self, accumulator: Accumulator, *, resolution_angstrom: float, pixel_size_angstrom: float
    ) -> torch.Tensor:
        snr = torch.full((accumulator.padded_px // 2 + 1,), self.settings.snr, device=self.device)
        volume = accumulator.reconstruct(spectral_snr=snr)
        volume = low_pass(
            volume,
            resolution_angstrom=resolution_angstrom,
            pixel_size_angstrom=pixel_size_angstrom,
        )
        if self.settings.positivity:
            volume = volume.clamp(min=0)
        volume = volume * self.mask
        return volume / volume.std().clamp(min=1e-12)


def _insert_posterior(
    accumulator: Accumulator,
    images: torch.Tensor,
    ctf_padded: torch.Tensor,
    posterior: PosePosterior,
    *,
    max_frequency: float,
) -> None:
    """Add each particle at its probable poses, weighted (poses below 1 % left out)."""
    k = posterior.weights.shape[1]
    weights = posterior.weights.reshape(-1)
    kept = torch.nonzero(weights >= 0.01).squeeze(1)
    particle = kept // k
    accumulator.add(
        images[particle],
        posterior.rotations.reshape(-1, 3, 3)[kept],
        ctf_padded[particle],
        shifts_px=posterior.offsets_px.reshape(-1, 2)[kept],
        weights=weights[kept],
        max_frequency=max_frequency,
    )


def ab_initio(
    images: torch.Tensor,
    ctfs: ParticleCtfs,
    *,
    pixel_size_angstrom: float,
    settings: AbInitioSettings | None = None,
    progress: Callable[[AbInitioStep], None] | None = None,
    device: torch.device | str = "cpu",
) -> AbInitioResult:
    """A map from ``(n, b, b)`` particles (protein white, as extraction writes them) and
    their CTFs, without a reference (see the module's notes). It is found on ``device`` (the
    particles, binned there, stay there); the result is on the CPU, and the random start and
    minibatches are the same on every device (drawn by numpy)."""
    settings = settings or AbInitioSettings()
    device = torch.device(device)
    n, box = images.shape[0], images.shape[-1]
    if images.shape[1:] != (box, box) or box % 2 or len(ctfs) != n:
        raise ValueError(
            f"images must be (n, b, b) with b even and n = {len(ctfs)} CTFs, got "
            f"{tuple(images.shape)}"
        )
    rng = np.random.default_rng(settings.seed)
    work_box = _working_box(box, pixel_size_angstrom, settings.final_resolution_angstrom)
    apix = pixel_size_angstrom * box / work_box
    data = fourier_crop(images.to(device, torch.float32), work_box)
    data = data / data.std().clamp(min=1e-12)
    ctf = ctfs.rfft_grid(work_box, pixel_size_angstrom=apix, device=device)
    group = symmetry_matrices(settings.symmetry)
    symmetry = None if len(group) == 1 else torch.as_tensor(group, dtype=torch.float32)
    maps = _Map(work_box, settings, symmetry, device)
    accumulator = maps.accumulator()
    ctf_padded = ctfs.rfft_grid(accumulator.padded_px, pixel_size_angstrom=apix, device=device)
    grid = so3_grid(settings.grid_step_deg).to(device)
    shifts = shift_grid(settings.max_shift_angstrom / apix, settings.shift_step_angstrom / apix)
    shifts = shifts.to(device)

    # the start: a few particles at random poses, blurred to the start resolution
    first = rng.choice(n, size=min(n, 3 * settings.batch_size), replace=False)
    random_poses = torch.as_tensor(
        random_rotations(rng, len(first)), dtype=torch.float32, device=device
    )
    start_frequency = min(0.5, apix / settings.start_resolution_angstrom)
    accumulator.add(
        data[first], random_poses, ctf_padded[first], max_frequency=max(start_frequency, 0.05)
    )
    resolution = settings.start_resolution_angstrom
    volume = maps.volume(accumulator, resolution_angstrom=resolution, pixel_size_angstrom=apix)

    history: list[AbInitioStep] = []
    annealed = max(1, round(settings.anneal_fraction * settings.iterations))
    for iteration in range(settings.iterations):
        t = min(1.0, iteration / max(1, annealed - 1))
        inverse = (1 - t) / settings.start_resolution_angstrom + t / (
            settings.final_resolution_angstrom
        )
        resolution = 1.0 / inverse
        frequency = min(0.5, apix / resolution)
        scale = settings.initial_likelihood_scale ** (1 - t)
        batch = torch.as_tensor(
            rng.choice(n, size=min(n, settings.batch_size), replace=False),
            dtype=torch.long,
            device=device,
        )
        posterior = posterior_search(
            data[batch],
            ctf[batch],
            Projector(volume),
            grid=grid,
            max_frequency=frequency,
            shifts_px=shifts,
            top_k=settings.top_k,
            likelihood_scale=scale,
            chunk=32,
        )
        accumulator.forget(settings.keep)
        _insert_posterior(
            accumulator, data[batch], ctf_padded[batch], posterior, max_frequency=frequency
        )
        volume = maps.volume(accumulator, resolution_angstrom=resolution, pixel_size_angstrom=apix)
        step = AbInitioStep(
            iteration + 1,
            resolution,
            float(posterior.scores[:, 0].mean()),
            float(posterior.weights[:, 0].mean()),
        )
        history.append(step)
        if progress is not None:
            progress(step)

    alignment: Alignment | None = None
    resolution_reached = math.nan
    frequency = min(0.5, apix / settings.final_resolution_angstrom)
    for _ in range(settings.final_iterations):
        projector = Projector(volume)
        if alignment is None:  # the grid first, as refinement does; then from the last poses
            shift_step_px = settings.shift_step_angstrom / apix
            alignment = global_search(
                data,
                ctf,
                projector,
                grid=grid,
                max_frequency=min(frequency, 0.25 / shift_step_px),
                shifts_px=shifts,
                chunk=32,
            )
        for turn_deg in settings.local_steps_deg:
            alignment = local_search(
                data,
                ctf,
                projector,
                alignment,
                step_deg=turn_deg,
                max_frequency=frequency,
                max_shift_px=settings.max_shift_angstrom / apix,
            )
        halves = [maps.accumulator(), maps.accumulator()]
        for h, half in enumerate(halves):
            rows = torch.arange(h, n, 2, device=device)
            half.add(
                data[rows],
                alignment.rotations[rows],
                ctf_padded[rows],
                shifts_px=alignment.offsets_px[rows],
            )
        accumulator = halves[0].merged(halves[1])
        volume = maps.volume(
            accumulator,
            resolution_angstrom=settings.final_resolution_angstrom,
            pixel_size_angstrom=apix,
        )
        a, b = (half.reconstruct() for half in halves)
        curve = fourier_shell_correlation(a * maps.mask, b * maps.mask)
        resolution_reached = fsc_resolution_angstrom(
            curve, pixel_size_angstrom=apix, threshold=0.143
        )
    out = rescale_map(
        volume, from_pixel_angstrom=apix, to_pixel_angstrom=pixel_size_angstrom, box_px=box
    )
    if alignment is not None:
        offsets = alignment.offsets_px.cpu() * (apix / pixel_size_angstrom)
        alignment = Alignment(alignment.rotations.cpu(), offsets, alignment.scores.cpu())
    return AbInitioResult(out.cpu(), pixel_size_angstrom, alignment, resolution_reached, history)
