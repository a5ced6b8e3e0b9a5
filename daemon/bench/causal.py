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

import dataclasses
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["run_causal_bench"]


def _learning(seed: int) -> dict[str, Any]:
    from models.causal import SessionCausalModel
    from models.causal.attribution import best_factors
    from models.causal.synthetic import TRUE_WEIGHTS, draw_synthetic_session

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
        "spearman": _spearman(order, true_order),
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


def _spearman(order: list[str], truth: list[str]) -> float:
    """Spearman's rank correlation of two orderings of the same names."""
    rank = {name: i for i, name in enumerate(truth)}
    d = np.array([i - rank[name] for i, name in enumerate(order)], dtype=float)
    n = len(order)
    return float(1.0 - 6.0 * float(d @ d) / (n * (n * n - 1)))


def _update_cost(n: int) -> dict[str, float]:
    from models.causal import SessionCausalModel
    from models.causal.bench import update_cost_per_exposure
    from models.causal.synthetic import draw_synthetic_session

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


@dataclasses.dataclass
class _Fitted:
    """One image-simulated exposure after its CTF fit, as the pipeline would hand it on."""

    index: int
    micrograph: Any  # torch.Tensor (the still frame)
    clean: Any  # torch.Tensor (the clean phase image)
    ctf: Any  # models.restoration.CtfParameters
    inputs: Any  # models.records.CausalInputs (no SSNR B yet)
    params: Any  # models.simulate.exposure.ExposureParameters (as simulated)


def _simulate_and_fit(params: Any) -> tuple[Any, Any, Any]:
    """Simulate one still exposure and fit its CTF: ``(simulation, micrograph, estimate)``."""
    import torch

    from daemon.bench._common import CS_MM, VOLTAGE_KV, Q
    from models.ctf_estimation import estimate_ctf
    from models.simulate.exposure import simulate_exposure
    from models.simulate.specimen import phantom_specimen

    sim = simulate_exposure(params, specimen=phantom_specimen())
    micrograph = torch.from_numpy(sim.frames[0].astype(np.float32))
    estimate = estimate_ctf(
        micrograph,
        pixel_size_angstrom=1.0,
        voltage_kv=VOLTAGE_KV,
        spherical_aberration_mm=CS_MM,
        amplitude_contrast=Q,
        estimate_ice=False,
    )
    return sim, micrograph, estimate


def _fitted_session(
    n: int, seed: int, *, size: int, dose: float | None = None, **session: Any
) -> Iterator[_Fitted]:
    """The simulator's session plan (``session`` overrides its settings), one still frame per
    exposure with the plan's envelope B-factor (no motion, so the factors' effects reach the
    image only through the simulator's own physics), each CTF-fitted; unsupported fits skipped.
    """
    import torch

    from config import SimulationSettings
    from daemon.bench._common import CS_MM, VOLTAGE_KV, Q
    from models.records import CausalInputs
    from models.restoration import CtfParameters
    from models.simulate.exposure import ExposureParameters
    from models.simulate.session import draw_session

    sim_settings = SimulationSettings(size_px=size, n_frames=1, **session)
    base = ExposureParameters(size_px=size, n_frames=1, pixel_size_angstrom=1.0)
    plans = draw_session(
        sim_settings, n_exposures=n, base=base, particle_diameter_angstrom=120.0, seed=seed
    )
    for plan in plans:
        p = plan.parameters
        scale = 1.0 if dose is None else dose / sim_settings.dose_e_per_a2
        params = dataclasses.replace(
            p,
            dose_e_per_a2=scale * p.dose_e_per_a2,
            drift_total_px=0.0,
            drift_jitter_px=0.0,
            local_motion_px=0.0,
            intra_frame_blur=False,
        )
        sim, micrograph, estimate = _simulate_and_fit(params)
        if not estimate.supported or estimate.fit_resolution_angstrom is None:
            continue
        shift = math.hypot(*plan.beam_shift_um)
        yield _Fitted(
            index=plan.index,
            params=params,
            micrograph=micrograph,
            clean=torch.from_numpy(sim.clean_phase),
            ctf=CtfParameters.from_estimate(
                estimate, voltage_kv=VOLTAGE_KV, spherical_aberration_mm=CS_MM, amplitude_contrast=Q
            ),
            inputs=CausalInputs(
                ice_thickness_nm=p.ice_thickness_nm,
                dose_e_per_a2=params.dose_e_per_a2,
                total_drift_px=p.drift_total_px,
                defocus_um=0.5e-4 * (p.defocus_u_angstrom + p.defocus_v_angstrom),
                astigmatism_angstrom=abs(p.defocus_u_angstrom - p.defocus_v_angstrom),
                image_shift_um=shift,
                beam_tilt_mrad=0.25 * shift,
                n_particles=p.n_particles,
                fit_resolution_angstrom=estimate.fit_resolution_angstrom,
            ),
        )


