"""Training :class:`~.network.PickerNet` from micrographs and (possibly sparse) particle picks.

Each micrograph is brought to the canonical grid (:func:`~.preprocess.canonical_micrograph`),
its picks become a positive map (output pixels within :data:`POSITIVE_RADIUS_PX` canonical
pixels of a pick), and its class prior comes from the expected number of particles
(:func:`~.pu.class_prior`; all labelled when not given). Each step draws random square crops
(micrographs chosen uniformly, then a random position, flip and quarter turn) and descends on
the non-negative PU risk (:func:`~.pu.nnpu_loss`) with Adam and a cosine decay.

Half of the crops (:data:`NOISE_SHARE`) are made noisier: white noise of a standard deviation
drawn uniformly up to :data:`NOISE_MAX_SIGMA` (in the canonical image's unit spread) is added
and the crop scaled back to unit spread, as if its particles had up to ``sqrt(5)`` times less
contrast over the noise. A data set at a lower signal-to-noise ratio than the training sets
(smaller particles, thinner dose) then scores its particles more like theirs: trained
without any EMPIAR-10059 micrograph (and without binned copies), F1 on those at the
calibrated cut went from 0.26 to 0.50; the ranking itself is unchanged (best F1 0.72 either
way).

Micrographs whose particles span few pixels (binned before they reach us) are upsampled to
the canonical grid, where their noise is smoother than any downsampled training image's; a
network that never saw that picks the noise (on a real apoferritin micrograph binned to
6.3 A/px, 19 px particles, it picked five times more peaks than there are particles, few of
them on one). So training adds copies of each micrograph binned by :data:`BIN_FACTORS`, as
long as the particle still spans :data:`MIN_BINNED_DIAMETER_PX` (:func:`binned_copies`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from causalscope.models.errors import InputError
from causalscope.models.picking.learned.network import OUTPUT_STRIDE, PickerNet
from causalscope.models.picking.learned.preprocess import CLIP, canonical_micrograph
from causalscope.models.picking.learned.pu import class_prior, nnpu_loss, positive_map

__all__ = [
    "BIN_FACTORS",
    "MIN_BINNED_DIAMETER_PX",
    "NOISE_MAX_SIGMA",
    "NOISE_SHARE",
    "POSITIVE_RADIUS_PX",
    "LabelledMicrograph",
    "PickerTrainingReport",
    "binned_copies",
    "check_picks",
    "noisier",
    "prepare_micrograph",
    "train_picker",
    "training_rows",
]

#: canonical pixels (of a 24 px diameter) around a pick that count as positive (3 px, as
#: Topaz, gave peaks below p = 0.5 and lower recall on crowded EMPIAR-10059 training data)
POSITIVE_RADIUS_PX = 4.5
#: share of the training crops made noisier
NOISE_SHARE = 0.5
#: the largest standard deviation of the added noise, in units of the canonical image's spread
NOISE_MAX_SIGMA = 2.0
#: training micrographs are also binned by these factors ...
BIN_FACTORS = (2, 4, 8)
#: ... while the particle diameter stays at least this many (binned) pixels
MIN_BINNED_DIAMETER_PX = 12.0


@dataclass(frozen=True)
class LabelledMicrograph:
    """One micrograph on the canonical grid with its positive map and class prior."""

    image: torch.Tensor
    positive: torch.Tensor
    prior: float
    n_labelled: int
    xy_canonical: torch.Tensor
    #: output pixels known to be negative (around picks of excluded 2D classes), or None
    negative: torch.Tensor | None = None


@dataclass
class PickerTrainingReport:
    """What :func:`train_picker` did: per-step PU risks and the settings."""

    steps: int
    crop_px: int
    batch: int
    lr: float
    seed: int
    n_micrographs: int
    n_labelled: int
    priors: list[float]
    risks: list[float] = field(default_factory=list)

    def _mean(self, part: list[float]) -> float:
        return float(sum(part) / max(1, len(part)))

    @property
    def first_risk(self) -> float:
        """Mean PU risk over the first tenth of the steps."""
        return self._mean(self.risks[: max(1, len(self.risks) // 10)])

    @property
    def final_risk(self) -> float:
        """Mean PU risk over the last tenth of the steps."""
        return self._mean(self.risks[-max(1, len(self.risks) // 10) :])


def check_picks(name: str, shape: tuple[int, ...], xy_px: Any, diameter_px: float) -> None:
    """Raise :class:`~models.errors.InputError` naming micrograph ``name`` ``(h, w)`` for a
    diameter outside ``[4, min(h, w)]``, no picks, or picks ``[x, y]`` outside the image."""
    h, w = shape
    if not 4.0 <= diameter_px <= min(h, w):
        raise InputError(
            "Bad particle diameter",
            f"{name}: diameter {diameter_px:g} px must lie in [4, {min(h, w)}] for a "
            f"{w} x {h} micrograph",
        )
    xy = np.asarray(xy_px, dtype=np.float64).reshape(-1, 2)
    if len(xy) == 0:
        raise InputError("No picks", f"{name}: no particle coordinates to train on")
    outside = (xy[:, 0] < 0) | (xy[:, 0] > w - 1) | (xy[:, 1] < 0) | (xy[:, 1] > h - 1)
    if outside.any():
        x, y = xy[np.argmax(outside)]
        raise InputError(
            "Coordinates outside the micrograph",
            f"{name}: {int(outside.sum())} picks outside the {w} x {h} image, e.g. "
            f"x={x:g}, y={y:g}",
        )


def prepare_micrograph(
    image: torch.Tensor,
    xy_px: torch.Tensor,
    *,
    diameter_px: float,
    n_expected: float | None = None,
    negative_xy_px: torch.Tensor | None = None,
) -> LabelledMicrograph:
    """Canonical image, positive map and prior of one ``(h, w)`` micrograph and its ``(n, 2)``
    picks ``[x, y]`` in input pixels; ``n_expected`` particles (default: all are labelled);
    ``negative_xy_px`` ``(m, 2)``: places known to hold no particle (their pixels within
    :data:`POSITIVE_RADIUS_PX`, less any positive one, are :attr:`LabelledMicrograph.negative`)."""
    canonical, scale = canonical_micrograph(image, diameter_px=diameter_px)
    xy = torch.as_tensor(xy_px, dtype=torch.float64).reshape(-1, 2)
    xy_canonical = (xy + 0.5) * scale - 0.5
    shape = (canonical.shape[0] // OUTPUT_STRIDE, canonical.shape[1] // OUTPUT_STRIDE)
    positive = positive_map(xy_canonical, shape, stride=OUTPUT_STRIDE, radius_px=POSITIVE_RADIUS_PX)
    n = len(xy)
    if n == 0:
        raise ValueError("a training micrograph needs at least one pick")
    prior = class_prior(
        n if n_expected is None else n_expected, n, int(positive.sum()), positive.numel()
    )
    negative = None
    if negative_xy_px is not None and len(negative_xy_px):
        away = (torch.as_tensor(negative_xy_px, dtype=torch.float64).reshape(-1, 2) + 0.5) * scale
        negative = (
            positive_map(away - 0.5, shape, stride=OUTPUT_STRIDE, radius_px=POSITIVE_RADIUS_PX)
            & ~positive
        )
    return LabelledMicrograph(canonical, positive, prior, n, xy_canonical, negative)


def binned_copies(
    image: torch.Tensor, xy_px: torch.Tensor, diameter_px: float
) -> list[tuple[int, torch.Tensor, torch.Tensor, float]]:
    """``(factor, image, xy, diameter)`` of an ``(h, w)`` micrograph binned by each of
    :data:`BIN_FACTORS` (pixel means; a last partial row or column dropped) that leaves the
    particle at least :data:`MIN_BINNED_DIAMETER_PX` across, with its ``(n, 2)`` picks
    ``[x, y]`` in binned pixels (pixel centres at integers: ``(x + 0.5) / k - 0.5``)."""
    out = []
    xy = torch.as_tensor(xy_px, dtype=torch.float64).reshape(-1, 2)
    for factor in BIN_FACTORS:
        h, w = image.shape[0] // factor, image.shape[1] // factor
        if diameter_px / factor < MIN_BINNED_DIAMETER_PX or min(h, w) < 16:
            continue
        small = F.avg_pool2d(image.to(torch.float32)[None, None], factor)[0, 0]
        moved = (xy + 0.5) / factor - 0.5
        inside = (moved >= 0).all(1) & (moved[:, 0] <= w - 1) & (moved[:, 1] <= h - 1)
        out.append((factor, small, moved[inside], diameter_px / factor))
    return out


def training_rows(item: LabelledMicrograph, holdout_fraction: float) -> int:
    """Rows of ``item``'s output map that training crops may use (the rest is held out)."""
    return int(item.positive.shape[0] * (1.0 - holdout_fraction))


