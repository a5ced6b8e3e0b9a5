"""Picking benchmark: F1 against simulated truth, real micrographs, Topaz, and time.

Simulated: 300 kV, 1 A/px, the built-in apoferritin-like phantom (diameter ~120 A), 20
particles per 1024^2, picked with :func:`pick_blobs` (``threshold="auto"``) on the raw
micrograph and on its Wiener restoration (CTF fitted, SSNR fitted), with
:func:`pick_template` (phantom projections) on the restoration, and with the shipped learned
picker (:func:`pick_learned`, automatic threshold) on the raw micrograph. A pick matches a
true centre within half a particle radius (Hungarian matching).

Contaminated (``contaminated``): the live path (learned picker, then the exclusion mask) on
simulated 1024^2 micrographs at 2 A/px, clean or with an ice ball, aggregates, a carbon edge
or a crack, and crowded (particles over 45 % of the field, many touching: clean, beside an ice
ball, beside a carbon edge), at 40 and 12 e/A^2: precision, recall and F1 against the particles
in clean ice, and the share of picks on contamination; and the picks on micrographs without
particles (``no_particles``: empty, ice alone).

Real (when ``../shared/data/picking`` exists): the five EMPIAR-10028 micrographs of CryoPPP,
whose expert masks (discs of ~57 px) give the truth as the centroids of their connected
components (merged discs split by k-means into ``round(area / median area)`` centres),
matched within a quarter diameter; and the Magellon apoferritin micrograph (8x binned, ~6.3
A/px) against Topaz's picks (scaled by 1/8), matched within half a diameter. Topaz is a peer,
not the truth; ``topaz_convention_check`` reports whether its picks land on this micrograph's
particles under each axis convention (what it found: README, benchmark section).

Topaz (``topaz``, a Python interpreter with ``topaz-em``): its general model on the learned
picker's real sets, scored beside it (:mod:`daemon.bench.picking_topaz`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CASES", "on_contamination", "run_picking_bench"]

CASES: dict[str, dict[str, float]] = {
    "typical": {"dose_e_per_a2": 40.0, "ice_thickness_nm": 30.0},
    "low_dose": {"dose_e_per_a2": 12.0, "ice_thickness_nm": 30.0},
    "very_low_dose": {"dose_e_per_a2": 6.0, "ice_thickness_nm": 30.0},
}
_CRYOPPP_DIAMETER_PX = 57.0
#: the share of the field a crowded micrograph's particles cover (many touch; at most ~54 %)
CROWDED_COVERAGE = 0.45
#: the contaminated bench's micrographs: (contamination or None, crowded)
CONTAMINATED_ROWS: tuple[tuple[str | None, bool], ...] = (
    *((detail, False) for detail in (None, "ice_blobs", "aggregates", "carbon_edge", "crack")),
    *((detail, True) for detail in (None, "ice_blobs", "carbon_edge")),
)


def _simulate(size: int, case: dict[str, float], seed: int) -> tuple[np.ndarray, Any]:
    from causalscope.daemon.bench._common import still_micrograph

    return still_micrograph(
        size,
        particles_per_1024=20,
        seed=seed,
        dose_e_per_a2=case["dose_e_per_a2"],
        ice_thickness_nm=case["ice_thickness_nm"],
    )


def _restore(micrograph: Any) -> tuple[Any, Any]:
    from causalscope.daemon.bench._common import fit_ctf
    from causalscope.models.restoration import spectral_snr_from_fit, wiener_filter

    ctf = fit_ctf(micrograph)
    ssnr = spectral_snr_from_fit(micrograph, pixel_size_angstrom=1.0, **ctf.kwargs())
    return wiener_filter(micrograph, pixel_size_angstrom=1.0, ssnr=ssnr, **ctf.kwargs()), ctf


def _templates() -> Any:
    from causalscope.models.picking import project_templates
    from causalscope.models.simulate.specimen import phantom_specimen

    return project_templates(
        phantom_specimen().coords_angstrom, pixel_size_angstrom=1.0, box_px=160, n_views=8
    )


def _simulated(size: int, name: str, seed: int) -> dict[str, Any]:
    import torch

    from causalscope.models.picking import match_picks, pick_blobs, pick_template
    from causalscope.models.picking.learned import default_picker, pick_learned

    image, truth = _simulate(size, CASES[name], seed)
    micrograph = torch.from_numpy(image)
    restored, _ = _restore(micrograph)
    diameter = 2.0 * truth["particle_radius_angstrom"]
    centres = np.asarray(truth["particles"])
    radius_px = 0.25 * diameter
    row: dict[str, Any] = {"case": name, "size": size, "seed": seed, **CASES[name]}
    runs = {
        "blob_raw": pick_blobs(
            micrograph, pixel_size_angstrom=1.0, particle_diameter_angstrom=diameter
        ),
        "blob_restored": pick_blobs(
            restored, pixel_size_angstrom=1.0, particle_diameter_angstrom=diameter
        ),
        "template_restored": pick_template(
            restored, _templates(), pixel_size_angstrom=1.0, particle_diameter_angstrom=diameter
        ),
        "learned_raw": pick_learned(micrograph, default_picker(), diameter_px=diameter),
    }
    for label, picks in runs.items():
        match = match_picks(picks.xy_px, centres, radius_px=radius_px)
        row[f"{label}_precision"] = round(match.precision, 3)
        row[f"{label}_recall"] = round(match.recall, 3)
        row[f"{label}_f1"] = round(match.f1, 3)
    return row


def live_path_picks(image: Any, apix: float, diameter_angstrom: float, model: Any) -> Any:
    """``(xy, scores)`` tensors of the live path's picks on a micrograph of counts: the learned
    picker, then the exclusion mask at the live default contrast."""
    from causalscope.config import PickingSettings
    from causalscope.models.picking.exclusion import exclusion_mask
    from causalscope.models.picking.learned import pick_learned

    contrast = PickingSettings().exclude_contrast
    mask = exclusion_mask(
        image,
        pixel_size_angstrom=apix,
        particle_diameter_angstrom=diameter_angstrom,
        dense_fraction=contrast,
        thin_fraction=contrast,
    )
    diameter = diameter_angstrom / apix
    picks = pick_learned(image, model, diameter_px=diameter, counted=mask.keeps, ice_free=mask.thin)
    kept, _ = mask.drop(image, picks, diameter_px=diameter)
    return kept.xy_px, kept.scores


def on_contamination(transmission: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: the counts at each ``[x, y]`` of ``xy`` ``(n, 2)`` are changed by more than
    3 % by contamination (the simulator's ``transmission`` there differs from 1 by more)."""
    ij = np.clip(np.round(xy[:, ::-1]).astype(int), 0, np.array(transmission.shape) - 1)
    return np.abs(transmission[ij[:, 0], ij[:, 1]] - 1.0) > 0.03