#: Image-simulated sessions in which one factor varies far more than usual (whether it then
#: dominates is for the interventions to say: in the simulator, defocus does in both).
_SCENARIOS: dict[str, dict[str, Any]] = {
    # drift varies a lot (and reaches the image as the simulator's envelope B); ice nearly fixed
    "drift": {
        "drift_median_px": 6.0,
        "drift_after_stage_move_px": 40.0,
        "ice_square_log_sd": 0.03,
        "ice_hole_log_sd": 0.02,
    },
    # ice varies a lot from square to square; drift small and steady
    "ice_thickness": {
        "ice_square_log_sd": 0.6,
        "ice_hole_log_sd": 0.15,
        "drift_median_px": 1.0,
        "drift_after_stage_move_px": 0.0,
    },
}


def _intervene(fitted: _Fitted, cause: str, best: dict[str, Any], settings: Any) -> Any:
    """The exposure's simulation parameters with ``cause`` set to the session's best value.

    The simulator's envelope B carries drift and ice (``bfactor_per_drift_px``,
    ``bfactor_per_ice_nm``), so those interventions lower it by their part; the seed is kept, so
    the noise and the particles are the same draw wherever the intervention leaves them alone.
    """
    p, x = fitted.params, fitted.inputs
    mean_defocus = 0.5 * (p.defocus_u_angstrom + p.defocus_v_angstrom)
    half_astig = 0.5 * (p.defocus_u_angstrom - p.defocus_v_angstrom)
    if cause == "ice_thickness":
        return dataclasses.replace(
            p,
            ice_thickness_nm=best[cause],
            bfactor_angstrom2=p.bfactor_angstrom2
            - settings.bfactor_per_ice_nm * (p.ice_thickness_nm - best[cause]),
        )
    if cause == "drift":
        return dataclasses.replace(
            p,
            bfactor_angstrom2=p.bfactor_angstrom2
            - settings.bfactor_per_drift_px * (x.total_drift_px - best[cause]),
        )
    if cause == "defocus":
        shift = 1e4 * best[cause] - mean_defocus
        return dataclasses.replace(
            p,
            defocus_u_angstrom=p.defocus_u_angstrom + shift,
            defocus_v_angstrom=p.defocus_v_angstrom + shift,
        )
    if cause == "astigmatism":
        sign = 1.0 if half_astig >= 0 else -1.0
        return dataclasses.replace(
            p,
            defocus_u_angstrom=mean_defocus + sign * best[cause] / 2,
            defocus_v_angstrom=mean_defocus - sign * best[cause] / 2,
        )
    if cause == "dose":
        return dataclasses.replace(p, dose_e_per_a2=best[cause])
    if cause == "particle_density":
        return dataclasses.replace(p, n_particles=int(best[cause]))
    if cause == "beam_tilt":
        return dataclasses.replace(
            p, beam_tilt_x_mrad=best[cause][0], beam_tilt_y_mrad=best[cause][1]
        )
    raise ValueError(f"unknown cause {cause!r}")


