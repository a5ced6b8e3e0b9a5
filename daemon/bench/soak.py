"""The soak: many tiny exposures through a live session, and whether anything grows.

``causalscope watch --zmq`` runs as a subprocess on a Ray cluster of the benchmark's own; the
benchmark streams ``n`` tiny simulated exposures into it (64 x 64 x 2 by default: the smallest
movie the whole pipeline takes, so that the cost per exposure is the daemon's and the
pipeline's fixed cost, not the pixels'), keeping a few in flight (after a warm-up of twice
that many, not counted: the actors start), and at checkpoints (a tenth,
a quarter, half, three quarters and all of ``n``) samples the resident memory and the open file
descriptors (``/proc/PID/fd``) of the daemon and of each exposure worker, the memory DuckDB
holds in the daemon (``duckdb_memory()``: the session file's cache and the commits not yet
checkpointed) and the session database's size. The store's DuckDB is limited to
``duckdb_limit_mb`` (``store.memory_limit_mb``; 32 MiB, below its 256 MiB default, so that the
bound is reached within the run: unbounded, DuckDB caches the whole growing file, about
3.7 KB per exposure here). At the end the database gives each window's latency (from a received
exposure to its committed record, the wait behind the others in flight included: median and
p95) and pace.

Each quantity gets its slope per 1,000 exposures (least squares over the checkpoints) and its
change from the first checkpoint to the last; it is called flat when it grew by no more than a
tolerance (memory 5 % or 20 MiB, 2 descriptors, latency median 25 %, p95 50 %). The database
grows with every row by design: its bytes per exposure over the first and the second half of
the run are what should stay flat (the second at most 1.5 times the first).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from causalscope.daemon.bench._live import (
    DaemonProcess,
    OwnCluster,
    free_tcp_port,
    open_files,
    resident_mib,
    toml_settings,
)

__all__ = ["finished_count", "metadata_beside", "run_soak_bench", "send_copy"]

_CHECKPOINTS = (0.1, 0.25, 0.5, 0.75, 1.0)


def run_soak_bench(
    *,
    n: int = 600,
    size: int = 64,
    frames: int = 2,
    workers: int = 2,
    in_flight: int = 6,
    timeout_s: float = 7200.0,
    seed: int = 1,
    duckdb_limit_mb: int = 32,
    work_dir: Path | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Stream ``n`` exposures of ``size`` x ``size`` x ``frames`` through a live session; the
    report (see the module docstring).

    ``in_flight``: exposures sent and not yet finished, at most (the sender waits, as a
    detector pacing itself to the processing would).
    """
    say = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    from causalscope.config import load_settings
    from causalscope.daemon.bench.faults import base_settings
    from causalscope.daemon.bench.pipeline import simulate_sources
    from causalscope.daemon.exposures import load_movie

    with tempfile.TemporaryDirectory(prefix="causalscope-soak-", dir=work_dir) as tmp:
        root = Path(tmp)
        sources = simulate_sources(root / "sim", size=size, frames=frames, n_distinct=4, seed=seed)
        config = root / "settings.toml"
        values = base_settings(root / "sim", max(2, workers))
        values["store"]["memory_limit_mb"] = duckdb_limit_mb
        config.write_text(toml_settings(values))
        settings = load_settings(config)
        movies = [
            load_movie(path, settings, metadata_path=metadata_beside(path)) for path in sources
        ]
        address = f"tcp://127.0.0.1:{free_tcp_port()}"
        with OwnCluster(num_cpus=workers, object_store_mb=200) as cluster:
            daemon = DaemonProcess(
                config,
                root / "sessions",
                "soak",
                [
                    "--zmq",
                    address,
                    "--ray-address",
                    cluster.address,
                    "--workers",
                    str(workers),
                ],
                root / "daemon.log",
            )
            daemon.start()
            daemon.wait_ready()
            try:
                samples, elapsed = _stream(
                    daemon, cluster, movies, address, n, in_flight, timeout_s, say
                )
            finally:
                daemon.stop()
            windows = _windows(daemon.database, [s["finished"] for s in samples])
            db_bytes = daemon.database.stat().st_size
            log_tail = daemon.log.read_text(errors="replace")[-3000:]
            unplanned = [run.how for run in daemon.runs if run.how != "stopped"]
    done = samples[-1]["finished"]
    report: dict[str, Any] = {
        "exposures_requested": n,
        "exposures_done": done,
        "movie": f"{size}x{size}x{frames}",
        "workers": workers,
        "in_flight": in_flight,
        "duckdb_memory_limit_mib": duckdb_limit_mb,
        "elapsed_s": round(elapsed, 1),
        "seconds_per_exposure": round(elapsed / max(1, samples[-1]["finished"]), 3),
        "exposures_per_minute": round(60 * samples[-1]["finished"] / max(elapsed, 1e-9), 1),
        "checkpoints": samples,
        "windows": windows,
        "database_bytes": db_bytes,
        "daemon_unplanned_exits": len(unplanned),
        "flat": _flatness(samples, windows),
    }
    if unplanned:
        report["daemon_log_tail"] = log_tail
    report["summary"] = {
        "exposures_requested": n,
        "exposures_done": done,
        "seconds_per_exposure": report["seconds_per_exposure"],
        "flat": {name: entry["flat"] for name, entry in report["flat"].items()},
    }
    return report


