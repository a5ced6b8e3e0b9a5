"""The session's causal model as the pipeline runs it: one exposure's inputs at a time.

Sessions are drawn from the known linear-Gaussian model of :mod:`models.causal.synthetic`, so
every report is checked against the truth.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from causalscope.actors.causal import CausalPriorWorker
from causalscope.models.causal import SessionCausalModel, causal_inputs, prior_bfactor
from causalscope.models.causal.attribution import best_factors
from causalscope.models.causal.envelope import ENVELOPE_FACTORS, envelope_row
from causalscope.models.causal.synthetic import SyntheticSession, draw_synthetic_session
from causalscope.models.records import AcquisitionMetadata, CausalInputs, CtfRecord, MotionRecord

#: The envelope model's true weights (A^2 per unit regressor): drift and ice matter.
TRUE_B = {
    "intercept": 90.0,
    "ice_thickness": 40.0,
    "dose": 0.0,
    "drift": 3.0,
    "defocus": 10.0,
    "astigmatism": 0.0,
    "beam_tilt": 0.0,
}


def _inputs(s: SyntheticSession, i: int, *, b_noise: float = 0.0) -> CausalInputs:
    m = {k: float(v[i]) for k, v in s.measurements.items()}
    b = float(envelope_row(m) @ np.array([TRUE_B[n] for n in ENVELOPE_FACTORS])) + b_noise
    return s.inputs(i, ssnr_bfactor_angstrom2=b)


def _run(s: SyntheticSession, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    model = SessionCausalModel()
    return [
        model.observe(f"e{i}", _inputs(s, i, b_noise=float(rng.normal(0, 30.0))))
        for i in range(s.y.size)
    ]


def test_angstrom_shares_and_the_rest_add_up_to_the_observed_loss() -> None:
    s = draw_synthetic_session(n_exposures=300, seed=3)
    updates = _run(s)
    for u in updates[1:]:
        total = sum(x.share_angstrom for x in u.shares)
        assert total == pytest.approx(u.predicted_loss_angstrom, abs=1e-9)
        assert total + u.unexplained_angstrom == pytest.approx(
            u.observed_resolution_angstrom - u.best_resolution_angstrom, abs=1e-9
        )
        assert all(x.sd_angstrom >= 0 for x in u.shares)
    assert [u.index for u in updates] == list(range(1, 301))


def test_dominant_cause_per_exposure_and_session_ranking_match_the_truth() -> None:
    correct = total = 0
    for seed in range(5):
        s = draw_synthetic_session(n_exposures=400, seed=200 + seed)
        updates = _run(s, seed)
        w = s.true_weights[0]
        # live, an exposure is held against the best seen so far (the running best)
        running = np.where(
            w >= 0, np.minimum.accumulate(s.x, axis=0), np.maximum.accumulate(s.x, axis=0)
        )
        true_share = ((s.x - running) * w)[:, 1:]
        loss = true_share.sum(axis=1)
        names = s.names[1:]
        # the bad exposures of the second half (the model has learned by then)
        for i in range(200, 400):
            if loss[i] > np.quantile(loss, 0.9):
                total += 1
                correct += updates[i].dominant_cause == names[int(np.argmax(true_share[i]))]
        last = updates[-1]
        session_share = ((s.x - best_factors(s.x, w)) * w)[:, 1:]
        true_rank = names[int(np.argmax(session_share.mean(axis=0)))]
        assert last.ranking[0].cause == true_rank
        assert last.ranking[0].p_top > 0.9
        assert last.converged
    assert total >= 80
    assert correct / total >= 0.9


def test_a_factor_that_never_varies_is_not_observed_and_does_not_block_convergence() -> None:
    s = draw_synthetic_session(n_exposures=250, seed=5)
    model = SessionCausalModel()
    for i in range(s.y.size):
        inputs = _inputs(s, i).model_copy(update={"beam_tilt_mrad": 0.0})
        update = model.observe(f"e{i}", inputs)
    beam = next(r for r in update.ranking if r.cause == "beam_tilt")
    assert not beam.observed and not beam.converged  # nothing learned: its sd is the prior's
    assert update.converged


def test_a_short_session_ranks_what_varied_so_far() -> None:
    s = draw_synthetic_session(n_exposures=8, seed=2)
    model = SessionCausalModel()
    updates = [model.observe(f"e{i}", s.inputs(i)) for i in range(8)]
    observed = {r.cause for r in updates[-1].ranking if r.observed}
    assert {"drift", "defocus", "ice_thickness"} <= observed
    assert not any(r.observed for r in updates[0].ranking)  # one exposure: nothing varied yet


def test_regime_change_is_reported_at_the_update_that_declares_it() -> None:
    s = draw_synthetic_session(n_exposures=400, seed=7, change_at=300)
    updates = _run(s)
    changes = [u.index - 1 for u in updates if u.regime_change]
    assert changes and 300 <= changes[0] <= 320
    assert updates[-1].regime == len(changes)


def test_a_wild_fit_is_reported_as_not_learned_and_leaves_the_model_as_it_was() -> None:
    s = draw_synthetic_session(n_exposures=120, seed=11)
    model, clean = SessionCausalModel(), SessionCausalModel()
    for i in range(100):
        model.observe(f"e{i}", s.inputs(i))
        clean.observe(f"e{i}", s.inputs(i))
    wild = s.inputs(100).model_copy(update={"fit_resolution_angstrom": 25.0})
    update = model.observe("wild", wild)
    assert not update.learned and not update.regime_change
    assert update.dominant_cause is not None  # still attributed
    np.testing.assert_allclose(model.learner.model.mean, clean.learner.model.mean)
    assert model.observe("e101", s.inputs(101)).learned


def test_envelope_prior_recovers_the_b_factor_model_and_gates_its_use() -> None:
    s = draw_synthetic_session(n_exposures=300, seed=9)
    updates = _run(s)
    prior = updates[-1].envelope
    assert prior is not None and prior.n_exposures == 300
    # predicted B at fresh factors within 3 sd of the truth, and sure to a few A^2
    fresh = draw_synthetic_session(n_exposures=20, seed=10)
    for i in range(20):
        inputs = _inputs(fresh, i)
        b, sd = prior.predict(
            {
                "ice_thickness_nm": inputs.ice_thickness_nm,
                "dose_e_per_a2": inputs.dose_e_per_a2,
                "total_drift_px": inputs.total_drift_px,
                "defocus_um": inputs.defocus_um,
                "astigmatism_angstrom": inputs.astigmatism_angstrom,
                "beam_tilt_mrad": inputs.beam_tilt_mrad,
            }
        )
        assert sd < 15.0
        assert abs(b - inputs.ssnr_bfactor_angstrom2) < 3 * sd + 1e-6
    # the gate: too few exposures, or too unsure, and the exposure keeps its own fit
    inputs = _inputs(fresh, 0)
    assert prior_bfactor(prior, inputs, min_exposures=301, z=2.0) is None
    bounds = prior_bfactor(prior, inputs, min_exposures=20, z=2.0)
    assert bounds is not None
    b, sd = prior.predict_inputs(inputs)
    # the scatter of the fits around the model is learned: the b_noise of 30 A^2 above
    assert prior.residual_sd == pytest.approx(30.0, rel=0.2)
    half = 2.0 * math.hypot(sd, prior.residual_sd)
    assert bounds == pytest.approx((b - half, b + half))
    assert bounds[0] < inputs.ssnr_bfactor_angstrom2 < bounds[1]  # a good fit stays as it is
    assert updates[0].envelope is not None and updates[0].envelope.n_exposures == 1


def test_replay_rebuilds_the_same_model_exactly() -> None:
    s = draw_synthetic_session(n_exposures=120, seed=11)
    rows = [(f"e{i}", _inputs(s, i)) for i in range(120)]
    live = CausalPriorWorker()
    live_updates = [live.observe(eid, inputs) for eid, inputs in rows]
    replayed = CausalPriorWorker().replay(rows)
    assert [u.to_dict() for u in replayed] == [u.to_dict() for u in live_updates]
    assert replayed[-1].envelope == live_updates[-1].envelope


def test_inputs_from_records_and_what_they_need() -> None:
    ctf = CtfRecord(
        defocus_u_angstrom=15_100.0,
        defocus_v_angstrom=14_900.0,
        defocus_angle_deg=30.0,
        fit_resolution_angstrom=4.2,
        figure_of_merit=0.3,
        ice_thickness_nm=35.0,
        search_defocus_min_um=0.3,
        search_defocus_max_um=5.0,
    )
    motion = MotionRecord(
        shifts_px=[[0.0, 0.0], [1.0, 0.0]],
        accumulated_motion_total_angstrom=1.0,
        accumulated_motion_early_angstrom=0.5,
        accumulated_motion_late_angstrom=0.5,
        total_drift_px=1.0,
        max_frame_shift_px=1.0,
    )
    metadata = AcquisitionMetadata(source_path="a.xml", source_format="epu", image_shift=(3.0, 4.0))
    inputs = causal_inputs(
        ctf=ctf,
        motion=motion,
        dose_e_per_a2=40.0,
        metadata=metadata,
        n_particles=12,
        ssnr_bfactor_angstrom2=80.0,
        beam_tilt_mrad_per_um=0.25,
    )
    assert inputs is not None
    assert inputs.defocus_um == pytest.approx(1.5)
    assert inputs.astigmatism_angstrom == pytest.approx(200.0)
    assert inputs.image_shift_um == pytest.approx(5.0)
    assert inputs.beam_tilt_mrad == pytest.approx(1.25)
    common = {"motion": motion, "metadata": None, "n_particles": None}
    kw = {"ssnr_bfactor_angstrom2": None, "beam_tilt_mrad_per_um": 0.25}
    assert causal_inputs(ctf=ctf, dose_e_per_a2=None, **common, **kw) is None
    unsupported = ctf.model_copy(update={"supported": False})
    assert causal_inputs(ctf=unsupported, dose_e_per_a2=40.0, **common, **kw) is None
    no_ice = ctf.model_copy(update={"ice_thickness_nm": None})
    assert causal_inputs(ctf=no_ice, dose_e_per_a2=40.0, **common, **kw) is None
    plain = causal_inputs(ctf=ctf, dose_e_per_a2=40.0, **common, **kw)
    assert plain is not None and plain.beam_tilt_mrad == 0.0 and plain.n_particles == 0
    with pytest.raises(ValueError, match="fit_resolution_angstrom"):
        SessionCausalModel().observe("x", plain.model_copy(update={"fit_resolution_angstrom": 0.0}))
