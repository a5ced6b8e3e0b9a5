"""Session fine-tuning of the learned picker on the operator's labels (and, if asked, on the
session's own confident picks).

:class:`PickerTrainer` is a plain class (no Ray here; the session wraps it in an actor). It
keeps the session's labelled micrographs (the operator's coordinates for an exposure: every
particle on it, so they also measure) and, with self-training, micrographs whose confident
picks are sparse positive labels (positive-unlabelled: the expected particle count is the
picks at the automatic cut). A round trains a candidate from the weights in use on the top
rows of every micrograph (:data:`HOLDOUT_ROWS` of the rows at the bottom are never in a
crop), re-fits its calibration and automatic cut on the held-out rows of the labelled ones
(:func:`~models.picking.learned.calibrate_picker`; kept from the weights in use where the
logits there separate right from wrong peaks: such a fit has no maximum), and adopts it only
if they hold at least :data:`MIN_HELD_OUT_PARTICLES` particles and the F1 of its picks there
is above the shipped model's (:func:`~models.picking.learned.held_out_f1`: each model's
picks as a session makes them, at its automatic cut). A tie is not evidence: where the shipped
model already picks the held-back rows perfectly, a candidate as perfect there was worse
elsewhere (simulated, a crowded labelled exposure with eight of aggregates sorted by their 2D
classes: F1 in clean ice 0.955 -> 0.81). Without labels nothing can vouch for a candidate, so
no round is run: a session never gets worse than the shipped model on its own held-back labels.

The session's 2D classes (:meth:`add_classes_files`) add each exposure's picks as they sort
them: those in selected classes as sparse positives, those excluded as known negatives
(:func:`~models.picking.learned.nnpu_loss`'s ``negative``). Measured on simulated exposures
with aggregates (``bench picking --from-classes``, :mod:`daemon.bench._class_finetune`: two labelled
exposures, eight sorted by 20 classes, three choices of the labelled pair; F1 of the picker
the session then uses, 40 / 12 e/A^2): with the labels alone, aggregates 0.869 / 0.919 ->
0.879 / 0.875 but clean ice 0.955 / 0.980 -> 0.938 / 0.931 (one pair's candidate, a particle
better on the held-back rows, lost 0.09-0.16 elsewhere); with the classes, aggregates 0.874 /
0.890 (picks on them 3 / 4 % -> 1 / 3 %), clean ice 0.957 / 0.974, carbon edges 0.967 / 0.950
-> 0.947 / 0.940; one pair's class round lost 0.09 on aggregates at 12 e/A^2. The classes
selected 91 % of the picks in clean ice and 19 % of those on aggregates; given the truth
instead (measured when the shipped picker left 19 / 26 % of its picks on aggregates), the
rounds scored within 0.02 of them.

Measured on the five EMPIAR-10059 micrographs (a data set the shipped model never saw), one
labelled micrograph and 300 steps (6.5 s on 2 threads): F1 on the other four at the automatic
cut 0.754 -> 0.773 (precision 0.72 -> 0.71, recall 0.79 -> 0.85; mean of the five choices of
the labelled one, each adopted; ``bench picking --finetune``); adding the shipped model's
confident picks (p >= 0.9) of three more micrographs gave 0.761, so self-training is off by
default.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalscope.actors._checkpoint import write_atomically
from causalscope.models.picking.learned import (
    LabelledMicrograph,
    PickerNet,
    calibrate_picker,
    default_picker,
    held_out_f1,
    load_picker,
    prepare_micrograph,
    save_picker,
    train_picker,
    training_rows,
)
from causalscope.models.picking.learned.network import OUTPUT_STRIDE
from causalscope.models.picking.learned.training import check_picks

__all__ = [
    "CLASS_GROWTH",
    "HOLDOUT_ROWS",
    "MIN_CLASS_PARTICLES",
    "MIN_HELD_OUT_PARTICLES",
    "PickerTrainer",
]

#: share of each micrograph's rows (at the bottom) never trained on: the labelled ones there
#: calibrate the candidate and judge it against the shipped model
HOLDOUT_ROWS = 0.25
#: labelled particles that the held-back rows must hold before a candidate can be adopted (on
#: seven, one simulated micrograph's, a candidate won 0.93 to 0.86 there and lost 0.64 to 0.75
#: on new micrographs)
MIN_HELD_OUT_PARTICLES = 20
#: particles in selected 2D classes before the classes teach the picker ...
MIN_CLASS_PARTICLES = 50
#: ... and the growth of that count that brings them again (each time a round)
CLASS_GROWTH = 1.25


class PickerTrainer:
    """Fine-tune the learned picker on one session's micrographs.

    Parameters
    ----------
    weights_bytes
        Starting weights (:func:`~models.picking.learned.save_picker`: a restart's
        checkpoint); None starts from the shipped model.
    lr, batch, crop_px, seed
        Adam learning rate, crops per step, crop edge (canonical px) and random seed.
    capacity
        Self-training micrographs kept (the newest); labelled ones are all kept.
    """

    def __init__(
        self,
        weights_bytes: bytes | None = None,
        *,
        lr: float = 5e-4,
        batch: int = 8,
        crop_px: int = 64,
        seed: int = 0,
        capacity: int = 16,
        device: torch.device | str = "cpu",
    ) -> None:
        if capacity < 1 or batch < 1 or not lr > 0:
            raise ValueError(f"need capacity, batch >= 1 and lr > 0: {capacity}, {batch}, {lr}")
        self.shipped: PickerNet = default_picker(device=device)
        self.model: PickerNet = (
            copy.deepcopy(self.shipped)
            if weights_bytes is None
            else load_picker(weights_bytes, device=device)
        )
        self.lr, self.batch, self.crop_px, self.seed = lr, batch, crop_px, seed
        self.capacity = capacity
        self.labelled: dict[str, LabelledMicrograph] = {}
        self.confident: dict[str, LabelledMicrograph] = {}
        self.classified: set[str] = set()  # of the confident ones, those sorted by 2D classes
        self.class_particles = 0  # selected particles when the classes were last taken
        self.rounds = 0

    def add_labelled(
        self, name: str, image: Any, xy_px: Any, diameter_px: float, *, source: str = ""
    ) -> dict[str, float]:
        """The operator's picks ``(n, 2)`` ``[x, y]`` (pixels of ``image``) of every particle
        on ``image`` ``(h, w)``; a later call for the same ``name`` replaces them. Raises
        :class:`~models.errors.InputError` naming ``source`` (else ``name``) for a bad
        diameter or picks outside the image."""
        array = np.asarray(image, dtype=np.float32)
        xy = np.asarray(xy_px, dtype=np.float64).reshape(-1, 2)
        check_picks(source or name, array.shape, xy, diameter_px)
        self.confident.pop(name, None)  # the operator's labels replace its own picks
        self.classified.discard(name)
        self.labelled[name] = prepare_micrograph(
            torch.from_numpy(array), torch.from_numpy(xy), diameter_px=diameter_px
        )
        return {"labelled": float(len(self.labelled)), "picks": float(len(xy))}

    def add_confident(
        self, name: str, image: Any, xy_px: Any, n_picked: int, diameter_px: float
    ) -> bool:
        """An exposure's confident picks as sparse positives among ``n_picked`` expected
        particles; the newest :attr:`capacity` are kept. False when there is no pick."""
        xy = np.asarray(xy_px, dtype=np.float64).reshape(-1, 2)
        if not len(xy):
            return False
        array = np.asarray(image, dtype=np.float32)
        check_picks(name, array.shape, xy, diameter_px)
        self._keep(
            name,
            prepare_micrograph(
                torch.from_numpy(array),
                torch.from_numpy(xy),
                diameter_px=diameter_px,
                n_expected=max(float(n_picked), float(len(xy))),
            ),
            classified=False,
        )
        return True

    def _keep(self, name: str, item: LabelledMicrograph, *, classified: bool) -> None:
        """Keep a micrograph of the session's own picks, the newest :attr:`capacity`."""
        self.confident.pop(name, None)
        self.confident[name] = item
        (self.classified.add if classified else self.classified.discard)(name)
        while len(self.confident) > self.capacity:
            self.classified.discard(oldest := next(iter(self.confident)))
            self.confident.pop(oldest)

    def add_classified(
        self, name: str, image: Any, selected_xy: Any, excluded_xy: Any, diameter_px: float
    ) -> bool:
        """An exposure's picks sorted by the session's 2D classes: those in selected classes
        as sparse positives (as many particles expected as they are), those in excluded
        classes as known negatives; kept with the confident picks (the newest
        :attr:`capacity`). False when no pick lies in a selected class."""
        xy = np.asarray(selected_xy, dtype=np.float64).reshape(-1, 2)
        away = np.asarray(excluded_xy, dtype=np.float64).reshape(-1, 2)
        if not len(xy):
            return False
        array = np.asarray(image, dtype=np.float32)
        check_picks(name, array.shape, np.concatenate([xy, away]), diameter_px)
        item = prepare_micrograph(
            torch.from_numpy(array),
            torch.from_numpy(xy),
            diameter_px=diameter_px,
            negative_xy_px=torch.from_numpy(away),
        )
        self._keep(name, item, classified=True)
        return True

    def add_classes_files(
        self, selected_star: str, excluded_star: str, micrographs: str, diameter_angstrom: float
    ) -> dict[str, Any]:
        """The session's 2D classes (the evaluator's ``selected_particles.star`` and
        ``excluded_particles.star``): each exposure's picks, sorted by them, from its
        dose-weighted sum in ``micrographs`` (``<id>_DW.mrc``), by :meth:`add_classified`;
        the newest :attr:`capacity` exposures that are not labelled. Taken once the selected
        particles reach :data:`MIN_CLASS_PARTICLES`, then whenever they have grown by
        :data:`CLASS_GROWTH`; ``{"classified": micrographs taken (0: not yet), "selected":
        particles}``, or ``{"error": ...}`` naming the file."""
        from causalscope.daemon.formats.coordinates import coordinates_by_micrograph
        from causalscope.models.errors import CausalscopeError

        try:
            chosen = coordinates_by_micrograph(selected_star)
            away = coordinates_by_micrograph(excluded_star) if Path(excluded_star).is_file() else {}
        except CausalscopeError as error:
            return {"error": f"{error.title}: {error.message}"}
        selected = sum(len(c.xy_px) for c in chosen.values())
        if selected < max(MIN_CLASS_PARTICLES, CLASS_GROWTH * self.class_particles):
            return {"classified": 0, "selected": selected}
        self.class_particles = selected
        # the session's micrographs of the selection, by when they were written
        written: dict[str, float] = {}
        for stem in chosen:
            path = Path(micrographs) / f"{stem.removesuffix('_DW')}_DW.mrc"
            if stem.removesuffix("_DW") not in self.labelled and path.is_file():
                written[stem] = path.stat().st_mtime
        taken = 0
        for stem in sorted(written, key=written.__getitem__)[-self.capacity :]:
            name = stem.removesuffix("_DW")
            path = Path(micrographs) / f"{name}_DW.mrc"
            rejected = away[stem].xy_px if stem in away else np.zeros((0, 2))
            try:
                image, pixel_size = _micrograph(str(path))
                taken += self.add_classified(
                    name, image, chosen[stem].xy_px, rejected, diameter_angstrom / pixel_size
                )
            except CausalscopeError as error:
                return {"error": f"{error.title}: {error.message}"}
        return {"classified": taken, "selected": selected}

    def add_labelled_files(
        self, name: str, micrograph: str, coordinates: str, diameter_angstrom: float
    ) -> dict[str, Any]:
        """:meth:`add_labelled` from an exposure's dose-weighted sum (MRC, its header's pixel
        size) and a coordinate file (:func:`~daemon.formats.coordinates.read_coordinates`:
        RELION STAR, CSV, Topaz, EMAN2/crYOLO box or cryoSPARC ``.cs``; pixels of that
        micrograph, or cryoSPARC's shares of it; a file of several micrographs gives ``name``'s
        rows). Bad input is
        returned, not raised (``{"error": ...}``, naming the file): it is the operator's to
        fix, and the session goes on without it."""
        from causalscope.daemon.formats.coordinates import read_coordinates
        from causalscope.models.errors import CausalscopeError

        try:
            image, pixel_size = _micrograph(micrograph)
            xy = read_coordinates(coordinates, micrograph=name, shape=image.shape)
            return self.add_labelled(
                name, image, xy, diameter_angstrom / pixel_size, source=str(coordinates)
            )
        except CausalscopeError as error:
            return {"error": f"{error.title}: {error.message}"}

    def add_confident_file(
        self, name: str, micrograph: str, xy_px: Any, n_picked: int, diameter_angstrom: float
    ) -> bool:
        """:meth:`add_confident` from an exposure's dose-weighted sum (MRC)."""
        image, pixel_size = _micrograph(micrograph)
        return self.add_confident(name, image, xy_px, n_picked, diameter_angstrom / pixel_size)

    def train(self, steps: int) -> dict[str, float]:
        """One round of ``steps`` steps from the weights in use; adopts the candidate if its
        held-out F1 is above the shipped model's. Raises ``ValueError`` without labels."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        labelled = list(self.labelled.values())
        if not labelled:
            raise ValueError("no labelled micrograph: nothing could judge a fine-tuned picker")
        data = labelled + list(self.confident.values())
        candidate = copy.deepcopy(self.model)
        torch.manual_seed(self.seed + self.rounds)
        report = train_picker(
            candidate,
            data,
            steps=steps,
            lr=self.lr,
            crop_px=self.crop_px,
            batch=self.batch,
            seed=self.seed + self.rounds,
            holdout_fraction=HOLDOUT_ROWS,
        )
        pairs = [(d.image, d.xy_canonical) for d in labelled]
        rows = [training_rows(d, HOLDOUT_ROWS) for d in labelled]
        try:
            calibrate_picker(candidate, pairs, from_rows=rows)
            recalibrated = True
        except ValueError:  # outcomes that the logits separate: the calibration in use stays
            recalibrated = False
        f1_tuned = held_out_f1(candidate, pairs, rows)
        f1_shipped = held_out_f1(self.shipped, pairs, rows)
        held_out = sum(
            int((d.xy_canonical[:, 1] >= OUTPUT_STRIDE * r - 0.5).sum())
            for d, r in zip(labelled, rows, strict=True)
        )
        adopted = held_out >= MIN_HELD_OUT_PARTICLES and f1_tuned > f1_shipped
        if adopted:
            self.model = candidate
        self.rounds += 1
        return {
            "round": float(self.rounds),
            "steps": float(steps),
            "labelled": float(len(labelled)),
            "held_out_particles": float(held_out),
            "min_held_out_particles": float(MIN_HELD_OUT_PARTICLES),
            "confident": float(len(self.confident) - len(self.classified)),
            "classified": float(len(self.classified)),
            "held_out_f1_shipped": round(f1_shipped, 4),
            "held_out_f1_tuned": round(f1_tuned, 4),
            "adopted": float(adopted),
            "recalibrated": float(recalibrated),
            "auto_threshold": round(self.model.threshold(), 4),
            "final_risk": round(report.final_risk, 5),
        }

    def round(self, steps: int, checkpoint: str) -> tuple[dict[str, float], bytes | None]:
        """:meth:`train`, then, if the candidate was adopted, its checkpoint written to
        ``checkpoint`` and its weights; else None (the weights in use stay)."""
        report = self.train(steps)
        if not report["adopted"]:
            return report, None
        self.checkpoint(checkpoint)
        return report, self.weights()

    def weights(self) -> bytes:
        """The weights in use (:func:`~models.picking.learned.load_picker` reads them)."""
        return save_picker(self.model)

    def checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Write the weights in use to ``path`` atomically; returns the path."""
        return write_atomically(path, self.weights())


def _micrograph(path: str) -> tuple[np.ndarray, float]:
    """An MRC micrograph and its header's pixel size (``InputError`` naming it without one)."""
    from causalscope.daemon.formats.coordinates import read_micrograph
    from causalscope.models.errors import InputError

    image, pixel_size = read_micrograph(path)
    if not pixel_size:
        raise InputError("No pixel size", f"{path}: the header gives no pixel size")
    return image, pixel_size