def _contaminated(
    detail: str | None, dose: float, seed: int, *, crowded: bool = False, model: Any = None
) -> dict[str, Any]:
    """The live path (learned picker, then the exclusion mask) on a simulated 1024^2 micrograph
    at 2 A/px with ``detail`` contamination (None: clean) against the particles in clean ice
    (the counts changed by at most 3 % there: neither under dense matter nor in a crack;
    half a diameter from the border), and the share of picks on contamination; ``crowded``:
    particles over :data:`CROWDED_COVERAGE` of the field; ``model``: another learned picker
    than the shipped one."""
    import torch

    from causalscope.models.picking import match_picks
    from causalscope.models.picking.learned import default_picker
    from causalscope.models.simulate.triage_scenes import simulate_triage_micrograph

    scene = simulate_triage_micrograph(
        "usable" if detail is None else "contaminated",
        size_px=1024,
        pixel_size_angstrom=2.0,
        dose_e_per_a2=dose,
        seed=seed,
        detail=detail,
        coverage=CROWDED_COVERAGE if crowded else None,
    )
    image = torch.from_numpy(scene.image.astype(np.float32))
    diameter_a, apix = 120.0, scene.pixel_size_angstrom
    diameter = diameter_a / apix
    transmission = np.ones_like(scene.image) if scene.transmission is None else scene.transmission
    limit = np.array(transmission.shape) - 1
    truth = np.asarray(scene.truth["particles"], dtype=np.float64).reshape(-1, 2)
    inner = np.all((truth > diameter / 2) & (truth < limit[::-1] - diameter / 2), axis=1)
    truth = truth[inner & ~on_contamination(transmission, truth)]
    xy = live_path_picks(image, apix, diameter_a, default_picker() if model is None else model)[
        0
    ].numpy()
    match = match_picks(xy, truth, radius_px=0.25 * diameter)
    return {
        "detail": ("crowded_" if crowded else "") + (detail or "clean"),
        "dose_e_per_a2": dose,
        "seed": seed,
        "n_truth": len(truth),
        "precision": round(match.precision, 3),
        "recall": round(match.recall, 3),
        "f1": round(match.f1, 3),
        "picks_on_contamination": (
            round(float(on_contamination(transmission, xy).mean()), 3) if len(xy) else 0.0
        ),
    }


