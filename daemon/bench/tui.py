"""The dashboard's benchmark: loading a 10,000-exposure session, and staying responsive while
5 exposures per second arrive.

``load``: the time from the app's start to its table holding every exposure, for a finished
session read from its file and for a running one read through the query endpoint.
``live``: exposures fed at ``rate_per_s`` for ``duration_s`` through a scripted source, while
the event loop is probed: the round trip of a ``call_later`` callback (every 50 ms) and of a
key press (every 250 ms); max and p95 of each, in milliseconds.
"""

from __future__ import annotations

import asyncio
import copy
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["make_session", "run_tui_bench"]

_SEED_ROWS = 100  # committed through the store; the rest are copies with new ids


def _record(i: int) -> Any:
    """An exposure record of the kind an ExposureWorker returns (no torch)."""
    from causalscope.models.records import CtfRecord, ExposureRecord, GateFlag, MotionRecord

    status = "fail" if i % 17 == 0 else "warn" if i % 7 == 0 else "pass"
    flags = []
    if status == "fail":
        flags = [
            GateFlag(code="ice_thick", severity="fail", message="ice 95 nm", value=95.0, limit=80.0)
        ]
    elif status == "warn":
        flags = [GateFlag(code="drift_early", severity="warn", message="early drift 4 A")]
    shifts = [[0.5 * k, -0.25 * k] for k in range(40)]
    return ExposureRecord(
        exposure_id=f"FoilHole_{i:08d}_Data_{i:08d}",
        movie_path=f"movies/{i}.tiff",
        status=status,
        flags=flags,
        pixel_size_angstrom=0.83,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
        dose_e_per_a2=40.0,
        n_frames=40,
        motion=MotionRecord(
            shifts_px=shifts,
            local_motion_rms_px=0.3,
            patches=(5, 4),
            accumulated_motion_total_angstrom=2.5,
            accumulated_motion_early_angstrom=1.5,
            accumulated_motion_late_angstrom=1.0,
            total_drift_px=3.0 + i % 9,
            max_frame_shift_px=0.56,
            measured_dose_e_per_a2=40.0,
            n_hot_pixels=3,
            iterations=5,
        ),
        ctf=CtfRecord(
            defocus_u_angstrom=12_000.0 + 100.0 * (i % 20),
            defocus_v_angstrom=11_800.0 + 100.0 * (i % 20),
            defocus_angle_deg=33.0,
            fit_resolution_angstrom=3.5 + (i % 30) / 10,
            figure_of_merit=0.25,
            ice_thickness_nm=40.0 + i % 50,
            defocus_sigma_angstrom=20.0,
            search_defocus_min_um=0.5,
            search_defocus_max_um=5.0,
        ),
        outputs={"aligned_sum": f"out/micrographs/{i}.mrc"},
        timings_s={"motion": 0.5, "ctf": 0.25},
        device="cuda:0",
    )


def make_session(path: Path, n: int) -> None:
    """A finished session of ``n`` exposures: the first are committed through the store, the
    rest copied from them with new ids (committing 10,000 one by one takes a minute)."""
    import duckdb

    from causalscope.daemon.store import SessionStore

    with SessionStore(path) as store:
        for i in range(min(n, _SEED_ROWS)):
            store.commit_exposure(_record(i), params_hash="bench")
    if n <= _SEED_ROWS:
        return
    con = duckdb.connect(str(path))
    try:
        con.execute("BEGIN TRANSACTION")
        copies = f"FROM range({_SEED_ROWS}, {n}) AS g(i)"
        new_id = "printf('FoilHole_%08d_Data_%08d', g.i, g.i)"
        seed = f"printf('FoilHole_%08d_Data_%08d', g.i % {_SEED_ROWS}, g.i % {_SEED_ROWS})"
        for table in ("exposures", "motion", "ctf", "flags"):
            columns = [c[0] for c in con.execute(f"DESCRIBE {table}").fetchall()]
            select = ", ".join(
                new_id
                if c == "exposure_id"
                else "s.seen_at + INTERVAL (g.i) SECOND"
                if c in ("seen_at", "done_at")
                else f"s.{c}"
                for c in columns
            )
            con.execute(
                f"INSERT INTO {table} SELECT {select} {copies} JOIN {table} AS s "
                f"ON s.exposure_id = {seed}"
            )
        con.execute("COMMIT")
    finally:
        con.close()


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


async def _time_load(app: Any, n: int, timeout_s: float = 60.0) -> float:
    start = time.perf_counter()
    async with app.run_test(size=(160, 48)) as pilot:
        while app.table.row_count < n:
            if time.perf_counter() - start > timeout_s:
                raise TimeoutError(f"the table holds {app.table.row_count} of {n} rows")
            await asyncio.sleep(0.005)
        loaded = time.perf_counter() - start
        await pilot.press("q")
    return loaded


