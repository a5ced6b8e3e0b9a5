"""Per-class metrics of a :class:`Class2D`, a junk score, and automatic class selection.

Junk score (0 good .. 1 junk) of a class average ``A`` (protein bright) for particles of
expected diameter ``D`` (radius ``R = D / 2``), the probabilistic OR of four scores in [0, 1],
``junk = 1 - prod(1 - s_i)``:

- ``s_resolution = clip(log(res / (2 res_best)) / log(2), 0, 1)``: resolution (FRC 0.143 of
  the half-set averages) against the best class of the run: 0 up to 2x the best, 1 from 4x
  (and for classes whose FRC never rises above 0.143). Views of a nearly round particle
  (apoferritin) whose in-plane angle the noise hides average to a smooth ring at 2-2.6x the
  best class's resolution: with 1.5x and 3x, such classes of up to 181 good particles were
  rejected in simulated sessions.
- ``s_outside = clip((f_out - 0.35) / 0.3, 0, 1)``: ``f_out`` is the fraction of the
  average's energy ``A^2`` (after a 20 A low-pass) beyond ``1.1 R`` from the centre: carbon
  films, large ice and aggregates put density where the particle is not.
- ``s_size = clip(|log2(Rg / Rg_0)| - 1, 0, 1)``: ``Rg`` the radius of gyration of the
  density above 20 % of its peak (20 A low-pass), ``Rg_0 = R / sqrt(2)`` that of a uniform
  disc of radius ``R``, penalised beyond a factor 2 and fully at 4: fragments and small ice
  are too small, aggregates and film too large (an end-on view of an elongated particle is
  legitimately small: give the particle's largest diameter). A *round* average (``rho``, the
  share of its energy in its rotational average, above 0.85) is held to more: ``s_size`` is
  at least ``clip((log2(Rg_0 / Rg) - 0.6) / 0.8, 0, 1) * clip((rho - 0.85) / 0.1, 0, 1)``,
  penalised from 1.5x smaller, fully at 2.6x: a small ice blob averages to a featureless
  round disc at 2-2.3x below ``Rg_0``, inside the factor 2 the general rule allows.
- ``s_edge = clip((c - 6) / 6, 0, 1)``: ``c`` the largest of 36 angular sectors' share of the
  average's spectral power (rings box/8 .. 0.45 box) relative to an even share: a straight
  edge puts its power on one line through the origin at every frequency (``c`` of 15-25);
  particles, even elongated ones, spread it at these frequencies (``c`` of 2-5).

:func:`select_classes` keeps classes with ``junk < threshold`` and at least ``min_particles``
particles; ``manual`` (class index -> True/False, the operator's choice) overrides both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from causalscope.models.classification._grids import gaussian_low_pass
from causalscope.models.classification.averages import frc_first_crossing_angstrom
from causalscope.models.classification.class2d import Assignment, Class2D

__all__ = ["ClassMetrics", "class_metrics", "junk_components", "select_classes"]

_SECTORS = 36


@dataclass(frozen=True)
class ClassMetrics:
    """One class: counts, resolution and junk score (module docstring)."""

    class_index: int
    n_particles: int  # particles whose most probable class this is
    weight: float  # sum of posteriors
    effective_sample_size: float  # (sum w)^2 / sum w^2
    resolution_angstrom: float  # FRC 0.143 of the half-set averages (inf: none)
    junk_score: float
    s_resolution: float
    s_outside: float
    s_size: float
    s_edge: float


def class_metrics(
    model: Class2D, assignment: Assignment, *, particle_diameter_angstrom: float
) -> list[ClassMetrics]:
    """Metrics of every class of ``model``; ``assignment`` gives the particle counts (usually
    from :meth:`Class2D.reassign_all`)."""
    if particle_diameter_angstrom <= 0:
        raise ValueError(
            f"particle_diameter_angstrom must be positive: {particle_diameter_angstrom}"
        )
    grid, sums = model.grid, model.sums
    apix = grid.pixel_size_angstrom
    frc = model.frc.cpu()
    resolution = [
        frc_first_crossing_angstrom(frc[k], pixel_size_angstrom=apix)
        for k in range(model.settings.n_classes)
    ]
    weight, weight2 = sums.weight.sum(1).cpu(), sums.weight2.cpu()
    populated = [r for r, w in zip(resolution, weight.tolist(), strict=True) if w >= 4]
    best = min(populated, default=math.inf)
    components = [
        c.cpu()
        for c in junk_components(
            model.references,
            pixel_size_angstrom=apix,
            radius_angstrom=particle_diameter_angstrom / 2,
        )
    ]
    counts = np.bincount(assignment.class_index[assignment.class_index >= 0],
                         minlength=model.settings.n_classes)  # fmt: skip
    out = []
    for k in range(model.settings.n_classes):
        s_res = 1.0
        if math.isfinite(best) and math.isfinite(resolution[k]):
            s_res = float(np.clip(math.log(resolution[k] / (2.0 * best)) / math.log(2.0), 0, 1))
        s_out, s_size, s_edge = (float(c[k]) for c in components)
        junk = 1.0 - (1 - s_res) * (1 - s_out) * (1 - s_size) * (1 - s_edge)
        w, w2 = float(weight[k]), float(weight2[k].sum())
        out.append(
            ClassMetrics(
                k,
                int(counts[k]),
                w,
                w * w / w2 if w2 > 0 else 0.0,
                resolution[k],
                junk,
                s_res,
                s_out,
                s_size,
                s_edge,
            )
        )
    return out


def junk_components(
    averages: torch.Tensor, *, pixel_size_angstrom: float, radius_angstrom: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(s_outside, s_size, s_edge)`` ``(K,)`` of class averages ``(K, b, b)`` (module
    docstring)."""
    k_classes, b, device = averages.shape[0], averages.shape[-1], averages.device
    f = torch.fft.rfft2(averages.to(torch.float64))
    fy = torch.fft.fftfreq(b, dtype=torch.float64, device=device)[:, None]
    fx = torch.fft.rfftfreq(b, dtype=torch.float64, device=device)[None, :]
    smooth = gaussian_low_pass(
        averages.to(torch.float64),
        pixel_size_angstrom=pixel_size_angstrom,
        resolution_angstrom=20.0,
    )
    c = torch.arange(b, dtype=torch.float64, device=device) - b // 2
    r = torch.sqrt(c[:, None] ** 2 + c[None, :] ** 2) * pixel_size_angstrom
    energy = smooth**2
    outside = (energy * (r > 1.1 * radius_angstrom)).sum((-2, -1))
    f_out = outside / energy.sum((-2, -1)).clamp(min=1e-30)
    s_outside = ((f_out - 0.35) / 0.3).clamp(0, 1)
    peak = smooth.flatten(1).max(-1).values[:, None, None]
    mass = (smooth - 0.2 * peak).clamp(min=0)
    rg = torch.sqrt((mass * r**2).sum((-2, -1)) / mass.sum((-2, -1)).clamp(min=1e-30))
    log_ratio = torch.log2(rg.clamp(min=1e-6) / (radius_angstrom / math.sqrt(2)))
    s_size = (log_ratio.abs() - 1.0).clamp(0, 1)
    # a round average well below the particle's size: a small ice blob or a fragment
    gate = ((_roundness(smooth, r / pixel_size_angstrom) - 0.85) / 0.1).clamp(0, 1)
    s_size = torch.maximum(s_size, ((-log_ratio - 0.6) / 0.8).clamp(0, 1) * gate)
    ring = torch.sqrt(fx**2 + fy**2) * b
    band = (ring >= b / 8) & (ring <= 0.45 * b)
    angle = torch.remainder(torch.atan2(fy, fx).expand(b, b // 2 + 1), math.pi)
    sector = torch.clamp((angle / math.pi * _SECTORS).long(), max=_SECTORS - 1)
    power = (f.abs() ** 2 * band).reshape(k_classes, -1)
    per_sector = torch.zeros(k_classes, _SECTORS, dtype=torch.float64, device=device)
    per_sector.index_add_(1, sector.flatten(), power)
    concentration = per_sector.max(-1).values / per_sector.mean(-1).clamp(min=1e-30)
    s_edge = ((concentration - 6.0) / 6.0).clamp(0, 1)
    return s_outside.float(), s_size.float(), s_edge.float()


def _roundness(images: torch.Tensor, radius_px: torch.Tensor) -> torch.Tensor:
    """``(K,)`` the share of each image's energy (inside 0.45 of the box from its centre)
    that its rotational average about the centre holds: 1 for a disc, 0.5-0.9 for views of
    most particles."""
    b = images.shape[-1]
    ring = radius_px.round().long().clamp(max=b // 2)
    inside = radius_px < 0.45 * b
    counts = torch.bincount(ring.flatten(), minlength=b // 2 + 1).clamp(min=1)
    flat = images.reshape(images.shape[0], -1)
    means = images.new_zeros(images.shape[0], b // 2 + 1)
    means.index_add_(1, ring.flatten(), flat)
    rotational = (means / counts)[:, ring]
    energy = (images**2 * inside).sum((-2, -1)).clamp(min=1e-30)
    return 1.0 - ((images - rotational) ** 2 * inside).sum((-2, -1)) / energy


def select_classes(
    metrics: list[ClassMetrics],
    *,
    threshold: float = 0.5,
    min_particles: int = 3,
    manual: Mapping[int, bool] | None = None,
) -> np.ndarray:
    """``(K,)`` bool: classes kept. Automatic: ``junk_score < threshold`` and at least
    ``min_particles``; ``manual`` (class index -> keep) overrides the automatic choice."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    keep = np.array([m.junk_score < threshold and m.n_particles >= min_particles for m in metrics])
    for k, choice in (manual or {}).items():
        if not 0 <= k < len(metrics):
            raise ValueError(f"manual selection names class {k}, but there are {len(metrics)}")
        keep[k] = bool(choice)
    return keep
