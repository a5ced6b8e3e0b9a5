"""``causalscope bench scores``: the scores against simulated sessions with known bad exposures.

Two sessions of simulated movies are processed by an exposure worker (no Ray), each with good
exposures and bad ones of known cause (thick ice, heavy drift, no particles, aggregates,
astigmatism, too little dose), in random order. The first session's labels (good = accept)
train the weights by Bayesian optimisation; the second, not used for learning, measures the
ROC AUC of HyperScore with the default and the learned weights. On the same records:

- obligations: each good record with one injected inconsistency (a fit beyond Nyquist,
  particles in ice thinner than them, the metadata's dose twice the counts, two overlapping
  picks), caught or not, with its counterexample; failures on the untouched records;
- Delta-Repro against the truth: on a population of exposures of varied difficulty
  (:mod:`daemon.bench.repro`: dose, ice, defocus, astigmatism and drift drawn per exposure),
  per seed, the Spearman correlation of ``1 - DeltaRepro`` with each exposure's true
  estimation error (its CTF and trajectory errors on the score's scales; also each alone, and
  the pick-count error); also on the two sessions;
- Meta: the second session re-scored with its good exposures first and the bad ones after
  (a regime change): Meta before the change, and how many exposures after it Meta first
  falls below 0.5;
- cost: milliseconds per exposure of scoring (without the refits; the sessions scored a second
  time, after a first pass that loads the solver), of the image triage of a 4096 px
  micrograph at 1 A/px as the exposure worker runs it (the sessions' fields are too narrow
  for it), the two together, and of Delta-Repro's refits.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

__all__ = ["CAUSES", "run_scores_bench"]

#: the bad causes and the simulation parameters that make them
CAUSES: dict[str, dict[str, Any]] = {
    "thick_ice": {"ice_thickness_nm": 140.0},
    "heavy_drift": {"drift_total_px": 70.0, "local_motion_px": 4.0, "drift_decay_frames": 30.0},
    "no_particles": {"n_particles": 0},
    "aggregates": {"aggregate_fraction": 0.7},
    "astigmatism": {"defocus_u_angstrom": 22_000.0, "defocus_v_angstrom": 15_000.0},
    "low_dose": {"dose_e_per_a2": 6.0},
}


def _draw(rng: np.random.Generator, cause: str | None, size: int, frames: int, apix: float) -> Any:
    from causalscope.models.simulate.exposure import ExposureParameters

    defocus = float(rng.uniform(12_000, 22_000))
    astig = float(rng.uniform(150, 500))
    params = ExposureParameters(
        size_px=size,
        n_frames=frames,
        pixel_size_angstrom=apix,
        dose_e_per_a2=float(rng.uniform(35, 45)),
        defocus_u_angstrom=defocus + astig / 2,
        defocus_v_angstrom=defocus - astig / 2,
        defocus_angle_deg=float(rng.uniform(0, 180)),
        ice_thickness_nm=float(rng.uniform(25, 45)),
        drift_total_px=float(rng.uniform(3, 10)) / apix,
        drift_direction_deg=float(rng.uniform(0, 360)),
        local_motion_px=0.7,
        n_particles=int(rng.integers(35, 50)),
        seed=int(rng.integers(1 << 30)),
    )
    return params if cause is None else dataclasses.replace(params, **CAUSES[cause])


def _session(
    seed: int, n: int, size: int, frames: int, folder: Path, apix: float = 1.0
) -> list[dict[str, Any]]:
    """``n`` exposures (half good, the rest cycling through the causes), processed."""
    import torch

    from causalscope.daemon.bench.repro import bench_worker, process_simulated, true_errors
    from causalscope.models.simulate.detector import draw_detector
    from causalscope.models.simulate.specimen import phantom_specimen

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    causes: list[str | None] = [None] * (n - n // 2)
    causes += [list(CAUSES)[i % len(CAUSES)] for i in range(n // 2)]
    order = rng.permutation(len(causes))
    detector = draw_detector(rng, (size, size))
    worker = bench_worker(folder / f"session{seed}", detector)
    specimen = phantom_specimen()
    found: list[dict[str, Any]] = []
    for index in order:
        cause = causes[index]
        params = _draw(rng, cause, size, frames, apix)
        exposure_id = f"s{seed}_{len(found):03d}_{cause or 'good'}"
        record, sim = process_simulated(
            worker, params, specimen=specimen, detector=detector, exposure_id=exposure_id
        )
        errors = true_errors(
            record, sim.truth, pixel_size_angstrom=apix, voltage_kv=params.voltage_kv
        )
        found.append(
            {
                "record": record,
                "cause": cause,
                "defocus_error_angstrom": errors["defocus_error_angstrom"],
                "ctf_error_angstrom": errors["ctf_error_angstrom"],
                "estimate_error": errors["estimate_error"],
            }
        )
    return found


def _score(items: list[dict[str, Any]], weights: Any = None) -> list[Any]:
    from causalscope.actors.scoring import SessionScorer
    from causalscope.config import ScoringSettings

    scorer = SessionScorer(ScoringSettings())
    if weights is not None:
        scorer.weights = weights
    return [scorer.score_exposure(item["record"]) for item in items]


def _triage_ms(repeats: int = 9) -> float:
    """Median milliseconds of the exposure worker's triage of a simulated 4096 px micrograph
    with particles at 1 A/px (after one call that warms the transforms)."""
    import torch

    from causalscope.actors._repro import triage_record
    from causalscope.models.simulate.triage_scenes import simulate_triage_micrograph

    scene = simulate_triage_micrograph("usable", size_px=4096, pixel_size_angstrom=1.0, seed=0)
    image = torch.as_tensor(scene.image, dtype=torch.float32)
    triage_record(image, pixel_size_angstrom=1.0)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        triage_record(image, pixel_size_angstrom=1.0)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def _obligations(items: list[dict[str, Any]]) -> dict[str, Any]:
    from causalscope.models.scoring import exposure_facts, exposure_obligations

    injections = {
        "fit_within_nyquist": lambda f: {"fit_resolution_angstrom": 1.8 * f.pixel_size_angstrom},
        "particles_fit_in_ice": lambda f: {
            "ice_thickness_nm": 0.03 * (f.particle_diameter_angstrom or 120.0),
            "ice_thickness_sigma_nm": 0.5,
        },
        "dose_matches_metadata": lambda f: {
            "metadata_dose_e_per_a2": 2.0 * (f.measured_dose_e_per_a2 or 40.0),
            "used_dose_e_per_a2": 2.0 * (f.measured_dose_e_per_a2 or 40.0),
        },
        "picks_do_not_overlap": lambda f: {
            "closest_picks_angstrom": 0.1 * (f.particle_diameter_angstrom or 120.0)
        },
    }
    caught = {name: 0 for name in injections}
    stated = {name: 0 for name in injections}
    examples: dict[str, str] = {}
    clean_failures: list[str] = []
    bad_failures: list[str] = []
    clean_checked = 0
    for item in items:
        facts = exposure_facts(item["record"])
        if facts is None:
            continue
        for result in exposure_obligations(facts):
            if not result.holds:
                failures = clean_failures if item["cause"] is None else bad_failures
                failures.append(f"{facts.exposure_id}: {result.name}: {result.message}")
            clean_checked += item["cause"] is None
        if item["cause"] is not None or not facts.n_particles:
            continue
        for name, change in injections.items():
            bad = dataclasses.replace(facts, **change(facts))
            injected = {r.name: r for r in exposure_obligations(bad)}.get(name)
            if injected is None:
                continue
            stated[name] += 1
            if not injected.holds and injected.counterexample:
                caught[name] += 1
                examples.setdefault(name, injected.message)
    return {
        "caught": {name: f"{caught[name]}/{stated[name]}" for name in injections},
        "caught_fraction": {
            name: (caught[name] / stated[name] if stated[name] else None) for name in injections
        },
        "example_counterexamples": examples,
        "clean_obligations_checked": clean_checked,
        "clean_failures": clean_failures,
        "failures_on_bad_exposures": bad_failures,
    }


def _meta_after_change(items: list[dict[str, Any]]) -> dict[str, Any]:
    good = [i for i in items if i["cause"] is None]
    bad = [i for i in items if i["cause"] is not None]
    scored = _score(good + bad)
    metas = [s.components.meta for s in scored]
    before = [m for m in metas[: len(good)] if m is not None]
    after = metas[len(good) :]
    first = next((k + 1 for k, m in enumerate(after) if m is not None and m < 0.5), None)
    return {
        "meta_before_change_mean": statistics.fmean(before) if before else None,
        "meta_before_change_min": min(before) if before else None,
        "exposures_until_meta_below_0.5": first,
        "meta_after_change": [None if m is None else round(m, 3) for m in after],
    }


def run_scores_bench(
    *,
    n: int = 24,
    size: int = 768,
    frames: int = 12,
    seeds: tuple[int, int] = (0, 1),
    trials: int = 150,
    pixel_size_angstrom: float = 1.0,
    repro_n: int = 16,
    repro_seeds: tuple[int, ...] = (0, 1, 2),
    repro_only: bool = False,
) -> dict[str, Any]:
    """The scores' report (see the module docstring); ``repro_only``: only the Delta-Repro
    population (``repro_n`` exposures per seed of ``repro_seeds``)."""
    from scipy.stats import spearmanr

    from causalscope.daemon.bench.repro import run_repro_population
    from causalscope.models.scoring.learn import learn_weights, roc_auc

    started = time.perf_counter()
    with TemporaryDirectory() as tmp:
        apix = pixel_size_angstrom
        population = run_repro_population(
            seeds=repro_seeds, n=repro_n, size=size, frames=frames, folder=Path(tmp), apix=apix
        )
        population["processing_s"] = round(time.perf_counter() - started, 1)
        population_summary = {k: v for k, v in population.items() if k != "rows"}
        if repro_only:
            return {"delta_repro_population": population, "summary": population_summary}
        started = time.perf_counter()
        train = _session(seeds[0], n, size, frames, Path(tmp), apix)
        test = _session(seeds[1], n, size, frames, Path(tmp), apix)
    processed_s = time.perf_counter() - started
    t0 = time.perf_counter()
    train_scores = _score(train)
    t0 = time.perf_counter()
    _score(train)
    score_ms = 1000 * (time.perf_counter() - t0) / len(train)
    triage_ms = _triage_ms()
    labels = [item["cause"] is None for item in train]
    learned = learn_weights(
        [s.components for s in train_scores], labels, n_trials=trials, seed=seeds[0]
    )
    test_labels = [item["cause"] is None for item in test]
    default_test = _score(test)
    learned_test = _score(test, learned.weights)

    def auc(scored: list[Any]) -> float:
        return roc_auc([s.score.hyperscore if s.score else 100.0 for s in scored], test_labels)

    per_cause: dict[str, list[float]] = {}
    for item, s in zip(test, learned_test, strict=True):
        key = item["cause"] or "good"
        per_cause.setdefault(key, []).append(s.score.hyperscore if s.score else 100.0)
    both = train + test
    repro = [i["record"].repro for i in both]
    pairs = [
        (1 - r.delta_repro, i["estimate_error"])
        for r, i in zip(repro, both, strict=True)
        if r is not None and i["estimate_error"] is not None
    ]
    rho = float(spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic)
    repro_ms = [
        1000 * i["record"].timings_s["repro"] for i in both if "repro" in i["record"].timings_s
    ]
    report: dict[str, Any] = {
        "sessions": {
            "exposures": n,
            "size_px": size,
            "pixel_size_angstrom": pixel_size_angstrom,
            "frames": frames,
            "seeds": list(seeds),
        },
        "auc_test_default_weights": auc(default_test),
        "auc_test_learned_weights": auc(learned_test),
        "auc_train_start": learned.start_auc,
        "auc_train_learned": learned.auc,
        "labels": learned.n_labels,
        "learned_weights": dataclasses.asdict(learned.weights),
        "convergence_best_auc_per_trial": [round(v, 4) for v in learned.convergence],
        "hyperscore_by_cause_test": {
            k: round(statistics.fmean(v), 2) for k, v in sorted(per_cause.items())
        },
        "obligations": _obligations(both),
        "delta_repro_population": population,
        "delta_repro_spearman_vs_estimate_error_sessions": rho,
        "delta_repro_pairs": len(pairs),
        "meta": _meta_after_change(test),
        "test_exposures": [
            {
                "exposure_id": s.subject,
                "cause": item["cause"] or "good",
                "hyperscore_learned": None if s.score is None else round(s.score.hyperscore, 2),
                **{k: v for k, v in dataclasses.asdict(s.components).items() if v is not None},
                "n_particles": s.n_particles,
            }
            for item, s in zip(test, learned_test, strict=True)
        ],
        "repro_rows": [
            {
                "exposure_id": i["record"].exposure_id,
                "defocus_error_angstrom": i["defocus_error_angstrom"],
                "ctf_error_angstrom": i["ctf_error_angstrom"],
                "estimate_error": i["estimate_error"],
                "defocus_sigma_angstrom": None
                if i["record"].ctf is None
                else i["record"].ctf.defocus_sigma_angstrom,
                **(i["record"].repro.model_dump() if i["record"].repro is not None else {}),
            }
            for i in both
        ],
        "scoring_ms_per_exposure": score_ms,
        "triage_ms_per_4096px_micrograph": triage_ms,
        "scoring_with_triage_ms_per_exposure": score_ms + triage_ms,
        "repro_refits_ms_per_exposure": statistics.median(repro_ms) if repro_ms else None,
        "processing_s": processed_s,
    }
    report["summary"] = {
        k: report[k]
        for k in (
            "auc_test_default_weights",
            "auc_test_learned_weights",
            "auc_train_learned",
            "hyperscore_by_cause_test",
            "delta_repro_spearman_vs_estimate_error_sessions",
            "scoring_ms_per_exposure",
            "triage_ms_per_4096px_micrograph",
            "scoring_with_triage_ms_per_exposure",
            "repro_refits_ms_per_exposure",
        )
    }
    report["summary"]["delta_repro_population"] = population_summary
    report["summary"]["obligations_caught"] = report["obligations"]["caught"]
    report["summary"]["clean_obligation_failures"] = len(report["obligations"]["clean_failures"])
    report["summary"]["meta"] = {
        k: v for k, v in report["meta"].items() if k != "meta_after_change"
    }
    return report
