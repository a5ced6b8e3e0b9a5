"""End-to-end pipeline benchmark: a watched folder -> Ray actors -> the session store.

A few movies are simulated once and then "acquired" again and again under new names (movie and
EPU XML), as a detector would write them, into a watched folder. Three phases:

- throughput: a burst of ``n`` movies; exposures per minute from the first settled file to the
  last committed record;
- latency: movies arriving at a pace the actors keep up with (1.5x the burst's time per
  exposure); latency is from the moment the watcher found a file settled to its committed
  record (the settle time itself, ``watcher.settle_s``, comes before and is reported apart);
- memory: resident memory of the daemon process and of each actor after ``memory_n``
  exposures against after the first tenth of them (small movies: memory growth does not depend
  on the movie's size, and 500 large movies would take hours on 2 cores).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = [
    "bench_settings",
    "memory_growth",
    "run_phase",
    "run_pipeline_bench",
    "simulate_sources",
]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_mib(pid: int | None = None) -> float | None:
    path = f"/proc/{pid or 'self'}/statm"
    try:
        with open(path) as handle:
            return int(handle.read().split()[1]) * _PAGE / 2**20
    except OSError:
        return None


class _Latencies:
    def __init__(self) -> None:
        self.values: list[float] = []
        self.statuses: dict[str, int] = {}
        self.lock = threading.Lock()
        self.problems: list[str] = []

    def committed(self, record: Any, latency_s: float) -> None:
        with self.lock:
            self.values.append(latency_s)
            self.statuses[record.status] = self.statuses.get(record.status, 0) + 1

    def quarantined(self, exposure_id: str | None, origin: str, code: str, reason: str) -> None:
        self.problems.append(f"quarantined {exposure_id}: {code}")

    def skipped(self, exposure_id: str, state: str) -> None:
        pass

    def problem(self, title: str, message: str) -> None:
        self.problems.append(f"{title}: {message}")


def simulate_sources(
    folder: Path, *, size: int, frames: int, n_distinct: int, seed: int
) -> list[Path]:
    from causalscope.config import load_settings
    from causalscope.daemon.simulator import SimulationRequest, run_simulation

    settings = load_settings(overrides={"simulation": {"size_px": size, "n_frames": frames}})
    run_simulation(settings, SimulationRequest(out_dir=folder, n_exposures=n_distinct, seed=seed))
    return sorted(folder.rglob("*_fractions.tiff"))


def _acquire(sources: list[Path], target: Path, index: int) -> None:
    """Write copy ``index`` of a simulated movie (and its XML) as a detector would."""
    movie = sources[index % len(sources)]
    stem = f"FoilHole_{index:06d}_Data_1_1_20260101_000000"
    xml = movie.with_name(movie.name.replace("_fractions.tiff", ".xml"))
    staging = target / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    tmp = staging / f"{stem}_fractions.tiff"
    shutil.copyfile(movie, tmp)
    os.replace(tmp, target / f"{stem}_fractions.tiff")  # renamed into place, as EPU does
    if xml.exists():
        shutil.copyfile(xml, target / f"{stem}.xml")


def run_phase(
    settings: Any,
    sources: list[Path],
    root: Path,
    name: str,
    n: int,
    *,
    interval_s: float,
    n_workers: int | None,
    sample_at: int | None = None,
) -> dict[str, Any]:
    from causalscope.daemon.live import LiveOptions, LiveSession
    from causalscope.daemon.session import SessionPaths

    watch = root / f"{name}-microscope"
    watch.mkdir(parents=True)
    reporter = _Latencies()
    options = LiveOptions(directory=watch, n_workers=n_workers, publish=True, query=False)
    session = LiveSession(
        settings, SessionPaths.under(root / "sessions", name), options, reporter=reporter
    )
    done = threading.Event()
    samples: dict[str, Any] = {}

    def feed() -> None:
        for index in range(n):
            _acquire(sources, watch, index)
            if interval_s:
                time.sleep(interval_s)
        done.set()

    def sample() -> None:
        pool = session.scheduler.pool if session.scheduler else None
        pids = pool.actor_process_ids() if pool is not None else []  # type: ignore[attr-defined]
        samples[str(len(reporter.values))] = {
            "daemon_mib": _rss_mib(),
            "actors_mib": [_rss_mib(pid) for pid in pids],
        }

    feeder = threading.Thread(target=feed, daemon=True)
    with session:
        # one warm-up exposure first: actors start and import torch; not part of the numbers
        _acquire(sources, watch, n)
        while not reporter.values and not reporter.problems:
            assert session.scheduler is not None
            session.scheduler.step(0.1)
        reporter.values.clear()
        reporter.statuses.clear()
        started = time.monotonic()
        feeder.start()
        next_sample = sample_at
        while not (done.is_set() and len(reporter.values) + len(reporter.problems) >= n):
            assert session.scheduler is not None
            session.scheduler.step(0.1)
            for source in session.sources:
                source.check()
            if next_sample is not None and len(reporter.values) >= next_sample:
                sample()
                next_sample = None if next_sample >= n else n
        elapsed = time.monotonic() - started
    latencies = sorted(reporter.values)
    return {
        "exposures": len(latencies),
        "statuses": reporter.statuses,
        "problems": reporter.problems[:5],
        "elapsed_s": round(elapsed, 2),
        "exposures_per_minute": round(60.0 * len(latencies) / elapsed, 2),
        "latency_s": {
            "median": round(statistics.median(latencies), 2) if latencies else None,
            "p90": round(latencies[int(0.9 * (len(latencies) - 1))], 2) if latencies else None,
            "max": round(latencies[-1], 2) if latencies else None,
        },
        "memory_samples": samples,
    }


def bench_settings(sim: Path, *, device: str, settle_s: float) -> Any:
    """The benchmark's settings: the simulated detector's gain and defects, loopback endpoints
    on free ports, four exposures in flight."""
    from causalscope.config import load_settings

    return load_settings(
        overrides={
            "processing": {"device": device, "max_in_flight": 4},
            "watcher": {"settle_s": settle_s, "metadata_wait_s": 2.0},
            "detector": {
                "gain_reference": str(sim / "gain_reference.mrc"),
                "defects_file": str(sim / "defects.txt"),
            },
            "store": {
                "publish_address": "tcp://127.0.0.1:0",
                "query_address": "tcp://127.0.0.1:0",
            },
        }
    )


def run_pipeline_bench(
    *,
    n: int = 20,
    size: int = 1024,
    frames: int = 20,
    memory_n: int = 200,
    memory_size: int = 256,
    memory_frames: int = 8,
    n_workers: int | None = None,
    settle_s: float = 0.5,
    device: str = "cpu",
    work_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the three phases (see the module docstring) and return the report."""
    from causalscope.daemon.workers import start_ray

    with tempfile.TemporaryDirectory(prefix="causalscope-bench-", dir=work_dir) as tmp:
        root = Path(tmp)
        sources = simulate_sources(root / "sim", size=size, frames=frames, n_distinct=4, seed=1)
        settings = bench_settings(root / "sim", device=device, settle_s=settle_s)
        ray_started = time.monotonic()
        cluster = start_ray()
        ray_s = time.monotonic() - ray_started
        burst = run_phase(settings, sources, root, "burst", n, interval_s=0.0, n_workers=n_workers)
        per_exposure = 60.0 / max(burst["exposures_per_minute"], 1e-6)
        paced = run_phase(
            settings,
            sources,
            root,
            "paced",
            max(4, n // 2),
            interval_s=1.5 * per_exposure,
            n_workers=n_workers,
        )
        report: dict[str, Any] = {
            "ray": cluster,
            "ray_start_s": round(ray_s, 2),
            "cpus": os.cpu_count(),
            "movie": f"{size}x{size}x{frames}",
            "settle_s": settle_s,
            "throughput": burst,
            "latency": paced,
        }
        if memory_n:
            report["memory"] = _memory_phase(
                settings, root, memory_n, memory_size, memory_frames, n_workers
            )
    return report


def _memory_phase(
    settings: Any,
    root: Path,
    memory_n: int,
    memory_size: int,
    memory_frames: int,
    n_workers: int | None,
) -> dict[str, Any]:
    """``memory_n`` small exposures; resident memory at the end against after the first tenth."""
    small = simulate_sources(
        root / "sim-small", size=memory_size, frames=memory_frames, n_distinct=4, seed=2
    )
    small_settings = settings.model_copy(
        update={
            "detector": settings.detector.model_copy(
                update={
                    "gain_reference": root / "sim-small" / "gain_reference.mrc",
                    "defects_file": root / "sim-small" / "defects.txt",
                }
            )
        }
    )
    memory = run_phase(
        small_settings,
        small,
        root,
        "memory",
        memory_n,
        interval_s=0.0,
        n_workers=n_workers,
        sample_at=max(1, memory_n // 10),
    )
    memory["growth"] = memory_growth(memory["memory_samples"])
    memory["movie"] = f"{memory_size}x{memory_size}x{memory_frames}"
    return memory


def memory_growth(samples: dict[str, Any]) -> dict[str, Any]:
    """Resident memory growth (%) of the daemon and of each actor from the first sample to the
    last (``{exposures done: {"daemon_mib", "actors_mib"}}``, in the order taken; keyed by the
    exposures done then, which can pass the planned count when a scheduler step finishes several
    at once); empty with fewer than two samples."""
    if len(samples) < 2:
        return {}
    taken = list(samples.items())
    (after, first), (_, last) = taken[0], taken[-1]
    return {
        "from_exposure": int(after),
        "daemon_percent": _percent(first["daemon_mib"], last["daemon_mib"]),
        "actors_percent": [
            _percent(a, b) for a, b in zip(first["actors_mib"], last["actors_mib"], strict=False)
        ],
    }


def _percent(before: float | None, after: float | None) -> float | None:
    if not before or after is None:
        return None
    return round(100.0 * (after - before) / before, 1)
