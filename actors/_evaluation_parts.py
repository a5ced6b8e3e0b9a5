"""The session evaluator's pieces that need none of its state: its device, reading a
particles STAR, the classifier's assignments as arrays, the class set's metrics, selection and
files, the reference's symmetry and the forecast of an update (:mod:`actors.evaluation`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from causalscope.actors._evaluation_results import (
    ClassRow,
    ClassSetUpdate,
    ForecastUpdate,
    MapUpdate,
    finite_or_none,
)
from causalscope.models.classification import Assignment, Class2D
from causalscope.models.novelty import ClassNovelty

__all__ = [
    "class_set",
    "columns",
    "forecast",
    "overlay",
    "reference_symmetry",
    "resolved_device",
    "star_rows",
]


def resolved_device(choice: str) -> str:
    """``processing.device``'s rule (:func:`actors.exposure.resolve_device`: "auto" is CUDA
    where a GPU is visible) for the evaluator; "cpu" without importing the exposure worker."""
    if choice == "cpu":
        return "cpu"
    from causalscope.actors.exposure import resolve_device

    return resolve_device(choice)


def reference_symmetry(
    reference: str | None, symmetry: str, *, pixel_size_angstrom: float, box_px: int
) -> tuple[float, ...]:
    """The ``reference`` map's self-correlations under ``symmetry``, at the refinement's
    sampling and 30 A (what the refinement started from); none for C1 or without a
    reference."""
    import torch

    from causalscope.daemon.formats.maps import read_mrc_map
    from causalscope.models.reconstruction.refine import low_pass
    from causalscope.models.reconstruction.resample import rescale_map
    from causalscope.models.reconstruction.symmetry import self_correlations, symmetry_matrices

    if reference is None or symmetry.upper() == "C1":
        return ()
    volume, reference_apix = read_mrc_map(reference)
    resampled = rescale_map(
        torch.as_tensor(volume),
        from_pixel_angstrom=reference_apix,
        to_pixel_angstrom=pixel_size_angstrom,
        box_px=box_px,
    )
    smooth = low_pass(resampled, resolution_angstrom=30.0, pixel_size_angstrom=pixel_size_angstrom)
    return self_correlations(smooth, symmetry_matrices(symmetry))


def star_rows(path: Path) -> Any:
    """The STAR file's particle rows, with each image name's stack made absolute (the files
    this evaluator writes live in another folder)."""
    import starfile

    rows = starfile.read(path, always_dict=True)["particles"]
    if "rlnImageName" in rows:
        names = rows["rlnImageName"].astype(str).str.split("@", n=1, expand=True)
        stacks = names[1].map(
            lambda s: str(p if (p := path.parent / s).exists() else Path(s).absolute())
        )
        rows = rows.assign(rlnImageName=names[0] + "@" + stacks)
    return rows


def columns(assignment: Any) -> dict[str, np.ndarray]:
    """An :class:`~models.classification.Assignment`'s per-particle arrays by name."""
    names = ("ids", "class_index", "psi_deg", "outlier")
    return {name: np.asarray(getattr(assignment, name)) for name in names}


def overlay(
    base: dict[str, np.ndarray], batch: dict[str, np.ndarray], n: int
) -> dict[str, np.ndarray]:
    """Arrays over particles ``0..n-1``: ``batch``'s where it has them, else ``base``'s, else
    unassigned (class -1)."""
    out = {
        "ids": np.arange(n),
        "class_index": np.full(n, -1),
        "psi_deg": np.zeros(n),
        "outlier": np.zeros(n, dtype=bool),
    }
    for part in (base, batch):
        if part:
            ids = part["ids"]
            for name in ("class_index", "psi_deg", "outlier"):
                out[name][ids] = part[name]
    return out


def class_set(
    model: Class2D,
    assigned: dict[str, np.ndarray],
    labels: dict[int, str],
    *,
    particle_diameter_angstrom: float,
    class_threshold: float,
    folder: Path,
    version: int,
    rows: list[Any],
    novelty: list[ClassNovelty] | None = None,
) -> ClassSetUpdate:
    """Metrics, selection and files (in ``folder``, named for update ``version``) of the
    classes; ``assigned``: every particle's class; ``rows``: their STAR rows in order;
    ``novelty``: each class against the novelty index (None without one)."""
    import pandas as pd
    import starfile

    from causalscope.daemon.formats.classes import write_class_files
    from causalscope.models.classification import class_metrics, select_classes

    n = len(assigned["ids"])
    everything = Assignment(
        assigned["ids"], assigned["class_index"], assigned["psi_deg"], np.zeros((n, 2)),
        np.zeros(n), np.zeros(n), assigned["outlier"],
    )  # fmt: skip
    metrics = class_metrics(
        model, everything, particle_diameter_angstrom=particle_diameter_angstrom
    )
    automatic = np.asarray(select_classes(metrics, threshold=class_threshold))
    manual = {k: label == "select" for k, label in labels.items() if 0 <= k < len(metrics)}
    keep = np.asarray(select_classes(metrics, threshold=class_threshold, manual=manual))
    files = write_class_files(
        folder,
        model.averages(),
        pixel_size_angstrom=float(model.grid.pixel_size_angstrom),
        keep=keep,
        particles=[m.n_particles for m in metrics],
        resolutions_angstrom=[m.resolution_angstrom for m in metrics],
        stem=f"v{version:04d}_",
    )
    table = pd.concat(rows, ignore_index=True)
    table["rlnClassNumber"] = everything.class_index + 1
    table["rlnAnglePsi"] = everything.psi_deg
    has_class = everything.class_index >= 0
    chosen = keep[everything.class_index] & ~everything.outlier & has_class
    # as cryoSPARC's Select 2D: the particles kept, and those excluded (in excluded classes,
    # or outliers of their class), which the picker's fine-tuning takes as known negatives
    for name, rows_in in (("selected", chosen), ("excluded", has_class & ~chosen)):
        path = folder / f"{name}_particles.star"
        partial = path.with_name(f".{path.name}.part")
        starfile.write({"particles": table[rows_in]}, partial, overwrite=True)
        partial.replace(path)
    selected = folder / "selected_particles.star"
    classes = tuple(
        _class_row(m, bool(automatic[m.class_index]), bool(keep[m.class_index]), labels, novelty)
        for m in metrics
    )
    return ClassSetUpdate(
        n_classes=len(metrics),
        particles=model.n_stored,
        selected_particles=int(chosen.sum()),
        pixel_size_angstrom=float(model.grid.pixel_size_angstrom),
        averages_path=files["averages"],
        gallery_path=files["gallery"],
        model_star_path=files["model_star"],
        selected_star_path=str(selected),
        classes=classes,
    )