def _false_picks(kind: str, seed: int) -> int:
    """The learned picker's picks on a simulated micrograph without particles (``empty`` or
    ``ice_only``; 1024^2 at 2 A/px, 120 A diameter)."""
    import torch

    from causalscope.models.picking.learned import default_picker, pick_learned
    from causalscope.models.simulate.triage_scenes import simulate_triage_micrograph

    scene = simulate_triage_micrograph(kind, size_px=1024, pixel_size_angstrom=2.0, seed=seed)
    image = torch.from_numpy(scene.image.astype(np.float32))
    return len(pick_learned(image, default_picker(), diameter_px=60.0))


def cryoppp_truth(mask: np.ndarray) -> np.ndarray:
    """``(n, 2)`` [x, y] particle centres from an expert mask (discs, some touching)."""
    from scipy import ndimage
    from scipy.cluster.vq import kmeans2

    binary = mask > 127
    labels, n = ndimage.label(binary)
    areas = ndimage.sum(binary, labels, range(1, n + 1))
    single = float(np.median(areas))
    centres: list[np.ndarray] = []
    for i, area in enumerate(areas, start=1):
        k = max(1, round(area / single))
        yx = np.argwhere(labels == i).astype(np.float64)
        if k == 1:
            centres.append(yx.mean(axis=0))
        else:
            found, _ = kmeans2(yx, k, seed=0, minit="++")
            centres.extend(found)
    return np.asarray(centres)[:, ::-1]


def topaz_convention_check(
    image: np.ndarray, topaz_xy: np.ndarray, ours_xy: np.ndarray, *, apix: float, diameter: float
) -> dict[str, Any]:
    """Do a peer's picks land on particles? Mean robust z of the blob response at them.

    For each axis convention: the mean z at the (rounded) positions, its distance in standard
    errors from the mean at as many uniformly random positions (2,000 draws), and the fraction
    of the peer's picks we also picked. Our own picks' mean z is the reference for picks that
    do land on particles.
    """
    import torch

    from causalscope.daemon.bench._axes import axis_conventions
    from causalscope.models.picking import blob_response, match_picks

    response, _ = blob_response(
        torch.from_numpy(image), pixel_size_angstrom=apix, particle_diameter_angstrom=diameter
    )
    z = response.numpy()
    z = (z - np.median(z)) / (1.4826 * np.median(np.abs(z - np.median(z))))
    h, w = z.shape

    def mean_z(xy: np.ndarray) -> float:
        ij = np.round(xy).astype(int)
        inside = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
        return float(z[ij[inside, 1], ij[inside, 0]].mean()) if inside.any() else float("nan")

    rng = np.random.default_rng(0)
    margin = 0.5 * diameter / apix
    random = np.array(
        [
            mean_z(rng.uniform([margin, margin], [w - margin, h - margin], (len(topaz_xy), 2)))
            for _ in range(2000)
        ]
    )
    out: dict[str, Any] = {
        "mean_z_ours": round(mean_z(ours_xy), 3),
        "mean_z_random": round(float(random.mean()), 3),
    }
    for name, xy in axis_conventions(topaz_xy, (h, w)).items():
        match = match_picks(ours_xy, xy, radius_px=0.5 * diameter / apix)
        value = mean_z(xy)
        out[name] = {
            "mean_z": round(value, 3),
            "sd_above_random": round((value - float(random.mean())) / float(random.std()), 1),
            "fraction_of_topaz_we_also_picked": round(match.recall, 3),
        }
    return out


