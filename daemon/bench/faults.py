"""The chaos run: a live session that is hurt while it runs, and an account of every exposure.

``causalscope watch`` runs as a subprocess on a watched folder and a ZeroMQ frame stream, on a
Ray cluster of the benchmark's own (one node, a small object store, Ray's memory monitor set a
little above the memory in use when it starts). Small simulated exposures arrive at a steady
pace, as movie files (EPU layout) and over the stream, while the benchmark:

- kills exposure workers with SIGKILL (found as the children of the cluster's raylet);
- triggers Ray's memory monitor for real: it allocates memory, as another program on the node
  would, until Ray kills a worker, then frees it;
- fills the disk the session lives on (a size-limited tmpfs mounted under the session, where
  this machine allows mounting; otherwise the fault is skipped and the report says why) and
  empties it again;
- sends garbage messages and exposures with dropped or corrupt frames over the stream;
- kills the daemon with ``kill -9`` (twice by default) and starts it again on the same session.

At the end the daemon is stopped and the session database is read: every exposure must be done
or quarantined with a reason, exactly once. The report counts the faults injected (per kind),
the exposures done, quarantined (with their reasons), lost and duplicated, the daemon's runs
(only the planned restarts) and whether each run stayed up, with one pid, until its planned
kill.

The frame stream has no acknowledgements (ZeroMQ PUSH/PULL): what a killed receiver had read
but not yet recorded dies with it, as it would with a detector's link. The daemon is therefore
killed when everything sent over the stream has been recorded (while movies are being
processed, queued and written): the benchmark tests what the daemon keeps, not what the
protocol cannot.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from causalscope.daemon.bench._faults_ledger import Planned, account_for, format_table
from causalscope.daemon.bench._faults_waits import (
    wait_finished,
    wait_kills_noticed,
    wait_stream_recorded,
)
from causalscope.daemon.bench._live import (
    DaemonProcess,
    OwnCluster,
    SmallFilesystemUnavailable,
    fill,
    free_tcp_port,
    ray_memory,
    small_filesystem,
    toml_settings,
)

__all__ = ["STREAM_FAULTS", "base_settings", "format_table", "run_faults_bench"]

_GB = 1024**3
#: the stream's faults, in the order they are given to the stream's exposures, and the
#: quarantine code each must end with (None: processed, with the problem noted)
STREAM_FAULTS: tuple[tuple[str, str | None], ...] = (
    ("clean", None),
    ("dropped_frame", "missing_frames"),
    ("corrupt_frame_header", "missing_frames"),
    ("corrupt_start", "unknown_exposure"),
    ("duplicated_and_shuffled_frames", None),
    ("dropped_frame", "missing_frames"),
)


@dataclass
class _Log:
    """What was injected, when, and what was seen of it."""

    faults: Counter[str] = field(default_factory=Counter)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)

    def note(self, kind: str, **detail: Any) -> None:
        self.faults[kind] += 1
        detail["t_s"] = round(time.monotonic() - self.t0, 1)
        self.details.setdefault(kind, []).append(detail)


def base_settings(sim: Path, max_in_flight: int, *, oom_slowdown_s: float = 15.0) -> dict[str, Any]:
    """The live benchmarks' settings: the simulated detector, loopback endpoints on free ports,
    no running reconstructions, short pauses after failures."""
    return {
        "detector": {
            "gain_reference": str(sim / "gain_reference.mrc"),
            "defects_file": str(sim / "defects.txt"),
        },
        "watcher": {"settle_s": 0.3, "metadata_wait_s": 1.0},
        "store": {
            "publish_address": "tcp://127.0.0.1:0",
            "query_address": "tcp://127.0.0.1:0",
            "control_address": "tcp://127.0.0.1:0",
        },
        "processing": {
            "device": "cpu",
            "max_in_flight": max_in_flight,
            # running 2D/3D reconstructions of a few-hundred-pixel movie mean nothing
            "reconstruction": {"enabled": False},
            "resilience": {"out_of_memory_slowdown_s": oom_slowdown_s, "failure_pause_s": 5.0},
        },
    }


def _schedule(n: int, kills: dict[str, int]) -> dict[int, list[str]]:
    """Which faults fire before which exposure arrives: spread over the run, never two of the
    daemon's kills close together, none in the first tenth (the actors are still starting)."""
    spots = {
        "worker_sigkill": [0.15, 0.45, 0.75, 0.9, 0.3, 0.6],
        "daemon_kill9": [1 / 3, 2 / 3, 0.5, 0.85],
        "ray_memory_monitor": [0.55, 0.25, 0.8],
        "disk_full": [0.85, 0.4],
    }
    at: dict[int, list[str]] = {}
    for kind, count in kills.items():
        for fraction in spots[kind][:count]:
            at.setdefault(max(1, min(n - 1, round(n * fraction))), []).append(kind)
    return at