def _image_attribution(
    cause: str, *, size: int, n: int, seed: int, n_counterfactual: int = 16
) -> dict[str, Any]:
    """One scenario's CTF-fitted exposures fed to the live model, against the truth by
    intervention: for ``n_counterfactual`` exposures spread over the session, each factor in
    turn is set to the session's best value, the exposure simulated again (same seed) and
    refitted; the fit resolution it gains is that cause's true share. ``redraw_*``: the same
    exposures drawn with another seed and nothing changed, the noise floor of those shares."""
    from config import SimulationSettings
    from models.causal import SessionCausalModel
    from models.causal.attribution import attribute, best_factors
    from models.causal.graph import FACTORS, design_matrix
    from models.causal.inputs import measurements

    settings = SimulationSettings(size_px=size, n_frames=1, **_SCENARIOS[cause])
    fitted = list(_fitted_session(n, seed, size=size, **_SCENARIOS[cause]))
    if len(fitted) < 10:
        return {"scenario": cause, "n_exposures": len(fitted)}
    model = SessionCausalModel()
    for f in fitted:
        update = model.observe(f"e{f.index}", f.inputs)
    names = [f.name for f in FACTORS]
    xs = np.stack([design_matrix(measurements(f.inputs))[0] for f in fitted])
    d = np.array([f.inputs.fit_resolution_angstrom for f in fitted])
    tilts = [(f.params.beam_tilt_x_mrad, f.params.beam_tilt_y_mrad) for f in fitted]
    best = {
        "ice_thickness": min(f.inputs.ice_thickness_nm for f in fitted),
        "drift": min(f.inputs.total_drift_px for f in fitted),
        "defocus": min(f.inputs.defocus_um for f in fitted),
        "astigmatism": min(f.inputs.astigmatism_angstrom for f in fitted),
        "dose": max(f.inputs.dose_e_per_a2 for f in fitted),
        "particle_density": max(f.inputs.n_particles for f in fitted),
        "beam_tilt": min(tilts, key=lambda t: math.hypot(*t)),
    }
    picked = np.unique(np.linspace(0, len(fitted) - 1, n_counterfactual).round().astype(int))
    true = np.full((picked.size, len(names)), np.nan)
    # the noise floor: the same exposure drawn again (another seed), nothing changed
    redrawn = []
    for i in picked:
        again = dataclasses.replace(fitted[i].params, seed=fitted[i].params.seed + 1)
        estimate = _simulate_and_fit(again)[2]
        if estimate.supported and estimate.fit_resolution_angstrom is not None:
            redrawn.append(d[i] - estimate.fit_resolution_angstrom)
    for row, i in enumerate(picked):
        for k, name in enumerate(names):
            _, _, estimate = _simulate_and_fit(_intervene(fitted[i], name, best, settings))
            if estimate.supported and estimate.fit_resolution_angstrom is not None:
                true[row, k] = d[i] - estimate.fit_resolution_angstrom
    learned = model.learner.model
    x_best = best_factors(xs, learned.mean)
    d_best = math.sqrt(max(float(x_best @ learned.mean), 1.0))
    shares = attribute(learned, xs[picked], x_best).share / (d[picked] + d_best)[:, None]
    true_mean = np.nanmean(true, axis=0)
    model_mean = shares.mean(axis=0)
    true_order = [names[j] for j in np.argsort(-true_mean)]
    model_order = [names[j] for j in np.argsort(-model_mean)]
    rows_ok = ~np.isnan(true).any(axis=1)
    dominant_true = np.argmax(true[rows_ok], axis=1)
    dominant_model = np.argmax(shares[rows_ok], axis=1)
    return {
        "scenario": cause,
        "size": size,
        "seed": seed,
        "n_exposures": len(fitted),
        "n_counterfactual_exposures": int(picked.size),
        "true_mean_share_angstrom": {
            n_: round(float(v), 3) for n_, v in zip(names, true_mean, strict=True)
        },
        "model_mean_share_angstrom": {
            n_: round(float(v), 3) for n_, v in zip(names, model_mean, strict=True)
        },
        "redraw_mean_angstrom": round(float(np.mean(redrawn)), 3) if redrawn else None,
        "redraw_sd_angstrom": round(float(np.std(redrawn)), 3) if redrawn else None,
        "true_top_cause": true_order[0],
        "model_top_cause": model_order[0],
        "session_top_cause": update.ranking[0].cause,
        "top_matches": true_order[0] == model_order[0],
        "spearman": _spearman(model_order, true_order),
        "dominant_agreement": float(np.mean(dominant_true == dominant_model))
        if rows_ok.any()
        else None,
        "regime_changes": update.regime,
    }


