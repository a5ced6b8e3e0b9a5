"""Sources: history as the store publishes it, actions refused on a finished session, the CLI's
choice of source, and no torch or Ray in the dashboard's process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from causalscope.daemon.cli import build_parser
from causalscope.daemon.commands.tui import source_for
from causalscope.daemon.control import ControlError
from causalscope.daemon.store import SessionStore
from causalscope.tui import LiveSource, RecordedSource
from causalscope.tui.format import RowFilter, short_id
from causalscope.tui.widgets.image import fit_image
from causalscope.tui.widgets.plots import downsample
from tests.daemon.store._records import fail_flag, make_record, warn_flag

REPO = Path(__file__).resolve().parents[2]


def _session(path: Path) -> dict[str, dict[str, Any]]:
    """A finished session; returns the rows the store published."""
    published: dict[str, dict[str, Any]] = {}
    with SessionStore(path) as store:
        store.record_seen("a", movie_path="movies/a.tiff", source="watcher")
        store.commit_exposure(make_record("b", with_ctf=False), params_hash="h")
        store.commit_exposure(
            make_record("c", status="fail", flags=[fail_flag("ice", 90, 80), warn_flag("x")]),
            params_hash="h",
        )
        store.log_event(
            "alert", "Ice thickening", code="ice", severity="warn", advice="move", exposure_id="c"
        )
        store.log_event("retry", "not an alert")
        store.add_label("c", "accept")
        store.add_label("c", "reject")
        for eid in ("a", "b", "c"):
            row = store.exposure_row(eid)
            assert row is not None
            published[eid] = row
    return published


def test_recorded_history_matches_the_published_rows(tmp_path: Path) -> None:
    published = _session(tmp_path / "s.duckdb")
    snapshot = RecordedSource.open(tmp_path / "s.duckdb").history()
    assert [r["exposure_id"] for r in snapshot.rows] == ["a", "b", "c"]
    for row in snapshot.rows:
        expected = published[row["exposure_id"]]
        if expected["motion"] is not None:
            expected["motion"].pop("shifts_px")  # history leaves the per-frame shifts out
        assert row == expected
    assert [a["data"]["code"] for a in snapshot.alerts] == ["ice"]
    assert snapshot.labels == {"c": "reject"}  # the latest label wins
    assert snapshot.status is not None
    assert (snapshot.status["done"], snapshot.status["fail"], snapshot.status["queue"]) == (2, 1, 1)


def test_finished_session_refuses_actions(tmp_path: Path) -> None:
    _session(tmp_path / "s.duckdb")
    source = RecordedSource.open(tmp_path / "s.duckdb")
    with pytest.raises(ControlError, match="the session is not running"):
        source.act("label", exposure_id="c", label="reject")


def test_cli_opens_a_finished_session_or_connects_to_a_running_one(tmp_path: Path) -> None:
    database = tmp_path / "s.duckdb"
    _session(database)
    parser = build_parser()
    assert isinstance(source_for(parser.parse_args(["tui", str(database)])), RecordedSource)
    endpoints = tmp_path / "s.endpoints.json"
    endpoints.write_text(
        json.dumps(
            {
                "database": str(database),
                "pid": 1,
                "publish": "tcp://127.0.0.1:1",
                "query": "tcp://127.0.0.1:2",
                "control": "tcp://127.0.0.1:3",
                "token": "secret",
            }
        )
    )
    for argv in (["tui", str(database)], ["tui", "--connect", str(endpoints)]):
        source = source_for(parser.parse_args(argv))
        assert isinstance(source, LiveSource)
        assert (source.publish, source.control, source.token) == (
            "tcp://127.0.0.1:1",
            "tcp://127.0.0.1:3",
            "secret",
        )
    direct = source_for(
        parser.parse_args(["tui", "--publish", "tcp://h:1", "--query", "tcp://h:2"])
    )
    assert isinstance(direct, LiveSource) and direct.control is None


def _loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


# What the live dashboard must not load: the numerics, Ray, the causal model (it only draws what
# the daemon published), the store's writer, and DuckDB (only a finished session's file needs it).
_HEAVY = (
    "torch",
    "ray",
    "scipy",
    "networkx",
    "pandas",
    "duckdb",
    "causalscope.models.causal",
    "causalscope.daemon.store.writer",
)


def test_the_live_dashboard_imports_neither_torch_ray_nor_the_store() -> None:
    """The live path: the app, its source, the client and the command, with a LiveSource made."""
    loaded = _loaded_after(
        "import causalscope.tui.app, causalscope.tui.source, causalscope.daemon.client\n"
        "import causalscope.daemon.commands.tui, causalscope.daemon.bench.tui\n"
        "from causalscope.config import TuiSettings\n"
        "from causalscope.tui.app import make_app\n"
        "from causalscope.tui.source import LiveSource\n"
        "make_app(TuiSettings(), LiveSource(publish='tcp://127.0.0.1:1', query='tcp://127.0.0.1:2'))"
    )
    assert "causalscope.daemon.client" in loaded and "textual" in loaded  # it did load
    assert sorted(m for m in _HEAVY if m in loaded) == []
    daemon = sorted(m for m in loaded if m.startswith("causalscope.daemon."))
    assert all(
        m.startswith(
            ("causalscope.daemon.client", "causalscope.daemon.commands", "causalscope.daemon.bench")
        )
        for m in daemon
    ), daemon


def test_the_store_package_loads_its_parts_when_used() -> None:
    bare = _loaded_after("import causalscope.daemon.store")
    assert not {"duckdb", "zmq", "causalscope.daemon.store.writer"} & bare
    used = _loaded_after("from causalscope.daemon.store import SessionStore")
    assert {"duckdb", "zmq", "causalscope.daemon.store.writer"} <= used


def test_filter_words() -> None:
    row = {
        "exposure_id": "FoilHole_1",
        "state": "done",
        "gate_status": "fail",
        "flags": [{"code": "ice_thick", "message": "ice 90 nm"}],
    }
    assert RowFilter("fail").matches(row, None)
    assert RowFilter("warn fail").matches(row, None)
    assert not RowFilter("pass").matches(row, None)
    assert RowFilter("fail ice").matches(row, None)
    assert not RowFilter("fail drift").matches(row, None)
    assert RowFilter("flagged rejected").matches(row, "reject")
    assert not RowFilter("unlabelled").matches(row, "accept")


def test_short_id_keeps_both_ends() -> None:
    cut = short_id("FoilHole_24015405_Data_24016401_20220301_131227", 18)
    assert len(cut) == 18 and cut.startswith("FoilHole") and cut.endswith("131227")


def test_downsample_keeps_the_mean_and_the_span() -> None:
    values = [float(i) for i in range(10_000)]
    xs, ys = downsample(values, 100)
    assert len(xs) == 100
    assert sum(ys) / len(ys) == pytest.approx(sum(values) / len(values))
    assert xs[0] == pytest.approx(50.5) and xs[-1] == pytest.approx(9950.5)
    assert downsample([None, 2.0], 10) == ([2.0], [2.0])


def test_fit_image_keeps_aspect_and_mean() -> None:
    import numpy as np

    image = np.full((64, 32), 100, dtype=np.uint8)
    out = fit_image(image, 40, 40)
    assert out.shape == (40, 20)
    assert (out == 100).all()


def test_half_blocks_draw_colour_pixels_as_they_are() -> None:
    import numpy as np
    from rich.console import Console

    from causalscope.tui.widgets.image import HalfBlocks

    picture = np.array([[[255, 0, 0], [0, 0, 255]], [[0, 255, 0], [10, 20, 30]]], np.uint8)
    console = Console(width=2, height=1, color_system="truecolor")
    segments = console.render(HalfBlocks(picture), console.options.update(height=1))
    drawn = [
        (s.style.color.triplet, s.style.bgcolor.triplet)
        for s in segments
        if s.text == "▀" and s.style and s.style.color and s.style.bgcolor
    ]
    # the top pixel is the glyph's colour, the bottom one its background
    assert [(tuple(top), tuple(bottom)) for top, bottom in drawn] == [
        ((255, 0, 0), (0, 255, 0)),
        ((0, 0, 255), (10, 20, 30)),
    ]


def test_the_micrograph_panel_shows_the_picks_picture_else_the_micrograph(
    tmp_path: Path,
) -> None:
    """The picks picture (colour) when the exposure has one, else the grey micrograph; on a
    finished session with neither file here, the reason (the session cannot be asked)."""
    import numpy as np

    from causalscope.daemon.formats.png import write_png
    from causalscope.tui.widgets.image import load_thumbnails

    _session(tmp_path / "s.duckdb")
    source = RecordedSource.open(tmp_path / "s.duckdb")
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (16, 24), dtype=np.uint8)
    colour = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    files = {
        "thumbnail": str(write_png(tmp_path / "c.png", grey)),
        "power_spectrum_thumbnail": str(write_png(tmp_path / "c_ps.png", grey.T.copy())),
        "picks_thumbnail": str(write_png(tmp_path / "c_picks.png", colour)),
    }
    loaded = list(load_thumbnails(source, {"exposure_id": "c", "outputs": files}))
    assert [m.kind for m in loaded] == ["picks", "power_spectrum"]
    assert loaded[0].image is not None and (loaded[0].image == colour).all()
    files.pop("picks_thumbnail")
    loaded = list(load_thumbnails(source, {"exposure_id": "c", "outputs": files}))
    assert [m.kind for m in loaded] == ["micrograph", "power_spectrum"]
    assert loaded[0].image is not None and (loaded[0].image == grey).all()
    loaded = list(load_thumbnails(source, {"exposure_id": "c", "outputs": {}}))
    assert [(m.kind, m.image) for m in loaded] == [("micrograph", None), ("power_spectrum", None)]
    assert all("not running" in m.error for m in loaded)
