"""Causal-model benchmark: recovery against a known graph, cost per update, and the Wiener prior.

``learning`` (synthetic sessions drawn from the known linear-Gaussian model of
:mod:`models.causal.synthetic`, ``seeds`` of them, 400 exposures each; one with thicker ice and a
doubled ice weight from exposure 300 on):

- 95 % and 68 % posterior-interval coverage of every edge weight;
- the dominant cause of each bad exposure (top 10 % of the true loss, second half of the
  session) against the truth;
- the session's ranking (mean share in Angstrom, as the model reports it) against the true
  ranking: top cause, top three, the whole order, and every pair the model orders against the
  truth, which counts as beyond its uncertainty when the true gap exceeds 2 posterior sds;
- the exposure at which every observed weight has converged (sd within its tolerance), with all
  7 causes active and with 5 (dose and particle density without effect, the issue's case), and
  the delay from the regime change to its detection, and false alarms without a change;
- the wall time of one full update (:meth:`SessionCausalModel.observe`: the conjugate update,
  the exposure's attribution and, every ten exposures, the session's ranking) over 10,000
  exposures, and of the bare conjugate update.

``wiener`` (image-simulated sessions: the simulator's session plan, one still frame per
exposure at ``size`` px and 1 A/px, the plan's envelope B-factor from drift and ice, the
exposure's own CTF fit): exposure by exposure the envelope model learns from each exposure's own
spectral-SNR fit; from the 20th exposure on, each micrograph is Wiener-filtered twice, with its
own fit's B and with that B raised to the model's lower bound for its factors where it falls
below (:func:`models.causal.prior_bfactor`; only the linear part refitted), and both are
compared with the clean phase image: real-space correlation and the FRC = 0.5 resolution (see
:mod:`daemon.bench.restoration` for why the FRC barely moves with a filter that is nearly
constant on each ring). Factors are the plan's (ice, drift, defocus, astigmatism, image shift),
so the comparison isolates the SNR model from the CTF fit's own errors.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from causalscope.daemon.bench._common import spearman
from causalscope.daemon.bench.causal_images import SCENARIOS, image_attribution, wiener_session

__all__ = ["run_causal_bench"]


def _learning(seed: int) -> dict[str, Any]:
    from causalscope.models.causal import SessionCausalModel
    from causalscope.models.causal.attribution import best_factors
    from causalscope.models.causal.synthetic import TRUE_WEIGHTS, draw_synthetic_session

    s = draw_synthetic_session(n_exposures=400, seed=seed)
    model = SessionCausalModel()
    updates = [model.observe(f"e{i}", s.inputs(i)) for i in range(400)]
    learned = model.learner.model
    w = s.true_weights[0]
    lo95, hi95 = learned.interval(0.95)
    lo68, hi68 = learned.interval(0.68)
    # live, an exposure is held against the best seen so far (the running best)
    running = np.where(
        w >= 0, np.minimum.accumulate(s.x, axis=0), np.maximum.accumulate(s.x, axis=0)
    )
    true_share = ((s.x - running) * w)[:, 1:]
    session_share = ((s.x - best_factors(s.x, w)) * w)[:, 1:]
    loss = true_share.sum(axis=1)
    bad = [i for i in range(200, 400) if loss[i] > np.quantile(loss, 0.9)]
    names = s.names[1:]
    right = sum(updates[i].dominant_cause == names[int(np.argmax(true_share[i]))] for i in bad)
    # the session's ranking as the model reports it: mean share in Angstrom against the best
    x_best = best_factors(s.x, w)
    d_best = math.sqrt(float(x_best @ w))
    true_angstrom = (session_share / (np.sqrt(s.y) + d_best)[:, None]).mean(axis=0)
    true_order = [names[j] for j in np.argsort(-true_angstrom)]
    order = [r.cause for r in updates[-1].ranking]
    # a pair the model orders against the truth is within its uncertainty when the true gap is
    # below 2 sd of the model's posterior for that gap
    post = model.learner.model
    x_best_model = best_factors(s.x, post.mean)
    d_best_model = math.sqrt(max(float(x_best_model @ post.mean), 1.0))
    dx = ((s.x - x_best_model) / (np.sqrt(s.y) + d_best_model)[:, None]).mean(axis=0)
    cov = post.cov()
    unresolved = []
    for a in range(len(order)):
        for b in range(a + 1, len(order)):
            i, j = names.index(order[a]) + 1, names.index(order[b]) + 1
            if true_angstrom[i - 1] <= true_angstrom[j - 1]:
                gap = true_angstrom[j - 1] - true_angstrom[i - 1]
                g = np.zeros(len(dx))
                g[i], g[j] = dx[i], -dx[j]
                var = float(g @ cov @ g)
                unresolved.append(bool(gap < 2.0 * math.sqrt(max(var, 0.0))))
    converged_at = next((u.index for u in updates if u.converged), None)
    # the case: 5 active causes (dose and particle density without effect)
    five = draw_synthetic_session(
        n_exposures=400, seed=seed, weights=dict(TRUE_WEIGHTS, dose=0.0, particle_density=0.0)
    )
    model5 = SessionCausalModel()
    converged5 = next(
        (i + 1 for i in range(400) if model5.observe(f"e{i}", five.inputs(i)).converged), None
    )
    changed = draw_synthetic_session(n_exposures=400, seed=seed, change_at=300)
    detector = SessionCausalModel()
    flags = [detector.observe(f"e{i}", changed.inputs(i)).regime_change for i in range(400)]
    after = [i for i in range(300, 400) if flags[i]]
    return {
        "seed": seed,
        "coverage95": float(np.mean((lo95 <= w) & (w <= hi95))),
        "coverage68": float(np.mean((lo68 <= w) & (w <= hi68))),
        "dominant_correct": int(right),
        "dominant_total": len(bad),
        "top_cause": order[0],
        "true_top_cause": true_order[0],
        "ranking": order,
        "true_ranking": true_order,
        "top3_matches": order[:3] == true_order[:3],
        "spearman": spearman(order, true_order),
        "top_p": updates[-1].ranking[0].p_top,
        "ranking_matches": order == true_order,
        "ranking_swaps": len(unresolved),
        "ranking_swaps_beyond_uncertainty": int(len(unresolved) - sum(unresolved)),
        "converged_at": converged_at,
        "converged_at_5_active": converged5,
        "regime_changes_without_change": len(model.learner.changes),
        "change_detected_after": None if not after else after[0] - 300,
        "false_alarms_before_change": int(sum(flags[:300])),
    }


def _update_cost(n: int) -> dict[str, float]:
    from causalscope.models.causal import SessionCausalModel
    from causalscope.models.causal.bench import update_cost_per_exposure
    from causalscope.models.causal.synthetic import draw_synthetic_session

    s = draw_synthetic_session(n_exposures=n, seed=0)
    rows = [
        s.inputs(i, ssnr_bfactor_angstrom2=100.0 + float(s.measurements["total_drift_px"][i]))
        for i in range(n)
    ]
    model = SessionCausalModel()
    started = time.perf_counter()
    for i, row in enumerate(rows):
        model.observe(f"e{i}", row)
    full = (time.perf_counter() - started) / n
    return {
        "n_exposures": n,
        "observe_ms": 1e3 * full,
        "conjugate_update_ms": 1e3 * update_cost_per_exposure(n),
    }


def run_causal_bench(
    *,
    seeds: list[int],
    update_n: int = 10_000,
    wiener_size: int | None = 512,
    wiener_n: int = 48,
    wiener_doses: tuple[float, ...] = (40.0, 10.0),
    image_n: int = 72,
    image_size: int = 1024,
) -> dict[str, Any]:
    """Run the causal benchmark; returns a JSON-able report.

    ``wiener_size=None`` skips the image-simulated parts (the Wiener comparison and, with
    ``image_n`` exposures per scenario, the attribution on image-simulated sessions)."""
    learning = [_learning(seed) for seed in seeds]
    report: dict[str, Any] = {
        "bench": "causal",
        "learning": learning,
        "update_cost": _update_cost(update_n),
    }
    if wiener_size and image_n:
        report["image_attribution"] = [
            image_attribution(cause, size=image_size, n=image_n, seed=seeds[0], n_counterfactual=12)
            for cause in SCENARIOS
        ]
    if wiener_size:
        report["wiener"] = [
            wiener_session(wiener_size, wiener_n, dose, seed=seeds[0]) for dose in wiener_doses
        ]
    total = sum(r["dominant_total"] for r in learning)
    delays = [r["change_detected_after"] for r in learning]
    summary: dict[str, Any] = {
        "coverage95_mean": float(np.mean([r["coverage95"] for r in learning])),
        "coverage68_mean": float(np.mean([r["coverage68"] for r in learning])),
        "dominant_cause_accuracy": sum(r["dominant_correct"] for r in learning) / max(total, 1),
        "top_cause_matches": sum(r["top_cause"] == r["true_top_cause"] for r in learning),
        "top3_order_matches": sum(r["top3_matches"] for r in learning),
        "full_ranking_matches": sum(r["ranking_matches"] for r in learning),
        "ranking_spearman_min": min(r["spearman"] for r in learning),
        "ranking_swaps_beyond_uncertainty": sum(
            r["ranking_swaps_beyond_uncertainty"] for r in learning
        ),
        "sessions": len(learning),
        "converged_at_max": max((r["converged_at"] or 10**9) for r in learning),
        "converged_at_max_5_active": max((r["converged_at_5_active"] or 10**9) for r in learning),
        "converged_within_200": sum((r["converged_at"] or 10**9) <= 200 for r in learning),
        "converged_within_200_5_active": sum(
            (r["converged_at_5_active"] or 10**9) <= 200 for r in learning
        ),
        "changes_detected_within_20": sum(d is not None and d <= 20 for d in delays),
        "change_detection_delay_max": None if None in delays else max(delays),
        "false_alarms": sum(r["false_alarms_before_change"] for r in learning)
        + sum(r["regime_changes_without_change"] for r in learning),
        "observe_ms_at_10k": report["update_cost"]["observe_ms"],
    }
    for session in report.get("image_attribution", []):
        summary[f"image_{session['scenario']}_scenario"] = {
            k: session.get(k)
            for k in ("true_top_cause", "model_top_cause", "spearman", "dominant_agreement")
        }
    for session in report.get("wiener", []):
        key = f"wiener_dose{session['dose_e_per_a2']:g}"
        summary[key] = {k: v for k, v in session.items() if k not in ("exposures", "size", "seed")}
    report["summary"] = summary
    return report
