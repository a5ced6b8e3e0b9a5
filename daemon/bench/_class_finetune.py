"""Session fine-tuning of the learned picker from the session's own 2D classes, measured on
simulated exposures with aggregates (``bench picking --from-classes``).

As a session does it: the live path (the shipped learned picker, then the exclusion mask) picks
eight exposures with aggregates (:func:`~models.simulate.triage_scenes.simulate_triage_micrograph`,
seeds 110-113 at 40 and 12 e/A^2, 1024^2 at 2 A/px); their picks are cut out (phase-flipped by
the scene's CTF, protein made bright, as the exposure actors extract them), classified into
:data:`CLASSES` 2D classes (:class:`~models.classification.Class2D`) and selected as the
evaluator selects (:func:`~models.classification.select_classes` at the session's class
threshold; outliers excluded). The operator labels two other exposures with aggregates (their
particles in clean ice; seeds 120-125 in pairs, 40 e/A^2, particles over 30 % of the field),
and one round of :class:`~actors.picker_trainer.PickerTrainer` (300 steps, the session's)
trains on them and on the picks the classes sorted (selected as particles, excluded as known
junk), judged on the labels' held-back rows. Each variant is scored on the contaminated rows of
``bench picking`` (seeds 0-2; aggregates, clean and carbon edge, at both doses) with the share
of picks on contamination, with the picker the session would use (the shipped one where the
round was not adopted): the labels alone, the labels with the classes, and the labels with
self-training (the shipped picker's picks at ``p >= 0.9``) in place of the classes. The
classes never see the truth; it only scores them (the share of the picks in clean ice that
they selected, and of the picks on contamination).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

__all__ = ["CLASSES", "classes_finetune_bench"]

#: 2D classes of the eight exposures' picks (about 300)
CLASSES = 20
_SEEDS = (110, 111, 112, 113)
_DOSES = (40.0, 12.0)
_APIX, _DIAMETER_A = 2.0, 120.0
_SCORED = ("aggregates", None, "carbon_edge")
#: the operator's labelled exposures, in pairs (enough held-back particles to judge by)
_LABELLED_PAIRS = ((120, 121), (122, 123), (124, 125))
_LABELLED_COVERAGE = 0.3
_VARIANTS = ("labels", "labels_and_classes", "labels_and_self_training")


def _exposure(seed: int, dose: float, model: Any) -> dict[str, Any]:
    """The live path's picks on one simulated exposure with aggregates, which of them lie in
    clean ice, and their boxes."""
    import torch

    from causalscope.actors._restore import picking_box_px
    from causalscope.config import PickingSettings
    from causalscope.daemon.bench.picking import live_path_picks
    from causalscope.models.picking import extract_particles
    from causalscope.models.restoration.parameters import CtfParameters
    from causalscope.models.simulate.triage_scenes import simulate_triage_micrograph

    scene = simulate_triage_micrograph(
        "contaminated", size_px=1024, pixel_size_angstrom=_APIX, dose_e_per_a2=dose, seed=seed,
        detail="aggregates",
    )  # fmt: skip
    image = torch.from_numpy(scene.image.astype(np.float32))
    settings = PickingSettings(particle_diameter_angstrom=_DIAMETER_A)
    xy, scores = live_path_picks(image, _APIX, _DIAMETER_A, model)
    assert scene.transmission is not None  # a contaminated scene
    limit = np.array(scene.transmission.shape) - 1
    ij = np.clip(np.round(xy.numpy()[:, ::-1]).astype(int), 0, limit)
    clean = np.abs(scene.transmission[ij[:, 0], ij[:, 1]] - 1.0) <= 0.03
    defocus = float(scene.truth["defocus_angstrom"])
    ctf = CtfParameters(defocus + 200.0, defocus - 200.0, 0.0, 300.0, 2.7, 0.07)
    boxes = extract_particles(
        image,
        xy,
        box_px=picking_box_px(settings, _APIX),
        pixel_size_angstrom=_APIX,
        ctf=ctf,
        invert_contrast=True,
    )
    return {
        "name": f"aggregates_{seed}_{dose:g}e",
        "image": scene.image.astype(np.float32),
        "xy": xy.numpy(),
        "scores": scores.numpy(),
        "clean": clean,
        "boxes": boxes,
        "defocus": defocus,
    }


def _sorted_by_classes(exposures: list[dict[str, Any]]) -> np.ndarray:
    """Whether each pick (in order) lies in a selected 2D class, as the evaluator selects."""
    from dataclasses import replace

    from causalscope.config.reconstruction import ReconstructionSettings
    from causalscope.models.classification import (
        Class2D,
        Class2DSettings,
        ParticleCtfs,
        class_metrics,
        select_classes,
    )

    box = int(exposures[0]["boxes"].shape[-1])
    settings = replace(Class2DSettings(), n_classes=CLASSES, particle_diameter_angstrom=_DIAMETER_A)
    model = Class2D(box_px=box, pixel_size_angstrom=_APIX, settings=settings)
    stored = 0
    for e in exposures:
        n = len(e["xy"])
        if not n:
            continue
        defocus = np.full(n, e["defocus"])
        ctfs = ParticleCtfs(
            defocus + 200.0, defocus - 200.0, np.zeros(n), 300.0, 2.7, 0.07, _APIX,
            phase_flipped=True,
        )  # fmt: skip
        model.partial_fit(e["boxes"], ctfs, stored + np.arange(n))
        stored += n
    everything = model.reassign_all()
    metrics = class_metrics(model, everything, particle_diameter_angstrom=_DIAMETER_A)
    keep = np.asarray(select_classes(metrics, threshold=ReconstructionSettings().class_threshold))
    index = everything.class_index
    return np.asarray(keep[index] & ~everything.outlier & (index >= 0))


def _scored(model: Any) -> dict[str, Any]:
    from causalscope.daemon.bench.picking import _contaminated

    out: dict[str, Any] = {}
    for detail in _SCORED:
        for dose in _DOSES:
            rows = [_contaminated(detail, dose, seed, model=model) for seed in (0, 1, 2)]
            out[f"{detail or 'clean'}_{dose:g}e"] = {
                key: round(float(np.mean([r[key] for r in rows])), 3)
                for key in ("precision", "recall", "f1", "picks_on_contamination")
            }
    return out


def _labelled(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An exposure with aggregates and its particles in clean ice, as the operator labels it."""
    from causalscope.models.simulate.triage_scenes import simulate_triage_micrograph

    scene = simulate_triage_micrograph(
        "contaminated", size_px=1024, pixel_size_angstrom=_APIX, dose_e_per_a2=40.0, seed=seed,
        detail="aggregates", coverage=_LABELLED_COVERAGE,
    )  # fmt: skip
    assert scene.transmission is not None  # a contaminated scene
    xy = np.asarray(scene.truth["particles"], dtype=np.float64).reshape(-1, 2)
    xy = xy[((xy >= 0) & (xy <= 1023)).all(1)]
    ij = np.round(xy[:, ::-1]).astype(int)
    clean = np.abs(scene.transmission[ij[:, 0], ij[:, 1]] - 1.0) <= 0.03
    return scene.image.astype(np.float32), xy[clean]