def _class_row(
    m: Any, automatic: bool, keep: bool, labels: dict[int, str], novelty: list[ClassNovelty] | None
) -> ClassRow:
    """One class's row with its Novelty and the recommendation."""
    from causalscope.models.novelty import recommend_class

    found = novelty[m.class_index] if novelty and m.class_index < len(novelty) else None
    label = labels.get(m.class_index)
    recommendation, reason = recommend_class(
        particles=m.n_particles,
        junk_score=m.junk_score,
        auto_selected=automatic,
        label=label,
        novelty=found,
    )
    return ClassRow(
        class_index=m.class_index,
        particles=m.n_particles,
        effective_sample_size=m.effective_sample_size,
        resolution_angstrom=finite_or_none(m.resolution_angstrom),
        junk_score=m.junk_score,
        auto_selected=automatic,
        selected=keep,
        label=label,
        novelty=None if found is None or found.nearest_kind is None else found.novelty,
        nearest=None if found is None else found.nearest,
        nearest_kind=None if found is None else found.nearest_kind,
        structure_distance=None if found is None else found.structure_distance,
        junk_distance=None if found is None else found.junk_distance,
        recommendation=recommendation,
        reason=reason,
    )


def forecast(
    update: MapUpdate,
    history: list[tuple[int, float]],
    *,
    target_angstrom: float,
    particles_per_hour: float | None,
    hours_left: float | None = None,
) -> ForecastUpdate:
    """Rosenthal-Henderson over the updates (>= 3 distinct counts) and the SSNR fit of the
    current FSC, and with ``hours_left`` of a planned session the resolution expected at its
    end (see :mod:`models.reconstruction.forecast`)."""
    from causalscope.models.reconstruction.forecast import (
        fit_rosenthal_henderson,
        fit_ssnr,
        session_end,
    )

    bfactor = bfactor_sd = None
    points = {n: d for n, d in history if np.isfinite(d)}
    if len(points) >= 3:
        fit = fit_rosenthal_henderson(list(points), list(points.values()))
        bfactor = finite_or_none(fit.bfactor_angstrom2)
        bfactor_sd = finite_or_none(fit.bfactor_sd_angstrom2)
    ssnr_b = needed = doubled = hours = None
    try:
        ssnr = fit_ssnr(
            np.asarray(update.fsc_unmasked),
            pixel_size_angstrom=update.pixel_size_angstrom,
            particles=update.particles,
        )
    except ValueError:  # too few informative shells yet
        ssnr = None
    if ssnr is not None and ssnr.bfactor_angstrom2 > 0:
        ssnr_b = finite_or_none(ssnr.bfactor_angstrom2)
        doubled = finite_or_none(ssnr.resolution_at(2 * update.particles))
        needed = finite_or_none(ssnr.particles_for(target_angstrom))
        if needed is not None and particles_per_hour:
            hours = max(0.0, (needed - update.particles) / particles_per_hour)
    end = None  # needs the rate: without one, "the end" would read as "no more particles"
    if ssnr is not None and ssnr_b is not None and hours_left is not None and particles_per_hour:
        end = session_end(
            ssnr,
            particles_per_hour=particles_per_hour,
            hours_left=max(0.0, hours_left),
            target_angstrom=target_angstrom,
        )
    return ForecastUpdate(
        particles=update.particles,
        bfactor_angstrom2=bfactor,
        bfactor_sd_angstrom2=bfactor_sd,
        ssnr_bfactor_angstrom2=ssnr_b,
        target_resolution_angstrom=target_angstrom,
        particles_needed=needed,
        resolution_at_double_angstrom=doubled,
        particles_per_hour=particles_per_hour,
        hours_to_target=hours,
        hours_left=None if end is None else end.hours_left,
        particles_at_end=None if end is None else end.particles,
        resolution_at_end_angstrom=None if end is None else finite_or_none(end.resolution_angstrom),
        p_reach_target=None if end is None else finite_or_none(end.p_reach_target),
    )