def metadata_beside(movie: Path) -> Path:
    """The EPU XML the simulator writes beside ``movie``."""
    return movie.with_name(movie.name[: -len("_fractions.tiff")] + ".xml")


def finished_count(daemon: DaemonProcess, prefix: str = "") -> int | None:
    """Exposures (whose id starts with ``prefix``) the running session has finished, done or
    quarantined; None when it does not answer now."""
    rows = daemon.query(
        "SELECT count(*) FROM exposures WHERE state <> 'seen' AND starts_with(exposure_id, "
        + repr(prefix)
        + ")"
    )
    return int(rows[0][0]) if rows else None


def _stream(
    daemon: DaemonProcess,
    cluster: OwnCluster,
    movies: list[Any],
    address: str,
    n: int,
    in_flight: int,
    timeout_s: float,
    say: Any,
) -> tuple[list[dict[str, Any]], float]:
    import zmq

    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.setsockopt(zmq.SNDTIMEO, 30_000)
    push.connect(address)
    marks = sorted({max(1, round(n * f)) for f in _CHECKPOINTS})
    samples: list[dict[str, Any]] = []
    warm_up = 2 * in_flight
    started = time.monotonic()
    deadline = started + timeout_s
    sent = finished = 0
    try:
        # a warm-up first, not counted: the actors start and import torch
        for index in range(warm_up):
            send_copy(push, movies, f"warm_{index:06d}")
        while (finished_count(daemon) or 0) < warm_up and time.monotonic() < deadline:
            if not daemon.alive():
                raise RuntimeError(f"the daemon exited by itself; see {daemon.log}")
            time.sleep(0.5)
        say(f"warmed up ({warm_up} exposures, {time.monotonic() - started:.0f} s)")
        started = time.monotonic()
        while finished < n and time.monotonic() < deadline:
            if not daemon.alive():
                raise RuntimeError(f"the daemon exited by itself; see {daemon.log}")
            while sent < n and sent - finished < in_flight:
                send_copy(push, movies, f"soak_{sent:06d}")
                sent += 1
            time.sleep(0.25)
            finished = (finished_count(daemon) or warm_up + finished) - warm_up
            if marks and finished >= marks[0]:
                marks.pop(0)
                samples.append(_sample(daemon, cluster, finished, time.monotonic() - started))
                say(f"{finished}/{n}: {samples[-1]}")
        if finished < n:  # out of time: what was reached is the last checkpoint
            samples.append(_sample(daemon, cluster, finished, time.monotonic() - started))
            say(f"stopped at {finished}/{n} after {timeout_s:g} s")
    finally:
        push.close(linger=0)
    return samples, time.monotonic() - started


def send_copy(push: Any, movies: list[Any], exposure_id: str) -> None:
    """Push copy ``N`` of the movies (``exposure_id`` ends in ``_N``) as ``exposure_id``."""
    from causalscope.daemon.sources.stream_sender import send_exposure

    movie = movies[int(exposure_id.rsplit("_", 1)[1]) % len(movies)]
    send_exposure(
        push,
        exposure_id,
        np.asarray(movie.frames),
        pixel_size_angstrom=movie.pixel_size_angstrom,
        metadata=movie.metadata,
    )


def _sample(
    daemon: DaemonProcess, cluster: OwnCluster, finished: int, elapsed_s: float
) -> dict[str, Any]:
    pid = daemon.pid
    assert pid is not None
    workers = cluster.worker_pids()
    database = daemon.database
    wal = database.with_name(database.name + ".wal")
    return {
        "finished": finished,
        "elapsed_s": round(elapsed_s, 1),
        "daemon_pid": pid,
        "daemon_rss_mib": resident_mib(pid),
        "daemon_open_files": open_files(pid),
        "daemon_duckdb_mib": _duckdb_mib(daemon),
        "workers": [
            {"pid": w, "rss_mib": resident_mib(w), "open_files": open_files(w)} for w in workers
        ],
        "database_bytes": database.stat().st_size + (wal.stat().st_size if wal.exists() else 0),
    }