def run_faults_bench(
    *,
    n: int = 50,
    size: int = 256,
    frames: int = 6,
    workers: int = 2,
    interval_s: float = 1.0,
    stream_every: int = 4,
    worker_kills: int = 3,
    oom_kills: int = 1,
    daemon_kills: int = 2,
    disk_full: bool = True,
    disk_fills: int = 1,
    disk_hold_s: float = 8.0,
    memory_margin_gb: float = 2.5,
    timeout_s: float = 1800.0,
    seed: int = 1,
    work_dir: Path | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Run the chaos session (see the module docstring) and return the report.

    Parameters
    ----------
    n
        Exposures (movie files and, every ``stream_every``-th, frame-stream exposures).
    size, frames
        Movie size (px) and frames per movie.
    workers
        Exposure actors (and the cluster's CPUs).
    interval_s
        Seconds between two arriving exposures.
    worker_kills, oom_kills, daemon_kills
        Exposure workers killed with SIGKILL, kills by Ray's memory monitor, and planned
        ``kill -9`` of the daemon (each followed by a restart).
    disk_full, disk_fills
        Fill the session's disk ``disk_fills`` times (and empty it after ``disk_hold_s``).
    memory_margin_gb
        Ray's memory threshold above the memory in use when the cluster starts, and what the
        session's daemon (0.8 GB) and workers (0.8 GB each) will use.
    timeout_s
        Give up waiting for the session to finish after this long.
    progress
        Told one line per step (default: standard error).
    """
    say = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    log = _Log()
    with tempfile.TemporaryDirectory(prefix="causalscope-faults-", dir=work_dir) as tmp:
        root = Path(tmp)
        say(f"simulating 4 movies of {size}x{size}x{frames}")
        from causalscope.daemon.bench.pipeline import simulate_sources

        sources = simulate_sources(root / "sim", size=size, frames=frames, n_distinct=4, seed=seed)
        used, total = ray_memory()
        # above what is used now, what this session's daemon and workers will use, and a margin
        # for other programs: Ray must kill only when the benchmark allocates
        footprint = (0.8 + 0.8 * workers + memory_margin_gb) * _GB
        threshold = min(0.95, (used + footprint) / total) if oom_kills else None
        config = root / "settings.toml"
        config.write_text(
            toml_settings(base_settings(root / "sim", max(2, workers), oom_slowdown_s=15.0))
        )
        name = "chaos"
        sessions = root / "sessions"
        session_root = sessions / name
        watch = root / "microscope"
        watch.mkdir()
        port = free_tcp_port()
        address = f"tcp://127.0.0.1:{port}"
        disk_mb = max(256, int(3.0 * n * (size / 256) ** 2 * frames / 6) + 160)
        mount_error: str | None = None
        mount = None
        if disk_full:
            try:
                mount = small_filesystem(session_root, disk_mb)
                mount.__enter__()
            except SmallFilesystemUnavailable as error:
                mount, mount_error = None, str(error)
                log.skipped["disk_full"] = mount_error
        try:
            with OwnCluster(
                num_cpus=workers, object_store_mb=200, memory_threshold=threshold
            ) as cluster:
                daemon = DaemonProcess(
                    config,
                    sessions,
                    name,
                    [
                        str(watch),
                        "--zmq",
                        address,
                        "--ray-address",
                        cluster.address,
                        "--workers",
                        str(workers),
                    ],
                    root / "daemon.log",
                )
                report = _chaos(
                    daemon,
                    cluster,
                    sources,
                    root,
                    watch,
                    address,
                    log,
                    say,
                    n=n,
                    interval_s=interval_s,
                    stream_every=stream_every,
                    kills={
                        "worker_sigkill": worker_kills,
                        "daemon_kill9": daemon_kills,
                        "ray_memory_monitor": oom_kills,
                        "disk_full": disk_fills if mount is not None else 0,
                    },
                    disk_hold_s=disk_hold_s,
                    threshold=threshold,
                    timeout_s=timeout_s,
                    session_root=session_root,
                )
        finally:
            if mount is not None:
                mount.__exit__(None, None, None)
        report["movie"] = f"{size}x{size}x{frames}"
        report["workers"] = workers
        report["interval_s"] = interval_s
        report["ray_memory_threshold"] = None if threshold is None else round(threshold, 4)
        report["session_disk_mb"] = disk_mb if mount_error is None and disk_full else None
    return report


def _chaos(
    daemon: DaemonProcess,
    cluster: OwnCluster,
    sources: list[Path],
    root: Path,
    watch: Path,
    address: str,
    log: _Log,
    say: Any,
    *,
    n: int,
    interval_s: float,
    stream_every: int,
    kills: dict[str, int],
    disk_hold_s: float,
    threshold: float | None,
    timeout_s: float,
    session_root: Path,
) -> dict[str, Any]:
    import zmq

    from causalscope.config import load_settings
    from causalscope.daemon.bench.pipeline import _acquire
    from causalscope.daemon.exposures import load_movie

    settings = load_settings(root / "settings.toml")
    movies = [
        load_movie(
            path,
            settings,
            metadata_path=path.with_name(path.name[: -len("_fractions.tiff")] + ".xml"),
        )
        for path in sources
    ]
    plan: list[Planned] = []
    stream_faults = iter(STREAM_FAULTS)
    for index in range(n):
        if stream_every and index % stream_every == stream_every - 1:
            fault, expect = next(stream_faults, ("clean", None))
            plan.append(Planned(f"stream_{index:06d}", "stream", fault, expect))
        else:
            plan.append(Planned(f"FoilHole_{index:06d}_Data_1_1_20260101_000000_fractions", "file"))
    schedule = _schedule(n, kills)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.setsockopt(zmq.SNDTIMEO, 30_000)
    push.connect(address)
    sent_stream: list[str] = []
    garbage_sent = 0
    emptying: list[threading.Timer] = []
    started = time.monotonic()
    say(f"daemon run 1 (pid {daemon.start()})")
    daemon.wait_ready()
    try:
        for index, planned in enumerate(plan):
            acquired = False
            for kind in schedule.get(index, []):
                say(f"[{index}/{n}] {kind}")
                if kind == "worker_sigkill":
                    _kill_worker(cluster, log)
                elif kind == "ray_memory_monitor":
                    _trigger_memory_monitor(cluster, log, threshold)
                elif kind == "disk_full":
                    emptying.append(_fill_disk(session_root, log, disk_hold_s))
                elif kind == "daemon_kill9":
                    wait_stream_recorded(daemon, sent_stream, garbage_sent)
                    noticed = wait_kills_noticed(daemon, log.faults["worker_sigkill"])
                    pid = daemon.pid
                    daemon.kill9()
                    # a movie arrives while the daemon is down: the restart must find it (only
                    # files: the stream would hold it for the socket's reconnection)
                    if planned.source == "file" and not acquired:
                        _acquire(sources, watch, index)
                        acquired = True
                    log.note(
                        "daemon_kill9",
                        pid=pid,
                        exposures_sent=index,
                        movie_while_down=acquired,
                        worker_kills_noticed_before=noticed,
                    )
                    time.sleep(1.0)
                    say(f"daemon run {len(daemon.runs) + 1} (pid {daemon.start()})")
                    daemon.wait_ready()
            if not daemon.alive():
                say(f"the daemon exited by itself; restarting (see {daemon.log})")
                daemon.start()
                daemon.wait_ready()
            if planned.source == "file":
                if not acquired:
                    _acquire(sources, watch, index)
            else:
                movie = movies[index % len(movies)]
                if planned.fault == "clean" and garbage_sent == 0:
                    _send_garbage(push)
                    garbage_sent += 2
                    log.note("stream_garbage_message", count=2)
                _send_stream(push, planned, movie)
                sent_stream.append(planned.exposure_id)
                if planned.fault != "clean":
                    log.note(f"stream_{planned.fault}", exposure_id=planned.exposure_id)
            time.sleep(interval_s)
        say("all exposures sent; waiting for the session to finish")
        finished = wait_finished(daemon, plan, started + timeout_s)
    finally:
        for timer in emptying:
            timer.join()  # the disk is emptied before the daemon stops
        push.close(linger=0)
        stop_code = daemon.stop()
    say(f"daemon stopped ({stop_code}); reading the session database")
    account = account_for(daemon.database, plan)
    runs = [
        {
            "pid": run.pid,
            "up_s": round((run.ended or time.monotonic()) - run.started, 1),
            "ended": run.how,
            "returncode": run.returncode,
        }
        for run in daemon.runs
    ]
    planned_kills = log.faults.get("daemon_kill9", 0)
    unplanned = [run for run in runs if run["ended"] not in ("killed", "stopped")]
    report: dict[str, Any] = {
        "exposures": n,
        "finished_in_time": finished,
        "elapsed_s": round(time.monotonic() - started, 1),
        "faults": dict(log.faults),
        "fault_details": log.details,
        "faults_skipped": log.skipped,
        **account,
        "daemon": {
            "runs": runs,
            "runs_in_database": account.pop("runs_in_database"),
            "planned_restarts": planned_kills,
            "restarts": len(runs) - 1,
            "unplanned_exits": len(unplanned),
            "uptime_unbroken": not unplanned and len(runs) == planned_kills + 1,
        },
    }
    # what the daemon told the operator on its terminal (a full disk may keep it out of the
    # session database: the message could not be written there)
    text = daemon.log.read_text(errors="replace") if daemon.log.exists() else ""
    report["terminal_problems"] = [
        line[:300] for line in text.splitlines() if line.startswith("[problem]")
    ][:20]
    if unplanned or account["lost"] or not finished:
        text = daemon.log.read_text(errors="replace") if daemon.log.exists() else ""
        report["daemon_log_tail"] = text[-4000:]
    report["summary"] = {
        "faults": dict(log.faults),
        "faults_skipped": log.skipped,
        "done": report["done"],
        "quarantined": report["quarantined"],
        "lost": report["lost"],
        "duplicated": report["duplicated"],
        "restarts": report["daemon"]["restarts"],
        "planned_restarts": planned_kills,
        "uptime_unbroken": report["daemon"]["uptime_unbroken"],
    }
    return report


def _busy_worker(cluster: OwnCluster, wait_s: float) -> tuple[list[int], bool]:
    """Exposure workers, waiting up to ``wait_s`` for one to be running an exposure."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        busy = cluster.worker_pids(busy=True)
        if busy:
            return busy, True
        time.sleep(0.2)
    return cluster.worker_pids(), False


def _kill_worker(cluster: OwnCluster, log: _Log) -> None:
    pids, busy = _busy_worker(cluster, 30.0)
    if not pids:
        log.skipped.setdefault("worker_sigkill", "no exposure worker was running when due")
        return
    os.kill(pids[0], signal.SIGKILL)
    log.note("worker_sigkill", pid=pids[0], busy=busy)


def _trigger_memory_monitor(cluster: OwnCluster, log: _Log, threshold: float | None) -> None:
    """Allocate (and touch) memory past Ray's threshold until Ray kills a worker; free it."""
    if threshold is None:
        return
    _, busy = _busy_worker(cluster, 30.0)  # Ray kills a worker that runs a task
    before = set(cluster.worker_pids("ray::"))
    used, total = ray_memory()
    need = int(threshold * total) - used + _GB // 2
    if need > total - used - _GB:
        log.skipped["ray_memory_monitor"] = (
            f"not enough free memory to cross Ray's threshold ({need / _GB:.1f} GB needed)"
        )
        return
    started = time.monotonic()
    hog = np.ones(max(need, 0) // 8)  # pages touched: they count
    killed: list[int] = []
    try:
        while time.monotonic() - started < 30.0:
            killed = sorted(before - set(cluster.worker_pids("ray::")))
            if killed:
                break
            time.sleep(0.1)
    finally:
        del hog
    log.note(
        "ray_memory_monitor",
        allocated_gb=round(need / _GB, 2),
        worker_busy=busy,
        workers_killed=killed,
        seconds_to_kill=round(time.monotonic() - started, 1) if killed else None,
    )


def _fill_disk(session_root: Path, log: _Log, hold_s: float) -> threading.Timer:
    """Fill the session's disk now and empty it after ``hold_s`` (exposures keep arriving)."""
    used = shutil.disk_usage(session_root).used
    filler = fill(session_root)
    log.note(
        "disk_full",
        session_mb=round(used / 2**20, 1),
        filler_mb=round(filler.stat().st_size / 2**20, 1),
        hold_s=hold_s,
    )
    timer = threading.Timer(hold_s, filler.unlink)
    timer.start()
    return timer


def _send_garbage(push: Any) -> None:
    push.send_multipart([os.urandom(48)])  # not JSON
    push.send_multipart([b'{"type": "frame", "exposure_id": 7}', b"\x00" * 16])  # bad fields


def _send_stream(push: Any, planned: Planned, movie: Any) -> None:
    from causalscope.daemon.sources.stream_sender import StreamFaults, send_exposure

    faults = {
        "clean": StreamFaults(),
        "dropped_frame": StreamFaults(drop=(1,)),
        "corrupt_frame_header": StreamFaults(corrupt=(1,)),
        "corrupt_start": StreamFaults(corrupt_start=True),
        "duplicated_and_shuffled_frames": StreamFaults(duplicate=(0,), shuffle_seed=3),
    }[planned.fault]
    send_exposure(
        push,
        planned.exposure_id,
        np.asarray(movie.frames),
        pixel_size_angstrom=movie.pixel_size_angstrom,
        metadata=movie.metadata,
        faults=faults,
    )
