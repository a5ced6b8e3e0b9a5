"""The causal benchmark's image-simulated sessions (see :mod:`daemon.bench.causal`).

The simulator's session plan, one still frame per exposure at 1 A/px with the plan's envelope
B-factor (no motion), each CTF-fitted as the pipeline would (:func:`image_attribution`: the live
model against the truth by intervention; :func:`wiener_session`: the Wiener filter with the
exposure's own spectral SNR and with the model's prior).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from causalscope.daemon.bench._common import ctf_parameters, estimate_still, spearman

__all__ = ["SCENARIOS", "image_attribution", "wiener_session"]


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

    from causalscope.models.simulate.exposure import simulate_exposure
    from causalscope.models.simulate.specimen import phantom_specimen

    sim = simulate_exposure(params, specimen=phantom_specimen())
    micrograph = torch.from_numpy(sim.frames[0].astype(np.float32))
    return sim, micrograph, estimate_still(micrograph, estimate_ice=False)


def _fitted_session(
    n: int, seed: int, *, size: int, dose: float | None = None, **session: Any
) -> Iterator[_Fitted]:
    """The simulator's session plan (``session`` overrides its settings), one still frame per
    exposure with the plan's envelope B-factor (no motion, so the factors' effects reach the
    image only through the simulator's own physics), each CTF-fitted; unsupported fits skipped.
    """
    import torch

    from causalscope.config import SimulationSettings
    from causalscope.models.records import CausalInputs
    from causalscope.models.simulate.exposure import ExposureParameters
    from causalscope.models.simulate.session import draw_session

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
            ctf=ctf_parameters(estimate),
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
SCENARIOS: dict[str, dict[str, Any]] = {
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


def image_attribution(
    cause: str, *, size: int, n: int, seed: int, n_counterfactual: int = 16
) -> dict[str, Any]:
    """One scenario's CTF-fitted exposures fed to the live model, against the truth by
    intervention: for ``n_counterfactual`` exposures spread over the session, each factor in
    turn is set to the session's best value, the exposure simulated again (same seed) and
    refitted; the fit resolution it gains is that cause's true share. ``redraw_*``: the same
    exposures drawn with another seed and nothing changed, the noise floor of those shares."""
    from causalscope.config import SimulationSettings
    from causalscope.models.causal import SessionCausalModel
    from causalscope.models.causal.attribution import attribute, best_factors
    from causalscope.models.causal.graph import FACTORS, design_matrix
    from causalscope.models.causal.inputs import measurements

    settings = SimulationSettings(size_px=size, n_frames=1, **SCENARIOS[cause])
    fitted = list(_fitted_session(n, seed, size=size, **SCENARIOS[cause]))
    if len(fitted) < 10:
        return {"scenario": cause, "n_exposures": len(fitted)}
    model = SessionCausalModel()
    for f in fitted:
        update = model.observe(f"e{f.index}", f.inputs)
    names = [f.name for f in FACTORS]
    xs = np.stack([design_matrix(measurements(f.inputs))[0] for f in fitted])
    d = np.array([f.inputs.fit_resolution_angstrom for f in fitted])
    picked = np.unique(np.linspace(0, len(fitted) - 1, n_counterfactual).round().astype(int))
    true, redrawn = _true_shares(fitted, picked, names, d, settings)
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
        "spearman": spearman(model_order, true_order),
        "dominant_agreement": float(np.mean(dominant_true == dominant_model))
        if rows_ok.any()
        else None,
        "regime_changes": update.regime,
    }


def _true_shares(
    fitted: list[_Fitted], picked: np.ndarray, names: list[str], d: np.ndarray, settings: Any
) -> tuple[np.ndarray, list[float]]:
    """``(true, redrawn)``: the fit resolution (A) each ``picked`` exposure gains when each
    cause in turn is set to the session's best value (``(picked, causes)``, NaN where the
    refit is unsupported), and what it gains drawn again with another seed (the noise floor)."""
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
    return true, redrawn


def wiener_session(size: int, n: int, dose: float, seed: int, z: float = 2.0) -> dict[str, Any]:
    from causalscope.models.causal import SessionCausalModel, prior_bfactor
    from causalscope.models.restoration import (
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