def _wiener_session(size: int, n: int, dose: float, seed: int, z: float = 2.0) -> dict[str, Any]:
    from models.causal import SessionCausalModel, prior_bfactor
    from models.restoration import (
        fourier_ring_correlation,
        frc_resolution_angstrom,
        spectral_snr_from_fit,
        wiener_filter,
        with_bfactor,
    )

    model = SessionCausalModel()
    rows = []
    for fitted in _fitted_session(n, seed, size=size, dose=dose):
        contrast = fitted.micrograph.mean() - fitted.micrograph
        clean, ctf = fitted.clean, fitted.ctf
        own = spectral_snr_from_fit(contrast, pixel_size_angstrom=1.0, **ctf.kwargs())
        inputs = fitted.inputs.model_copy(update={"ssnr_bfactor_angstrom2": own.bfactor_angstrom2})
        prior = model.envelope_prior()
        bounds = prior_bfactor(prior, inputs, min_exposures=20, z=z)
        model.observe(f"e{fitted.index}", inputs)
        if bounds is None:
            continue
        used = max(own.bfactor_angstrom2, bounds[0])  # as actors/_restore.py does
        row: dict[str, Any] = {
            "index": fitted.index,
            "fit_bfactor_angstrom2": round(own.bfactor_angstrom2, 1),
            "prior_low_angstrom2": round(bounds[0], 1),
            "prior_high_angstrom2": round(bounds[1], 1),
            "pulled": used != own.bfactor_angstrom2,
        }
        for name, ssnr in (("fit", own), ("prior", with_bfactor(own, used))):
            out = wiener_filter(contrast, pixel_size_angstrom=1.0, ssnr=ssnr, **ctf.kwargs())
            frc = fourier_ring_correlation(out, clean)
            row[f"{name}_frc05_angstrom"] = round(
                frc_resolution_angstrom(frc, pixel_size_angstrom=1.0), 3
            )
            row[f"{name}_correlation"] = round(
                float(np.corrcoef(out.flatten().numpy(), clean.flatten().numpy())[0, 1]), 4
            )
        rows.append(row)
    pulled = [r for r in rows if r["pulled"]]
    gain = np.array([r["prior_correlation"] - r["fit_correlation"] for r in rows])
    pulled_gain = np.array([r["prior_correlation"] - r["fit_correlation"] for r in pulled])
    frc_change = np.array([r["prior_frc05_angstrom"] - r["fit_frc05_angstrom"] for r in rows])
    return {
        "dose_e_per_a2": dose,
        "size": size,
        "seed": seed,
        "n_compared": len(rows),
        "n_pulled": len(pulled),
        "mean_correlation_fit": float(np.mean([r["fit_correlation"] for r in rows]))
        if rows
        else None,
        "mean_correlation_prior": float(np.mean([r["prior_correlation"] for r in rows]))
        if rows
        else None,
        "pulled_improved": int(np.sum(pulled_gain > 0)),
        "pulled_mean_correlation_gain": float(pulled_gain.mean()) if pulled else None,
        "worst_correlation_change": float(gain.min()) if rows else None,
        "max_abs_frc05_change_angstrom": float(np.abs(frc_change).max()) if rows else None,
        "exposures": rows,
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
            _image_attribution(
                cause, size=image_size, n=image_n, seed=seeds[0], n_counterfactual=12
            )
            for cause in _SCENARIOS
        ]
    if wiener_size:
        report["wiener"] = [
            _wiener_session(wiener_size, wiener_n, dose, seed=seeds[0]) for dose in wiener_doses
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