def _duckdb_mib(daemon: DaemonProcess) -> float | None:
    """The memory DuckDB holds in the daemon (MiB), None when the session does not answer."""
    rows = daemon.query("SELECT sum(memory_usage_bytes) FROM duckdb_memory()")
    return round(float(rows[0][0]) / 2**20, 1) if rows and rows[0][0] is not None else None


def _windows(database: Path, marks: list[int]) -> list[dict[str, Any]]:
    """Latency and pace of the exposures committed between consecutive checkpoints."""
    import duckdb

    with duckdb.connect(str(database), read_only=True) as db:
        rows = db.execute(
            "SELECT latency_s, epoch(done_at) FROM exposures WHERE state = 'done' "
            "AND latency_s IS NOT NULL AND exposure_id LIKE 'soak_%' ORDER BY done_at"
        ).fetchall()
    windows = []
    start = 0
    for mark in marks:
        chunk = rows[start:mark]
        if len(chunk) >= 2:
            latencies = sorted(float(r[0]) for r in chunk)
            span = float(chunk[-1][1]) - float(chunk[0][1])
            windows.append(
                {
                    "exposures": f"{start + 1}-{start + len(chunk)}",
                    "up_to": start + len(chunk),
                    "latency_median_s": round(statistics.median(latencies), 3),
                    "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
                    "exposures_per_minute": round(60 * (len(chunk) - 1) / span, 1)
                    if span > 0
                    else None,
                }
            )
        start = mark
    return windows


def _slope_per_1k(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 2 or len(set(xs)) < 2:
        return None
    slope = float(np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)[0])
    return round(1000 * slope, 3)


def _trend(xs: list[float], ys: list[float | None], tolerance: Any) -> dict[str, Any]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    if len(pairs) < 2:
        return {"values": ys, "flat": None}
    first, last = pairs[0][1], pairs[-1][1]
    change = last - first
    return {
        "values": ys,
        "slope_per_1k": _slope_per_1k([p[0] for p in pairs], [p[1] for p in pairs]),
        "change_first_to_last": round(change, 3),
        "flat": bool(change <= tolerance(first)),  # not growing (falling is fine)
    }


def _flatness(samples: list[dict[str, Any]], windows: list[dict[str, Any]]) -> dict[str, Any]:
    xs = [float(s["finished"]) for s in samples]
    memory = lambda first: max(20.0, 0.05 * first)  # noqa: E731 - MiB
    files = lambda first: 2  # noqa: E731
    flat: dict[str, Any] = {
        "daemon_rss_mib": _trend(xs, [s["daemon_rss_mib"] for s in samples], memory),
        "daemon_open_files": _trend(xs, [s["daemon_open_files"] for s in samples], files),
        "daemon_duckdb_mib": _trend(xs, [s["daemon_duckdb_mib"] for s in samples], memory),
    }
    # each worker slot by its rank (a replaced worker is a new process: its pid says so)
    slots = max((len(s["workers"]) for s in samples), default=0)
    for slot in range(slots):
        rss = [s["workers"][slot]["rss_mib"] if slot < len(s["workers"]) else None for s in samples]
        fds = [
            s["workers"][slot]["open_files"] if slot < len(s["workers"]) else None for s in samples
        ]
        flat[f"worker{slot}_rss_mib"] = _trend(xs, rss, memory)
        flat[f"worker{slot}_open_files"] = _trend(xs, fds, files)
    if windows:
        wx = [float(w["up_to"]) for w in windows]
        flat["latency_median_s"] = _trend(
            wx, [w["latency_median_s"] for w in windows], lambda first: 0.25 * first
        )
        flat["latency_p95_s"] = _trend(
            wx, [w["latency_p95_s"] for w in windows], lambda first: 0.5 * first
        )
    # the file grows with every row, and its write-ahead log is folded in now and then: the
    # bytes per exposure over the first half of the run against over the second
    if len(samples) >= 3:
        mid = len(samples) // 2
        halves = [
            (samples[b]["database_bytes"] - samples[a]["database_bytes"])
            / max(1, samples[b]["finished"] - samples[a]["finished"])
            for a, b in ((0, mid), (mid, len(samples) - 1))
        ]
        flat["database_bytes_per_exposure"] = {
            "values": [round(h, 1) for h in halves],
            "slope_per_1k": _slope_per_1k(xs, [float(s["database_bytes"]) for s in samples]),
            "flat": bool(halves[1] <= 1.5 * halves[0] + 4096),
        }
    return flat
