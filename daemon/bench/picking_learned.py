"""The learned picker on the real CryoPPP micrographs, beside the blob picker and chance.

The learned picker at its automatic threshold (``learned``, the cut it applied in
``threshold``), at the model's calibrated cut alone (``learned_calibrated``) and at
``p >= 0.5`` (``learned_p05``). Truth: the fitted disc centres of the expert masks
(:mod:`daemon.bench._cryoppp`, IoU of the redrawn discs reported). A pick matches a true centre
within half a diameter (Hungarian). Chance: as many random picks as the truth, at least half a
diameter apart and from the border, averaged over draws. The blob picker runs with its defaults
(``threshold="auto"``) on the same images.

- default: the shipped model (trained on ``cryoppp_10028_train`` and simulated micrographs) on
  the EMPIAR-10028 test micrographs (``cryoppp_10028``, never used in training) and on the five
  EMPIAR-10059 micrographs, a data set it never saw;
- ``cross_validate``: EMPIAR-10059 leave one micrograph out over its five (trained on the other
  four, ``cryoppp_10028_train`` and simulated micrographs, the shipped recipe).

Session fine-tuning (:func:`finetune_real_bench`): as a session does it
(:class:`~actors.picker_trainer.PickerTrainer`, one round of :data:`FINETUNE_STEPS` steps from
the shipped model), the operator labels one EMPIAR-10059 micrograph and the picker is scored on
the other four at its automatic cut, each of the five in turn; with self-training, the shipped
model's confident picks (``p >= 0.9``) of three of the four are added.

Time: each stage of picking a 4096^2 micrograph (particle 120 px across) on this process's
threads: rescaling and normalising, the network, and the peaks with their automatic cut and
refined positions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FINETUNE_STEPS",
    "TRAINING",
    "chance_f1",
    "finetune_real_bench",
    "learned_real_bench",
    "learned_timing",
    "match_scores",
]

#: the recipe of the shipped model and of the cross-validation models
TRAINING: dict[str, int] = {"steps": 2000, "simulated": 3, "seed": 0}
#: steps of the fine-tuning round (``processing.picking.tuning.steps``' default)
FINETUNE_STEPS = 300


def chance_f1(
    truth_xy: np.ndarray, shape: tuple[int, int], diameter_px: float, *, draws: int = 20
) -> float:
    """Mean F1 of random picks, as many as the truth, >= half a diameter apart and from the
    border (dart throwing; fewer when the field is full)."""
    from causalscope.models.picking import match_picks

    rng = np.random.default_rng(0)
    h, w = shape
    margin, gap = 0.5 * diameter_px, 0.5 * diameter_px
    scores = []
    for _ in range(draws):
        kept: list[np.ndarray] = []
        for _ in range(50 * len(truth_xy)):
            if len(kept) == len(truth_xy):
                break
            p = rng.uniform([margin, margin], [w - 1 - margin, h - 1 - margin])
            if not kept or np.min(np.hypot(*(np.asarray(kept) - p).T)) >= gap:
                kept.append(p)
        match = match_picks(np.asarray(kept), truth_xy, radius_px=0.5 * diameter_px)
        scores.append(match.f1)
    return float(np.mean(scores))


def match_scores(xy_px: Any, truth: np.ndarray, diameter_px: float) -> dict[str, float]:
    """Picks, precision, recall and F1 of ``(n, 2)`` picks against the truth within half a
    diameter (Hungarian)."""
    from causalscope.models.picking import match_picks

    match = match_picks(xy_px, truth, radius_px=0.5 * diameter_px)
    return {
        "n_picks": match.n_picks,
        "precision": round(match.precision, 3),
        "recall": round(match.recall, 3),
        "f1": round(match.f1, 3),
    }


def _scores(picks: Any, truth: np.ndarray, diameter: float) -> dict[str, float]:
    return match_scores(picks.xy_px, truth, diameter)


def _evaluate(model: Any, micrographs: Sequence[Any], split: str) -> list[dict[str, Any]]:
    import torch

    from causalscope.models.picking import pick_blobs
    from causalscope.models.picking.learned import pick_learned

    rows = []
    for m in micrographs:
        image = torch.from_numpy(m.image)
        learned = pick_learned(image, model, diameter_px=m.diameter_px)
        calibrated = pick_learned(
            image, model, diameter_px=m.diameter_px, threshold=model.threshold()
        )
        half = pick_learned(image, model, diameter_px=m.diameter_px, threshold=0.5)
        blob = pick_blobs(image, pixel_size_angstrom=1.0, particle_diameter_angstrom=m.diameter_px)
        rows.append(
            {
                "split": split,
                "micrograph": m.name,
                "n_truth": len(m.truth_xy_px),
                "mask_iou": m.mask_iou,
                "learned": _scores(learned, m.truth_xy_px, m.diameter_px),
                "threshold": round(float(learned.threshold or 0.0), 4),
                "learned_calibrated": _scores(calibrated, m.truth_xy_px, m.diameter_px),
                "calibrated_threshold": round(model.threshold(), 4),
                "learned_p05": _scores(half, m.truth_xy_px, m.diameter_px),
                "blob": _scores(blob, m.truth_xy_px, m.diameter_px),
                "chance_f1": round(chance_f1(m.truth_xy_px, m.image.shape, m.diameter_px), 3),
            }
        )
    return rows


def _items(micrographs: Sequence[Any]) -> list[Any]:
    from causalscope.daemon.picker_training import TrainingItem

    return [TrainingItem(m.name, m.image, m.truth_xy_px, m.diameter_px) for m in micrographs]


def _train(items: list[Any]) -> Any:
    from causalscope.daemon.picker_training import simulated_items, train_from_items

    sims = simulated_items(TRAINING["simulated"], seed=1000 + TRAINING["seed"])
    model, _ = train_from_items(items + sims, steps=TRAINING["steps"], seed=TRAINING["seed"])
    return model


def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean precision, recall, F1 of both pickers and chance over ``rows``."""
    out: dict[str, float] = {}
    for picker in ("learned", "learned_calibrated", "learned_p05", "blob"):
        for key in ("precision", "recall", "f1"):
            out[f"{picker}_{key}"] = round(float(np.mean([r[picker][key] for r in rows])), 3)
    out["chance_f1"] = round(float(np.mean([r["chance_f1"] for r in rows])), 3)
    return out


