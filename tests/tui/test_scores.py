"""The dashboard shows the selected exposure's score, its expected contribution to the map
and each failed obligation with its values, from the recorded history and as scores arrive
live."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from causalscope.actors._evaluation_results import ForecastUpdate
from causalscope.config import ScoringSettings, TuiSettings
from causalscope.daemon.scoring import ScoreKeeper
from causalscope.daemon.store import SessionStore
from causalscope.models.records import PickingRecord
from causalscope.tui import make_app
from causalscope.tui.source import RecordedSource
from tests.daemon.store._records import make_record
from tests.tui._pilot import settle, shown_text

# a map of 400 particles heading for 3.3 A from 800 (an SSNR fit with B 80 A^2)
_FORECAST = ForecastUpdate(
    particles=400, bfactor_angstrom2=None, bfactor_sd_angstrom2=None, ssnr_bfactor_angstrom2=80.0,
    target_resolution_angstrom=3.0, particles_needed=None, resolution_at_double_angstrom=3.3,
    particles_per_hour=None, hours_to_target=None,
)  # fmt: skip


def _session(tmp_path: Path) -> Path:
    path = tmp_path / "scored.duckdb"
    picks = [[100.0 + 200.0 * i, 300.0] for i in range(8)]
    picking = PickingRecord(
        n_particles=8, particle_diameter_angstrom=120.0, picks_xy_px=picks, scores=[1.0] * 8
    )
    with SessionStore(path) as store:
        keeper = ScoreKeeper(ScoringSettings(), store, lambda alert: None)
        keeper.scorer.use_forecast(_FORECAST)
        for name, fit in (("good", 4.0), ("nyquist", 1.2)):  # 0.83 A/px: Nyquist 1.66 A
            record = make_record(name, fit_resolution_angstrom=fit)
            record = record.model_copy(update={"picking": picking})
            store.record_seen(name, movie_path=record.movie_path, source="watcher")
            store.commit_exposure(record, params_hash="p")
            keeper.exposure(record)
    return path


def test_the_details_show_the_score_and_the_failed_obligation(tmp_path: Path) -> None:
    snapshot = RecordedSource.open(_session(tmp_path)).history()
    assert set(snapshot.scores) == {"good", "nyquist"}
    failed = [o["name"] for o in snapshot.scores["nyquist"]["obligations"] if not o["holds"]]
    assert failed == ["fit_within_nyquist"]

    async def scenario() -> None:
        app = make_app(TuiSettings(), RecordedSource(snapshot, name="scored"))
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            assert app.table.selected_id() == "nyquist"  # the newest
            details = shown_text(app.query_one("#details-text"))
            assert "score 1" in details and "✖ fit_within_nyquist" in details
            assert "beyond Nyquist (1.66 A" in " ".join(details.split())  # wrapped in the pane
            await pilot.press("up")
            await settle(pilot)
            details = shown_text(app.query_one("#details-text"))
            assert app.table.selected_id() == "good" and "score 1" in details
            assert "✖" not in details
            gain = snapshot.scores["good"]["contribution_angstrom"]
            assert gain > 0 and f"map {gain:.3f} A better" in " ".join(details.split())

    asyncio.run(scenario())


def test_a_score_published_live_reaches_the_details(tmp_path: Path) -> None:
    recorded = RecordedSource.open(_session(tmp_path)).history()
    published = recorded.scores["nyquist"]
    without = dataclasses.replace(recorded, scores={})

    async def scenario() -> None:
        source = RecordedSource(without, name="scored", messages=[("score", published)])
        app = make_app(TuiSettings(), source)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.pause(0.3)
            assert app.state.scores["nyquist"]["hyperscore"] == published["hyperscore"]
            details = shown_text(app.query_one("#details-text"))
            assert "✖ fit_within_nyquist" in details

    asyncio.run(scenario())