def _real(shared: Path) -> dict[str, Any]:
    import imagecodecs
    import mrcfile
    import torch

    from causalscope.models.picking import match_picks, pick_blobs
    from causalscope.models.picking.learned import default_picker, pick_learned

    out: dict[str, Any] = {"cryoppp_10028": [], "magellon_topaz": None}
    folder = shared / "picking" / "cryoppp_10028"
    for path in sorted((folder / "images").glob("*.png")):
        image = imagecodecs.png_decode(path.read_bytes()).astype(np.float32)
        mask = imagecodecs.png_decode((folder / "labels" / path.name).read_bytes())
        truth = cryoppp_truth(mask if mask.ndim == 2 else mask[..., 0])
        # pixel units throughout: a 1 "A"/px scale with the diameter in pixels
        picks = pick_blobs(
            torch.from_numpy(image), pixel_size_angstrom=1.0, particle_diameter_angstrom=57.0
        )
        match = match_picks(picks.xy_px, truth, radius_px=0.25 * _CRYOPPP_DIAMETER_PX)
        out["cryoppp_10028"].append(
            {
                "micrograph": path.name,
                "n_truth": match.n_truth,
                "n_picks": match.n_picks,
                "precision": round(match.precision, 3),
                "recall": round(match.recall, 3),
                "f1": round(match.f1, 3),
            }
        )
    magellon = shared / "picking" / "magellon_apoferritin_ds8.mrc"
    topaz_path = shared / "picking" / "magellon_apoferritin_ds8_topaz_picks.json"
    if magellon.exists() and topaz_path.exists():
        with mrcfile.open(magellon) as mrc:
            image = np.asarray(mrc.data, dtype=np.float32).copy()
        topaz = json.loads(topaz_path.read_text())
        topaz_xy = np.array([[p["x"], p["y"]] for p in topaz], dtype=np.float64) / 8.0
        apix, diameter = 6.3, 120.0
        picks = pick_blobs(
            torch.from_numpy(image), pixel_size_angstrom=apix, particle_diameter_angstrom=diameter
        )
        match = match_picks(picks.xy_px, topaz_xy, radius_px=0.5 * diameter / apix)
        learned = pick_learned(
            torch.from_numpy(image), default_picker(), diameter_px=diameter / apix
        )
        out["magellon_topaz"] = {
            "n_ours": match.n_picks,
            "n_learned": len(learned),
            "n_topaz": match.n_truth,
            "n_agree": match.n_true_positive,
            "fraction_of_ours_topaz_also_picked": round(match.precision, 3),
            "fraction_of_topaz_we_also_picked": round(match.recall, 3),
        }
        out["topaz_convention_check"] = topaz_convention_check(
            image, topaz_xy, picks.xy_px.numpy(), apix=apix, diameter=diameter
        )
    return out


def _timing(size: int, device: str) -> dict[str, Any]:
    import torch

    from causalscope.daemon.bench._measure import peak_memory
    from causalscope.models.picking import extract_particles, pick_blobs, pick_template

    image, truth = _simulate(size, CASES["typical"], 0)
    micrograph = torch.from_numpy(image).to(device)
    restored, ctf = _restore(micrograph)
    diameter = 2.0 * truth["particle_radius_angstrom"]
    templates = _templates()
    times: dict[str, float] = {}
    with peak_memory(device) as memory:
        started = time.perf_counter()
        picks = pick_blobs(restored, pixel_size_angstrom=1.0, particle_diameter_angstrom=diameter)
        times["blob_s"] = time.perf_counter() - started
        started = time.perf_counter()
        pick_template(
            restored, templates, pixel_size_angstrom=1.0, particle_diameter_angstrom=diameter
        )
        times["template_s"] = time.perf_counter() - started
        started = time.perf_counter()
        boxes = extract_particles(
            micrograph, picks.xy_px, box_px=192, pixel_size_angstrom=1.0, ctf=ctf
        )
        times["extract_s"] = time.perf_counter() - started
    return {
        "size": size,
        "n_picks": len(picks),
        "box_px": int(boxes.shape[-1]),
        **{k: round(v, 3) for k, v in times.items()},
        "picking_s": round(times["blob_s"] + times["extract_s"], 3),
        "peak_rss_increase_gib": memory.rss_increase_gib,
    }


