"""Training :class:`~.network.PickerNet` from micrographs and (possibly sparse) particle picks.

Each micrograph is brought to the canonical grid (:func:`~.preprocess.canonical_micrograph`),
its picks become a positive map (output pixels within :data:`POSITIVE_RADIUS_PX` canonical
pixels of a pick), and its class prior comes from the expected number of particles
(:func:`~.pu.class_prior`; all labelled when not given). Each step draws random square crops
(micrographs chosen uniformly, then a random position, flip and quarter turn) and descends on
the non-negative PU risk (:func:`~.pu.nnpu_loss`) with Adam and a cosine decay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from causalscope.models.picking.learned.network import OUTPUT_STRIDE, PickerNet
from causalscope.models.picking.learned.preprocess import canonical_micrograph
from causalscope.models.picking.learned.pu import class_prior, nnpu_loss, positive_map

__all__ = [
    "POSITIVE_RADIUS_PX",
    "LabelledMicrograph",
    "PickerTrainingReport",
    "prepare_micrograph",
    "train_picker",
    "training_rows",
]

#: canonical pixels (of a 24 px diameter) around a pick that count as positive (3 px, as
#: Topaz, gave peaks below p = 0.5 and lower recall on crowded EMPIAR-10059 training data)
POSITIVE_RADIUS_PX = 4.5


@dataclass(frozen=True)
class LabelledMicrograph:
    """One micrograph on the canonical grid with its positive map and class prior."""

    image: torch.Tensor
    positive: torch.Tensor
    prior: float
    n_labelled: int
    xy_canonical: torch.Tensor


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


def prepare_micrograph(
    image: torch.Tensor,
    xy_px: torch.Tensor,
    *,
    diameter_px: float,
    n_expected: float | None = None,
) -> LabelledMicrograph:
    """Canonical image, positive map and prior of one ``(h, w)`` micrograph and its ``(n, 2)``
    picks ``[x, y]`` in input pixels; ``n_expected`` particles (default: all are labelled)."""
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
    return LabelledMicrograph(canonical, positive, prior, n, xy_canonical)


def training_rows(item: LabelledMicrograph, holdout_fraction: float) -> int:
    """Rows of ``item``'s output map that training crops may use (the rest is held out)."""
    return int(item.positive.shape[0] * (1.0 - holdout_fraction))


def _crops(
    data: Sequence[LabelledMicrograph],
    n: int,
    crop_px: int,
    generator: torch.Generator,
    holdout_fraction: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` crops: images ``(n, 1, c, c)``, labels ``(n, 1, c/2, c/2)`` and priors ``(n,)``."""
    images, labels, priors = [], [], []
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
        k, flip = (int(v) for v in torch.randint(4, (2,), generator=generator))
        image, label = torch.rot90(image, k), torch.rot90(label, k)
        if flip % 2:
            image, label = image.flip(-1), label.flip(-1)
        images.append(image)
        labels.append(label)
        priors.append(item.prior)
    return (
        torch.stack(images)[:, None],
        torch.stack(labels)[:, None],
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
        images, labels, priors = _crops(data, batch, crop_px, generator, holdout_fraction)
        images = images.to(parameter.device)
        labels = labels.to(parameter.device)
        priors = priors.to(parameter.device)[:, None, None, None]
        optimizer.zero_grad(set_to_none=True)
        objective, risk = nnpu_loss(model.raw_logits(images), labels, priors)
        objective.backward()
        optimizer.step()
        report.risks.append(float(risk))
    model.eval()
    return report
