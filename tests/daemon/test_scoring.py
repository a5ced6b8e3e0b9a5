"""The live scores in a real session file: stored with their obligations, alerts for failed
ones, and exactly once across a kill between a commit and its score."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import duckdb
import numpy as np
import pytest

from causalscope.actors._evaluation_results import EvaluationUpdate, ForecastUpdate, MapUpdate
from causalscope.config import ScoringSettings
from causalscope.daemon.alerts import Alert
from causalscope.daemon.scoring import ScoreKeeper
from causalscope.daemon.store import SessionStore
from causalscope.models.records import ExposureRecord, PickingRecord
from tests.daemon.store._records import make_record


def _record(exposure_id: str, *, n: int = 100, fit: float = 4.0) -> ExposureRecord:
    record = make_record(exposure_id, fit_resolution_angstrom=fit)
    picks = [[100.0 + 200.0 * (i % 10), 100.0 + 200.0 * (i // 10)] for i in range(n)]
    picking = PickingRecord(
        n_particles=n, particle_diameter_angstrom=120.0, picks_xy_px=picks, scores=[1.0] * n
    )
    return record.model_copy(update={"picking": picking})


def _session(tmp_path: Path, count: int) -> tuple[Path, list[ExposureRecord]]:
    path = tmp_path / "S.duckdb"
    records = [_record(f"e{i:02d}", n=80 + 7 * (i % 5)) for i in range(count)]
    with SessionStore(path) as store:
        for record in records:
            store.commit_exposure(record, params_hash="p")
    return path, records


def test_scores_and_obligations_are_stored_and_a_failed_one_is_an_alert(tmp_path: Path) -> None:
    path, _ = _session(tmp_path, 3)
    bad = _record("nyq", fit=1.2)  # 0.83 A/px: Nyquist 1.66 A
    alerts: list[Alert] = []
    with SessionStore(path) as store:
        store.commit_exposure(bad, params_hash="p")
        keeper = ScoreKeeper(ScoringSettings(), store, alerts.append)  # scores all four
        assert keeper.exposure(bad) is not None  # a re-commit replaces, never adds
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "SELECT subject, logic, v, hyperscore, failed_obligations FROM scores ORDER BY seq"
        ).fetchall()
        failed = con.execute(
            "SELECT name, counterexample FROM obligations WHERE NOT holds"
        ).fetchall()
    assert sorted(r[0] for r in rows) == ["e00", "e01", "e02", "nyq"]
    by_subject = {r[0]: r for r in rows}
    assert by_subject["e00"][1] == 1.0 and by_subject["nyq"][1] < 1.0
    assert 100 < by_subject["nyq"][3] < by_subject["e00"][3] <= 200
    assert [name for name, _ in failed] == ["fit_within_nyquist"]
    counterexample = json.loads(failed[0][1])
    assert counterexample["fit_resolution_angstrom"] == pytest.approx(1.2)
    assert counterexample["nyquist_angstrom"] == pytest.approx(1.66)
    # scored twice (at the restart, then again): one alert until the obligation holds again
    assert [a.code for a in alerts] == ["obligation_fit_within_nyquist"]
    assert "beyond Nyquist (1.66 A" in alerts[0].message and "pixel size" in alerts[0].advice


def test_a_kill_between_commit_and_score_neither_loses_nor_repeats_a_score(
    tmp_path: Path,
) -> None:
    settings = ScoringSettings(meta_window=6)
    path, _ = _session(tmp_path, 9)
    # uninterrupted: every record scored in commit order
    with SessionStore(path) as store:
        whole = [ScoreKeeper(settings, store, lambda a: None)]
    with duckdb.connect(str(path), read_only=True) as con:
        expected = con.execute("SELECT subject, v, meta FROM scores ORDER BY seq").fetchall()
        con.close()
    assert whole and len(expected) == 9 and expected[-1][2] is not None
    # killed after scoring five: the other four are scored at the restart, once each
    with SessionStore(path) as store:
        store._con.execute("DELETE FROM scores WHERE subject >= 'e05'")
        store._con.execute("DELETE FROM obligations WHERE subject >= 'e05'")
        ScoreKeeper(settings, store, lambda a: None)
        ScoreKeeper(settings, store, lambda a: None)  # a second restart scores nothing new
    with duckdb.connect(str(path), read_only=True) as con:
        again = con.execute("SELECT subject, v, meta FROM scores ORDER BY seq").fetchall()
        (obligations,) = con.execute("SELECT count(*) FROM obligations").fetchone()  # type: ignore[misc]
    assert [r[0] for r in again] == [r[0] for r in expected]
    for got, want in zip(again, expected, strict=True):
        assert got[1] == pytest.approx(want[1]) and got[2] == pytest.approx(want[2])
    assert obligations == 9 * 3  # fit, ice and spacing: what these records let be stated


def _map_update(
    forecast: ForecastUpdate | None, *, resolution: float = 4.2
) -> tuple[MapUpdate, EvaluationUpdate]:
    """Update 2 with a map of 5,000 particles at 2 A/px, fitted to ``resolution``."""
    map_update = MapUpdate(
        particles=5000,
        symmetry="C1",
        pixel_size_angstrom=2.0,
        resolution_angstrom=resolution,
        resolution_unmasked_angstrom=4.5,
        resolution_fsc_05_angstrom=5.0,
        fsc_masked=(1.0, 0.5),
        fsc_unmasked=(1.0, 0.4),
        half_map_1="h1.mrc",
        half_map_2="h2.mrc",
        map_path="m.mrc",
        fsc_star_path="f.star",
        coverage=0.9,
        largest_gap_deg=10.0,
    )
    update = EvaluationUpdate(
        version=2, particles=5000, exposures=40, seconds=1.0, class_set=None, map=map_update,
        forecast=forecast,
    )  # fmt: skip
    return map_update, update


def test_a_reconstruction_update_is_scored(tmp_path: Path) -> None:
    _, update = _map_update(None, resolution=3.2)  # beyond the map's Nyquist of 4 A
    alerts: list[Alert] = []
    with SessionStore(tmp_path / "S.duckdb") as store:
        keeper = ScoreKeeper(ScoringSettings(), store, alerts.append)
        scored = keeper.reconstruction(update)
    assert scored is not None and scored.components.logic == 0.0
    assert alerts[0].code == "obligation_map_within_nyquist"
    assert "reconstruction 2" in alerts[0].message


def test_labels_train_the_weights_which_are_stored_and_used_after_a_restart(
    tmp_path: Path,
) -> None:
    settings = ScoringSettings(learn_min_labels=12, learn_every=4, learn_trials=30)
    path = tmp_path / "S.duckdb"
    # good exposures fit to 3.5 A, bad ones to 9 A: ImpactFore tells them apart, LogicScore
    # (all obligations hold) does not
    records = [_record(f"e{i:02d}", fit=3.5 if i % 2 else 9.0) for i in range(16)]
    with SessionStore(path) as store:
        keeper = ScoreKeeper(settings, store, lambda a: None)
        for i, record in enumerate(records):
            store.commit_exposure(record, params_hash="p")
            keeper.exposure(record)
            store.add_label(record.exposure_id, "accept" if i % 2 else "reject")
            learned = keeper.labelled()
            if i + 1 < 12:
                assert learned is None  # too few labels
            elif i + 1 == 12:
                assert learned is not None and learned.n_labels == 12
                assert learned.auc == 1.0 and learned.auc >= learned.start_auc
        learned_weights = keeper.scorer.weights
        assert sum(learned_weights.as_tuple()) == pytest.approx(1.0)
    with duckdb.connect(str(path), read_only=True) as con:
        versions = con.execute("SELECT version, n_labels FROM score_weights").fetchall()
        (event,) = con.execute("SELECT message FROM events WHERE kind = 'scores'").fetchmany(1)
    assert versions == [(1, 12), (2, 16)]
    assert "learned from 12 labels" in event[0]
    with SessionStore(path) as store:
        restarted = ScoreKeeper(settings, store, lambda a: None)
        assert restarted.scorer.weights.as_tuple() == pytest.approx(learned_weights.as_tuple())
        assert restarted.labelled() is None  # nothing new to learn from


def test_recommendations_and_the_summary_say_why(tmp_path: Path) -> None:
    from causalscope.daemon.store import SessionReader
    from causalscope.daemon.store import summarize as summarize_session

    path = tmp_path / "S.duckdb"
    with SessionStore(path) as store:
        keeper = ScoreKeeper(ScoringSettings(), store, lambda a: None)
        found = {}
        for name, fit, status in (
            ("good1", 3.5, "pass"),
            ("good2", 3.6, "pass"),
            ("nyq", 1.2, "pass"),
            ("gated", 3.5, "fail"),
        ):
            record = _record(name, fit=fit).model_copy(update={"status": status})
            store.commit_exposure(record, params_hash="p")
            found[name] = keeper.exposure(record)
    assert found["nyq"].recommendation == "reject"  # type: ignore[union-attr]
    assert found["nyq"].reason.startswith("fit_within_nyquist: the CTF fit")  # type: ignore[union-attr]
    assert found["gated"].recommendation == "reject"  # type: ignore[union-attr]
    assert "sanity gate" in found["gated"].reason  # type: ignore[union-attr]
    good = found["good2"]
    assert good is not None and good.score is not None
    expected = "accept" if good.score.hyperscore >= 150 else "look"
    assert good.recommendation == expected and f"{good.score.hyperscore:.1f}" in good.reason
    with SessionReader(path) as reader:
        summary = summarize_session(reader)
    assert summary.scores is not None and summary.scores["scored"] == 4
    assert summary.scores["recommended"]["reject"] == 2
    assert summary.scores["failed"] == {"fit_within_nyquist": 1}
    text = summary.describe()
    assert "failed obligations  fit_within_nyquist 1" in text and "recommended  accept" in text


def test_a_failing_obligation_alerts_again_only_after_it_held(tmp_path: Path) -> None:
    alerts: list[Alert] = []
    with SessionStore(tmp_path / "S.duckdb") as store:
        keeper = ScoreKeeper(ScoringSettings(), store, alerts.append)
        for name, fit in (("b1", 1.2), ("b2", 1.2), ("ok", 4.0), ("b3", 1.2)):
            record = _record(name, fit=fit)
            store.commit_exposure(record, params_hash="p")
            keeper.exposure(record)
    assert [a.exposure_id for a in alerts] == ["b1", "b3"]


def test_the_typical_particle_count_is_the_exact_median_at_8_bytes_an_exposure() -> None:
    from causalscope.actors.scoring import SessionScorer

    scorer = SessionScorer(ScoringSettings())
    assert scorer.typical_particles() is None
    rng = np.random.default_rng(3)
    values = [0.0 if i % 7 == 0 else float(rng.random() * 500) for i in range(5001)]
    scorer.replay((None, value) for value in values)  # as a restart does, in commit order
    positive = [value for value in values if value > 0]
    assert len(positive) % 2 == 0  # the mean of the middle two
    assert scorer.typical_particles() == statistics.median(positive)
    scorer.replay([(None, 42.5)])
    assert scorer.typical_particles() == statistics.median([*positive, 42.5])
    # kept as packed doubles, only the exposures with particles: 8 bytes each
    held = scorer._particles.itemsize * len(scorer._particles)
    assert held == 8 * (len(positive) + 1)


def test_new_weights_that_reorder_the_recent_exposures_lower_meta_until_the_window_refills() -> (
    None
):
    """Meta watches the ranking too: weights learned from labels that reorder the window's
    exposures drop it; it recovers once the window holds exposures scored with them. A restart
    (the window replayed from the stored components) gives the same Meta."""
    from causalscope.actors.scoring import SessionScorer
    from causalscope.models.scoring import ScoreComponents, ScoreWeights, combine

    settings = ScoringSettings()
    scorer = SessionScorer(settings)
    history = []
    order = np.random.default_rng(5).permutation(settings.meta_window)  # no trend in time
    for i in order:  # the higher the logic, the lower the impact
        logic, impact = 0.5 + 0.025 * i, 0.9 - 0.03 * i
        v = combine(ScoreComponents(logic=logic, impact=impact), scorer.weights).v
        history.append((v, 100.0, logic, None, impact, None))
    by_v = sorted(history, key=lambda h: h[0])
    assert [h[2] for h in by_v] == sorted(h[2] for h in history)  # ordered by logic
    scorer.replay(history)
    before = scorer.score_exposure(_record("steady")).components.meta
    assert before is not None and before > 0.5
    restarted = SessionScorer(settings)
    restarted.replay(history)
    restarted.score_exposure(_record("steady"))
    impact_first = ScoreWeights(logic=0.01, novelty=0.2, impact=1.0, delta_repro=0.2, meta=0.2)
    scorer.weights = restarted.weights = impact_first  # the window is now ordered backwards
    after = scorer.score_exposure(_record("relearned")).components.meta
    assert after is not None and after < 0.2 < before  # the 19 of the window reversed
    assert restarted.score_exposure(_record("relearned")).components.meta == after
    for i in range(settings.meta_window):  # scored with the new weights: nothing to reorder
        meta = scorer.score_exposure(_record(f"later{i:02d}")).components.meta
    assert scorer._ranking() == 1.0 and meta is not None and meta > 0.5


def test_an_exposure_s_contribution_is_read_from_the_latest_forecast(tmp_path: Path) -> None:
    """Before a forecast no contribution; after one, each exposure's particles, counted in the
    session's average particles and as many as the map keeps, are what the SSNR law says the
    map at the session's end gains from them; a worse fit contributes less. Stored and
    published with the score."""
    from causalscope.models.reconstruction.forecast import SsnrForecast
    from causalscope.models.scoring import contribution_angstrom

    law = SsnrForecast(log_amplitude=2.0, bfactor_angstrom2=80.0, particles=600)
    forecast = ForecastUpdate(
        particles=600, bfactor_angstrom2=None, bfactor_sd_angstrom2=None,
        ssnr_bfactor_angstrom2=80.0, target_resolution_angstrom=3.0, particles_needed=None,
        resolution_at_double_angstrom=law.resolution_at(1200), particles_per_hour=1000.0,
        hours_to_target=None, hours_left=4.0, particles_at_end=4600.0,
    )  # fmt: skip
    path, _ = _session(tmp_path, 0)
    with SessionStore(path) as store:
        keeper = ScoreKeeper(ScoringSettings(), store, lambda a: None)
        before = [keeper.exposure(_record(f"e{i:02d}", n=100)) for i in range(10)]
        assert all(s is not None and s.contribution_angstrom is None for s in before)
        _, update = _map_update(forecast)
        keeper.reconstruction(update)
        good = keeper.exposure(_record("good", n=100))
        worse = keeper.exposure(_record("worse", n=100, fit=6.0))
    assert good is not None and worse is not None
    # the map holds 600 of the 1,000 particles picked when the forecast came
    kept = 600 / 1000
    want = contribution_angstrom(kept * 100, forecast=law, horizon=4600.0)
    assert good.contribution_angstrom == pytest.approx(want, rel=1e-6)
    assert worse.contribution_angstrom is not None
    assert 0 < worse.contribution_angstrom < 0.5 * good.contribution_angstrom
    assert good.to_dict()["contribution_angstrom"] == good.contribution_angstrom
    with duckdb.connect(str(path), read_only=True) as con:
        stored = dict(
            con.execute(
                "SELECT subject, contribution_angstrom FROM scores WHERE kind = 'exposure'"
            ).fetchall()
        )
    assert stored["e00"] is None and stored["good"] == pytest.approx(want, rel=1e-6)


def test_overlapping_picks_add_nothing_to_impact_fore() -> None:
    """Two exposures of 100 picks each, one with 30 of them in clumps (pairs 0.5 diameters
    apart): ImpactFore counts the 70 that stand alone."""
    from causalscope.actors.scoring import SessionScorer

    scorer = SessionScorer(ScoringSettings())
    spread = scorer.score_exposure(_record("spread", n=100))
    record = _record("clumped", n=100)
    assert record.picking is not None and record.pixel_size_angstrom is not None
    diameter_px = record.picking.particle_diameter_angstrom / record.pixel_size_angstrom
    picks = [list(p) for p in record.picking.picks_xy_px]
    for i in range(0, 30, 2):  # every other pick of the first 30 next to its neighbour
        picks[i + 1] = [picks[i][0] + 0.5 * diameter_px, picks[i][1]]
    clumped = record.model_copy(
        update={"picking": record.picking.model_copy(update={"picks_xy_px": picks})}
    )
    found = scorer.score_exposure(clumped)
    assert found.n_particles == 100
    assert found.weighted_particles == pytest.approx(0.7 * spread.weighted_particles)