def classes_finetune_bench(steps: int = 300) -> dict[str, Any]:
    """The module docstring's variants for each labelled pair: the round's report and the
    scores of the picker in use after it; their means; how well the classes sorted."""
    import torch

    from causalscope.actors.picker_trainer import PickerTrainer
    from causalscope.models.picking.learned import default_picker

    started = time.perf_counter()
    shipped = default_picker()
    exposures = [_exposure(seed, dose, shipped) for seed in _SEEDS for dose in _DOSES]
    classify_started = time.perf_counter()
    selected = _sorted_by_classes(exposures)
    classify_s = time.perf_counter() - classify_started
    clean = np.concatenate([e["clean"] for e in exposures])
    shipped_scores = _scored(shipped)
    report: dict[str, Any] = {
        "steps": steps,
        "exposures": [e["name"] for e in exposures],
        "picks": len(clean),
        "classes": CLASSES,
        "clean_picks_selected": round(float(selected[clean].mean()), 3),
        "contamination_picks_selected": round(float(selected[~clean].mean()), 3),
        "classify_s": round(classify_s, 1),
        "threads": torch.get_num_threads(),
        "shipped": shipped_scores,
        "pairs": [],
    }
    for pair in _LABELLED_PAIRS:
        labelled = [_labelled(seed) for seed in pair]
        row: dict[str, Any] = {"labelled": list(pair), "particles": [len(t) for _, t in labelled]}
        for variant in _VARIANTS:
            trainer = PickerTrainer(seed=0)
            for seed, (image, truth) in zip(pair, labelled, strict=True):
                trainer.add_labelled(f"labelled_{seed}", image, truth, _DIAMETER_A / _APIX)
            _add_session_picks(trainer, variant, exposures, selected)
            round_report = trainer.train(steps)
            adopted = bool(round_report["adopted"])
            row[variant] = {
                "round": round_report,
                "scores": _scored(trainer.model) if adopted else shipped_scores,
            }
        report["pairs"].append(row)
    report["mean"] = {
        variant: {
            key: {
                part: round(
                    float(np.mean([r[variant]["scores"][key][part] for r in report["pairs"]])), 3
                )
                for part in ("f1", "picks_on_contamination")
            }
            for key in shipped_scores
        }
        for variant in _VARIANTS
    }
    report["adopted"] = {
        v: sum(int(r[v]["round"]["adopted"]) for r in report["pairs"]) for v in _VARIANTS
    }
    report["total_s"] = round(time.perf_counter() - started, 1)
    return report


def _add_session_picks(
    trainer: Any, variant: str, exposures: list[dict[str, Any]], selected: np.ndarray
) -> None:
    """The session's own picks a variant trains on besides the labels."""
    start = 0
    for e in exposures:
        n = len(e["xy"])
        chosen = selected[start : start + n]
        start += n
        if variant == "labels_and_classes":
            trainer.add_classified(
                e["name"], e["image"], e["xy"][chosen], e["xy"][~chosen], _DIAMETER_A / _APIX
            )
        elif variant == "labels_and_self_training":
            confident = e["xy"][e["scores"] >= 0.9]
            trainer.add_confident(e["name"], e["image"], confident, n, _DIAMETER_A / _APIX)
