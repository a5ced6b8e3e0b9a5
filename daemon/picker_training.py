"""Training the learned picker from files and from the simulator: data, checks and record.

Shared by ``causalscope train-picker`` and the picking benchmark. A training item is a
micrograph, its picks ``[x, y]`` (pixels of that micrograph), its particle diameter in pixels
and a name for the record.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TrainingItem", "check_item", "simulated_items", "train_from_items"]

#: share of each fully labelled micrograph's rows kept out of training for the calibration
CALIBRATION_ROWS = 0.25
#: simulated training exposures: (particles per 1024^2, dose e/A^2), cycled
SIMULATED_CASES = ((20, 40.0), (40, 20.0), (60, 12.0))


@dataclass(frozen=True)
class TrainingItem:
    """One training micrograph ``(h, w)`` float32 with ``(n, 2)`` picks and its diameter."""

    name: str
    image: np.ndarray
    xy_px: np.ndarray
    diameter_px: float
    #: every particle is labelled (else the labels are a sample: PU prior from ``n_expected``)
    n_expected: float | None = None


def check_item(item: TrainingItem) -> None:
    """Raise :class:`~models.errors.InputError` naming the micrograph for a bad diameter or
    outside picks."""
    from causalscope.models.picking.learned.training import check_picks

    check_picks(item.name, item.image.shape, item.xy_px, item.diameter_px)


def simulated_items(n: int, *, seed: int, size: int = 1024) -> list[TrainingItem]:
    """``n`` simulated still micrographs (one drift-free frame of the whole dose, 1 A/px, the
    built-in phantom, 30 nm ice) with their truth."""
    from causalscope.models.simulate.still import still_micrograph

    items = []
    for i in range(n):
        per_1024, dose = SIMULATED_CASES[i % len(SIMULATED_CASES)]
        image, truth = still_micrograph(
            size,
            particles_per_1024=per_1024,
            seed=seed + i,
            dose_e_per_a2=dose,
            ice_thickness_nm=30.0,
        )
        items.append(
            TrainingItem(
                f"simulated_{seed + i}",
                image,
                np.asarray(truth["particles"], dtype=np.float64),
                2.0 * float(truth["particle_radius_angstrom"]),
            )
        )
    return items


def _with_binned_copies(item: TrainingItem) -> list[tuple[Any, Any, float]]:
    """The item's ``(image, xy, diameter)`` as tensors, then its binned copies."""
    import torch

    from causalscope.models.picking.learned import binned_copies

    image = torch.from_numpy(np.ascontiguousarray(item.image, dtype=np.float32))
    xy = torch.from_numpy(np.asarray(item.xy_px, dtype=np.float64).reshape(-1, 2))
    copies = [
        (small, moved, d) for _, small, moved, d in binned_copies(image, xy, item.diameter_px)
    ]
    return [(image, xy, item.diameter_px), *copies]


def train_from_items(
    items: Sequence[TrainingItem],
    *,
    steps: int,
    seed: int,
    init: Any = None,
    lr: float = 2e-3,
    batch: int = 8,
    crop_px: int = 64,
) -> tuple[Any, dict[str, Any]]:
    """Train a :class:`PickerNet` (fresh, or ``init``) on ``items``; returns it and a record."""
    import torch

    from causalscope.models.picking.learned import (
        PickerNet,
        calibrate_picker,
        prepare_micrograph,
        train_picker,
        training_rows,
    )

    for item in items:
        check_item(item)
    started = time.perf_counter()
    data: list[Any] = []
    complete: list[Any] = []
    own: list[int] = []
    for item in items:
        own.append(len(data))  # the item's own entry, before its binned copies
        for image, xy, diameter in _with_binned_copies(item):
            n_expected = None if item.n_expected is None else max(item.n_expected, len(xy))
            prepared = prepare_micrograph(image, xy, diameter_px=diameter, n_expected=n_expected)
            data.append(prepared)
            if item.n_expected is None:
                complete.append(prepared)
    torch.manual_seed(seed)
    model = init if init is not None else PickerNet()
    holdout = CALIBRATION_ROWS if complete else 0.0
    report = train_picker(
        model,
        data,
        steps=steps,
        lr=lr,
        batch=batch,
        crop_px=crop_px,
        seed=seed,
        holdout_fraction=holdout,
    )
    calibration: dict[str, Any] = {"method": "none: no fully labelled micrograph"}
    try:
        fitted = calibrate_picker(
            model,
            [(d.image, d.xy_canonical) for d in complete],
            from_rows=[training_rows(d, holdout) for d in complete],
        )
    except ValueError as error:  # too few held-out peaks, or all of them right
        if complete:
            calibration = {"method": f"none: {error}"}
        fitted = None
    if fitted is not None:
        slope, offset, n_peaks = fitted
        calibration = {
            "method": f"Platt: peak logits on the bottom {holdout:.0%} of the rows of the fully "
            "labelled training micrographs, never in a training crop",
            "slope": round(slope, 4),
            "offset": round(offset, 4),
            "auto_threshold": round(model.threshold(), 4),
            "peaks": n_peaks,
        }
    record = _training_record(
        model,
        items,
        report,
        calibration,
        priors=[report.priors[i] for i in own],
        n_binned=len(data) - len(items),
        steps=steps,
        batch=batch,
        crop_px=crop_px,
        lr=lr,
        seed=seed,
        seconds=time.perf_counter() - started,
    )
    return model, record


def _training_record(
    model: Any,
    items: Sequence[TrainingItem],
    report: Any,
    calibration: dict[str, Any],
    *,
    priors: list[float],
    n_binned: int,
    steps: int,
    batch: int,
    crop_px: int,
    lr: float,
    seed: int,
    seconds: float,
) -> dict[str, Any]:
    """What the weights file's JSON says of how it was made."""
    import torch

    from causalscope.models.picking.learned import parameter_count
    from causalscope.models.picking.learned.training import (
        BIN_FACTORS,
        MIN_BINNED_DIAMETER_PX,
        NOISE_MAX_SIGMA,
        NOISE_SHARE,
    )

    return {
        "model": {**model.config(), "parameters": parameter_count(model)},
        "training": {
            "loss": "non-negative PU risk (Kiryo et al. 2017), logistic loss, "
            "prior from the labelled particle count",
            "augmentation": f"{n_binned} copies binned by {list(BIN_FACTORS)} where the particle "
            f"stays >= {MIN_BINNED_DIAMETER_PX:g} px; {NOISE_SHARE:.0%} of the crops with "
            f"added white noise of sigma up to {NOISE_MAX_SIGMA:g}; quarter turns and flips",
            "steps": steps,
            "batch": batch,
            "crop_px": crop_px,
            "lr": lr,
            "schedule": "Adam, cosine decay to lr / 20",
            "seed": seed,
            "threads": torch.get_num_threads(),
            "first_risk": round(report.first_risk, 5),
            "final_risk": round(report.final_risk, 5),
            "training_s": round(seconds, 1),
        },
        "calibration": calibration,
        "data": [
            {
                "name": item.name,
                "n_picks": len(item.xy_px),
                "diameter_px": item.diameter_px,
                "prior": prior,
                "all_labelled": item.n_expected is None,
            }
            for item, prior in zip(items, priors, strict=True)
        ],
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