def noisier(image: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``image`` (unit spread) plus white noise of standard deviation ``sigma``, scaled back
    to unit spread and clipped as :func:`~.preprocess.canonical_micrograph` clips."""
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype)
    return ((image + sigma * noise) / math.sqrt(1.0 + sigma * sigma)).clamp(-CLIP, CLIP)


def _crops(
    data: Sequence[LabelledMicrograph],
    n: int,
    crop_px: int,
    generator: torch.Generator,
    holdout_fraction: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` crops: images ``(n, 1, c, c)``, labels and known negatives ``(n, 1, c/2, c/2)``
    and priors ``(n,)``; :data:`NOISE_SHARE` of them noisier (:func:`noisier`)."""
    images, labels, negatives, priors = [], [], [], []
    half = crop_px // OUTPUT_STRIDE
    for _ in range(n):
        item = data[int(torch.randint(len(data), (1,), generator=generator))]
        h, w = training_rows(item, holdout_fraction), item.positive.shape[1]
        i = int(torch.randint(max(1, h - half + 1), (1,), generator=generator))
        j = int(torch.randint(max(1, w - half + 1), (1,), generator=generator))
        image = item.image[
            OUTPUT_STRIDE * i : OUTPUT_STRIDE * (i + half),
            OUTPUT_STRIDE * j : OUTPUT_STRIDE * (j + half),
        ]
        label = item.positive[i : i + half, j : j + half]
        known = (
            torch.zeros_like(label)
            if item.negative is None
            else item.negative[i : i + half, j : j + half]
        )
        k, flip = (int(v) for v in torch.randint(4, (2,), generator=generator))
        image, label, known = (torch.rot90(t, k) for t in (image, label, known))
        if flip % 2:
            image, label, known = image.flip(-1), label.flip(-1), known.flip(-1)
        if float(torch.rand((), generator=generator)) < NOISE_SHARE:
            sigma = NOISE_MAX_SIGMA * float(torch.rand((), generator=generator))
            image = noisier(image, sigma, generator)
        images.append(image)
        labels.append(label)
        negatives.append(known)
        priors.append(item.prior)
    return (
        torch.stack(images)[:, None],
        torch.stack(labels)[:, None],
        torch.stack(negatives)[:, None],
        torch.tensor(priors, dtype=torch.float32),
    )


def train_picker(
    model: PickerNet,
    data: Sequence[LabelledMicrograph],
    *,
    steps: int,
    lr: float = 2e-3,
    crop_px: int = 64,
    batch: int = 8,
    seed: int = 0,
    holdout_fraction: float = 0.0,
) -> PickerTrainingReport:
    """Train ``model`` in place on prepared micrographs (each at least ``crop_px`` square).

    ``holdout_fraction`` of each micrograph's rows, at the bottom, is never in a crop, so that
    :func:`~.calibration.calibrate_picker` can measure the model there out of sample.
    """
    if not 0.0 <= holdout_fraction < 0.5:
        raise ValueError(f"holdout_fraction must lie in [0, 0.5), got {holdout_fraction}")
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got {steps}, {batch}")
    if crop_px < 16 or crop_px % (2 * OUTPUT_STRIDE):
        raise ValueError(f"crop_px must be a multiple of {2 * OUTPUT_STRIDE} >= 16, got {crop_px}")
    if not data:
        raise ValueError("no training micrographs")
    small = [
        tuple(d.image.shape)
        for d in data
        if min(d.image.shape[1], OUTPUT_STRIDE * training_rows(d, holdout_fraction)) < crop_px
    ]
    if small:
        raise ValueError(
            f"canonical micrographs (less the held-out rows) smaller than crop_px={crop_px}: "
            f"{small[:3]}"
        )
    parameter = next(model.parameters())
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    report = PickerTrainingReport(
        steps,
        crop_px,
        batch,
        lr,
        seed,
        len(data),
        sum(d.n_labelled for d in data),
        [round(d.prior, 5) for d in data],
    )
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * step / steps)))
        images, labels, known, priors = _crops(data, batch, crop_px, generator, holdout_fraction)
        images = images.to(parameter.device)
        labels = labels.to(parameter.device)
        known = known.to(parameter.device)
        priors = priors.to(parameter.device)[:, None, None, None]
        optimizer.zero_grad(set_to_none=True)
        objective, risk = nnpu_loss(model.raw_logits(images), labels, priors, negative=known)
        objective.backward()
        optimizer.step()
        report.risks.append(float(risk))
    model.eval()
    return report