def learned_real_bench(shared: Path, *, cross_validate: bool) -> dict[str, Any]:
    """Rows per micrograph and summaries per split (see the module docstring)."""
    from causalscope.daemon.bench._cryoppp import load_cryoppp
    from causalscope.models.picking.learned import default_picker

    folder = shared / "picking"
    out: dict[str, Any] = {"training": TRAINING if cross_validate else "shipped model"}
    shipped = default_picker()
    set_10059 = load_cryoppp(folder / "cryoppp_10059_train")
    rows = _evaluate(shipped, load_cryoppp(folder / "cryoppp_10028"), "10028_test_shipped_model")
    rows += _evaluate(shipped, set_10059, "10059_never_seen_shipped_model")
    if cross_validate:
        train_10028 = load_cryoppp(folder / "cryoppp_10028_train")
        for i, held in enumerate(set_10059):
            others = [m for j, m in enumerate(set_10059) if j != i]
            model = _train(_items(train_10028 + others))
            rows += _evaluate(model, [held], "10059_leave_one_out")
    out["rows"] = rows
    out["summary"] = {
        split: summarise([r for r in rows if r["split"] == split])
        for split in dict.fromkeys(r["split"] for r in rows)
    }
    return out


def _finetuned(labelled: Any, others: Sequence[Any], self_training: bool) -> dict[str, Any]:
    import torch

    from causalscope.actors.picker_trainer import PickerTrainer
    from causalscope.models.picking.learned import pick_learned

    trainer = PickerTrainer(seed=0)
    trainer.add_labelled(labelled.name, labelled.image, labelled.truth_xy_px, labelled.diameter_px)
    if self_training:
        for m in others[:3]:
            picks = pick_learned(
                torch.from_numpy(m.image), trainer.shipped, diameter_px=m.diameter_px
            )
            keep = picks.scores.numpy() >= 0.9
            xy = picks.xy_px.numpy()[keep]
            trainer.add_confident(m.name, m.image, xy, len(picks.xy_px), m.diameter_px)
    started = time.perf_counter()
    report = trainer.train(FINETUNE_STEPS)
    seconds = time.perf_counter() - started
    scores = []
    for m in others:
        shipped = pick_learned(
            torch.from_numpy(m.image), trainer.shipped, diameter_px=m.diameter_px
        )
        tuned = pick_learned(torch.from_numpy(m.image), trainer.model, diameter_px=m.diameter_px)
        scores.append(
            {
                "micrograph": m.name,
                "shipped": _scores(shipped, m.truth_xy_px, m.diameter_px),
                "fine_tuned": _scores(tuned, m.truth_xy_px, m.diameter_px),
            }
        )
    return {
        "labelled": labelled.name,
        "self_training": self_training,
        "round": report,
        "training_s": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "scores": scores,
    }