class _Feed:
    """A running session's stand-in: history from a snapshot, then rows at a steady rate."""

    live = True
    name = "bench"

    def __init__(self, snapshot: Any, rate_per_s: float, duration_s: float) -> None:
        self._snapshot = snapshot
        self._rate = rate_per_s
        self._duration = duration_s
        self.sent = 0

    def history(self) -> Any:
        return self._snapshot

    def act(self, action: str, **params: Any) -> dict[str, Any]:
        return {}

    def follow(self, post: Any, stop: threading.Event) -> None:
        template = self._snapshot.rows[-1]
        start = time.monotonic()
        n = len(self._snapshot.rows)
        while not stop.is_set() and time.monotonic() - start < self._duration:
            due = start + self.sent / self._rate
            if time.monotonic() < due:
                stop.wait(due - time.monotonic())
                continue
            row = copy.deepcopy(template)
            row["exposure_id"] = f"live_{n + self.sent:08d}"
            post("exposure", row)
            self.sent += 1
            if self.sent % max(1, int(self._rate)) == 0:
                post("status", {"done": n + self.sent, "seen": n + self.sent, "paused": False})
        stop.wait()


async def _time_live(app: Any, feed: _Feed, duration_s: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    calls: list[float] = []
    keys: list[float] = []
    async with app.run_test(size=(160, 48)) as pilot:
        while not app.history_loaded.is_set():
            await asyncio.sleep(0.01)
        start = time.perf_counter()
        next_key = start
        while time.perf_counter() - start < duration_s:
            t0 = time.perf_counter()
            done: asyncio.Future[float] = loop.create_future()
            app.call_later(lambda f=done: f.set_result(time.perf_counter()))
            calls.append((await done) - t0)
            if time.perf_counter() >= next_key:
                t0 = time.perf_counter()
                await pilot.press("up" if len(keys) % 2 else "down")
                keys.append(time.perf_counter() - t0)
                next_key += 0.25
            await asyncio.sleep(0.05)
        await pilot.pause(0.5)
        shown = app.table.row_count
        await pilot.press("q")
    return {
        "exposures_sent": feed.sent,
        "rows_shown": shown,
        "call_later_ms": {
            "n": len(calls),
            "median": 1e3 * statistics.median(calls),
            "p95": 1e3 * _p95(calls),
            "max": 1e3 * max(calls),
        },
        "key_press_ms": {
            "n": len(keys),
            "median": 1e3 * statistics.median(keys),
            "p95": 1e3 * _p95(keys),
            "max": 1e3 * max(keys),
        },
    }


def run_tui_bench(
    *,
    n: int = 10_000,
    rate_per_s: float = 5.0,
    duration_s: float = 20.0,
    folder: Path | None = None,
) -> dict[str, Any]:
    """Time loading ``n`` exposures and probe responsiveness while rows arrive; a JSON report."""
    from causalscope.config import TuiSettings
    from causalscope.daemon.store import SessionStore
    from causalscope.tui.app import make_app
    from causalscope.tui.source import LiveSource, RecordedSource

    with tempfile.TemporaryDirectory(prefix="causalscope-tui-bench-") as tmp:
        path = (folder or Path(tmp)) / "bench.duckdb"
        t0 = time.perf_counter()
        make_session(path, n)
        built_s = time.perf_counter() - t0
        settings = TuiSettings()

        recorded = asyncio.run(_time_load(make_app(settings, _OpenOnStart(path)), n))
        with SessionStore(
            path, query_address="tcp://127.0.0.1:0", publish_address="tcp://127.0.0.1:0"
        ) as store:
            assert store.query_endpoint is not None and store.publish_endpoint is not None
            live_source = LiveSource(
                publish=store.publish_endpoint, query=store.query_endpoint, name="bench"
            )
            live = asyncio.run(_time_load(make_app(settings, live_source), n))
        snapshot = RecordedSource.open(path).history()
        feed = _Feed(snapshot, rate_per_s, duration_s)
        responsiveness = asyncio.run(_time_live(make_app(settings, feed), feed, duration_s))
    return {
        "exposures": n,
        "session_built_s": built_s,
        "load_s": {"finished_file": recorded, "query_endpoint": live},
        "live": {"rate_per_s": rate_per_s, "duration_s": duration_s, **responsiveness},
        "summary": {
            "load_10k_file_s": recorded,
            "load_10k_endpoint_s": live,
            "call_later_p95_ms": responsiveness["call_later_ms"]["p95"],
            "call_later_max_ms": responsiveness["call_later_ms"]["max"],
            "key_press_p95_ms": responsiveness["key_press_ms"]["p95"],
            "key_press_max_ms": responsiveness["key_press_ms"]["max"],
        },
    }


class _OpenOnStart:
    """A finished session whose file is read when the app asks (so reading it is timed)."""

    live = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.stem

    def history(self) -> Any:
        from causalscope.tui.source import RecordedSource

        return RecordedSource.open(self.path).history()

    def follow(self, post: Any, stop: threading.Event) -> None:
        return None

    def act(self, action: str, **params: Any) -> dict[str, Any]:
        from causalscope.tui.source import RecordedSource

        return RecordedSource.open(self.path).act(action, **params)