def run_picking_bench(
    *,
    cases: list[str],
    size: int,
    seeds: list[int],
    timing_size: int | None,
    device: str,
    shared_data: Path | None,
    cross_validate: bool = False,
    finetune: bool = False,
    topaz: str | None = None,
    real_only: bool = False,
) -> dict[str, Any]:
    """Run the picking benchmark; returns a JSON-able report.

    ``cross_validate`` adds the learned picker's EMPIAR-10059 leave-one-out cross-validation (five
    trainings; :mod:`daemon.bench.picking_learned`); ``finetune`` the session fine-tuning on
    EMPIAR-10059 (:func:`~daemon.bench.picking_learned.finetune_real_bench`); ``topaz``, a Python
    interpreter with ``topaz-em``, Topaz's general model on the same real micrographs beside the
    learned picker (:mod:`daemon.bench.picking_topaz`; checked before anything runs).
    ``real_only`` leaves out the simulated micrographs and the timing: the real ones alone.
    """
    import torch

    from causalscope.daemon.bench.picking_learned import (
        finetune_real_bench,
        learned_real_bench,
        learned_timing,
    )
    from causalscope.daemon.bench.picking_topaz import check_topaz, merge_topaz, topaz_real_bench
    from causalscope.models.errors import InputError

    if topaz is not None or real_only:
        if shared_data is None or not (shared_data / "picking").is_dir():
            raise InputError(
                "No real micrographs",
                f"{'--topaz compares' if topaz else '--real-only picks'} on "
                f"SHARED_DATA/picking, which is missing ({shared_data})",
            )
    if topaz is not None:
        check_topaz(topaz)  # a bad interpreter fails now, not after the simulated rows

    simulated = not real_only
    rows = [_simulated(size, name, seed) for name in cases for seed in seeds if simulated]
    report: dict[str, Any] = {"bench": "picking", "device": device, "simulated": rows}
    report["contaminated"] = [
        _contaminated(detail, dose, seed, crowded=crowded)
        for dose in (40.0, 12.0)
        for detail, crowded in CONTAMINATED_ROWS
        for seed in seeds
        if simulated
    ]
    report["no_particles"] = {
        kind: [_false_picks(kind, seed) for seed in seeds if simulated]
        for kind in ("empty", "ice_only")
    }
    if shared_data is not None and (shared_data / "picking").is_dir():
        report["real"] = _real(shared_data)
        report["learned_real"] = learned_real_bench(shared_data, cross_validate=cross_validate)
        if topaz is not None:
            threads = torch.get_num_threads()
            report["topaz_real"] = topaz_real_bench(topaz, shared_data, threads=threads)
            merge_topaz(report["learned_real"], report["topaz_real"])
        if finetune:
            report["finetune_real"] = finetune_real_bench(shared_data)
    if timing_size and simulated:
        report["timing"] = _timing(timing_size, device)
        report["learned_timing"] = learned_timing(timing_size, device)
    summary: dict[str, Any] = {}
    for name in cases if simulated else ():
        mine = [r for r in rows if r["case"] == name]
        summary[name] = {
            key: float(np.median([r[key] for r in mine]))
            for key in ("blob_raw_f1", "blob_restored_f1", "template_restored_f1", "learned_raw_f1")
        }
    for dose in (40.0, 12.0) if simulated else ():
        mine = [r for r in report["contaminated"] if r["dose_e_per_a2"] == dose]
        summary[f"contaminated_{dose:g}_e"] = {
            detail: {
                key: round(float(np.mean([r[key] for r in mine if r["detail"] == detail])), 3)
                for key in ("precision", "recall", "f1", "picks_on_contamination")
            }
            for detail in dict.fromkeys(r["detail"] for r in mine)
        }
    summary["picks_without_particles"] = report["no_particles"]
    real = report.get("real")
    if real and real["cryoppp_10028"]:
        summary["cryoppp_10028"] = {
            key: float(np.mean([r[key] for r in real["cryoppp_10028"]]))
            for key in ("precision", "recall", "f1")
        }
    if real and real["magellon_topaz"]:
        summary["magellon_topaz"] = real["magellon_topaz"]
    if "learned_real" in report:
        summary["learned_real"] = report["learned_real"]["summary"]
    if "topaz_real" in report:
        topaz_report = report["topaz_real"]
        summary["topaz"] = {
            "versions": topaz_report["versions"],
            "threads": topaz_report["threads"],
            "total_s": topaz_report["total_s"],
            **{s: topaz_report[s]["coordinates"] for s in topaz_report["summary"]},
        }
    if "finetune_real" in report:
        summary["finetune_real"] = report["finetune_real"]["summary"]
    if "timing" in report:
        summary["time_per_exposure_s"] = report["timing"]["picking_s"]
        summary["learned_time_per_exposure_s"] = report["learned_timing"]["total_s"]
    report["summary"] = summary
    return report