def finetune_real_bench(shared: Path) -> dict[str, Any]:
    """Session fine-tuning on EMPIAR-10059 (module docstring): rows and mean scores."""
    from causalscope.daemon.bench._cryoppp import load_cryoppp

    micrographs = load_cryoppp(shared / "picking" / "cryoppp_10059_train")
    rows = [
        _finetuned(m, [o for j, o in enumerate(micrographs) if j != i], self_training)
        for self_training in (False, True)
        for i, m in enumerate(micrographs)
    ]
    summary: dict[str, Any] = {}
    for self_training in (False, True):
        mine = [r for r in rows if r["self_training"] is self_training]
        name = "labels_and_self_training" if self_training else "labels"
        summary[name] = {
            f"{model}_{key}": round(
                float(np.mean([s[model][key] for r in mine for s in r["scores"]])), 3
            )
            for model in ("shipped", "fine_tuned")
            for key in ("precision", "recall", "f1")
        }
        summary[name]["adopted"] = sum(int(r["round"]["adopted"]) for r in mine)
        summary[name]["training_s"] = round(float(np.mean([r["training_s"] for r in mine])), 1)
    return {"steps": FINETUNE_STEPS, "rows": rows, "summary": summary}


def learned_timing(size: int, device: str) -> dict[str, Any]:
    """Seconds per stage of the learned picker on one simulated ``size``^2 micrograph."""
    import torch

    from causalscope.daemon.bench._common import still_micrograph
    from causalscope.models.picking.learned import canonical_micrograph, default_picker
    from causalscope.models.picking.learned.inference import picks_from_logits

    image, truth = still_micrograph(size, particles_per_1024=20, seed=0, dose_e_per_a2=40.0)
    diameter = 2.0 * float(truth["particle_radius_angstrom"])
    model = default_picker(device=device)
    micrograph = torch.from_numpy(image).to(device)
    times: dict[str, float] = {}
    started = time.perf_counter()
    canonical, scale = canonical_micrograph(micrograph, diameter_px=diameter)
    times["preprocess_s"] = time.perf_counter() - started
    started = time.perf_counter()
    with torch.inference_mode():
        logits = model(canonical[None, None])[0, 0]
    times["network_s"] = time.perf_counter() - started
    started = time.perf_counter()
    picks_from_logits(
        logits,
        canonical,
        scale=scale,
        diameter_px=diameter,
        calibrated_threshold=model.threshold(),
    )
    times["peaks_and_cut_s"] = time.perf_counter() - started
    return {
        "size": size,
        "diameter_px": diameter,
        "canonical_px": int(canonical.shape[0]),
        "threads": torch.get_num_threads(),
        **{k: round(v, 3) for k, v in times.items()},
        "total_s": round(sum(times.values()), 3),
    }
