"""The HTTP API's benchmark on a session that really processes movies.

``causalscope watch --zmq ADDR --serve`` runs as a subprocess on a Ray cluster of the
benchmark's own (its exposure actors processing every movie: motion, CTF, restoration,
picking, scores), and the benchmark streams small simulated movies into it, keeping
``in_flight`` of them sent and not yet finished, as a detector pacing itself would. After a
warm-up (the actors start), ``seconds`` without clients, then ``seconds`` with ``clients``
concurrent clients polling the API (:func:`causalscope.daemon.bench.serve.poll_paths`: pages
of exposures, the summary, ``/sessions``, ``/metrics``, the causes, one SQL query and a
micrograph's PNG, each as soon as the last answered; in a process of their own, niced, as
they stand in for browsers and scrapers on other machines, with the CPU they used reported).
One more client follows the event stream throughout.

From the session database afterwards: each phase's exposures committed, pace (per minute) and
latency (the movie complete -> its record committed, the wait behind the others in flight
included: median, p95, max), so a stall of the session under the load shows as a lower pace or
a longer latency; the API's response times (median, p99, max) and errors; and the delay from
each exposure's commit (``done_at``) to its event.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from causalscope.daemon.bench._live import DaemonProcess, OwnCluster, free_tcp_port, toml_settings
from causalscope.daemon.bench.serve import follow_events, poll_in_process, quantiles_ms
from causalscope.daemon.bench.soak import finished_count, metadata_beside, send_copy

__all__ = ["run_live_serve_bench"]

_SESSION = "live"


def _paths(session: str) -> tuple[str, ...]:
    return (
        f"/sessions/{session}/exposures?page={{k}}&page_size=50",
        f"/sessions/{session}",
        "/sessions",
        "/metrics",
        f"/sessions/{session}/causes",
        f"/sessions/{session}/sql?q=SELECT%20gate_status,%20count(*)%20FROM%20exposures"
        "%20GROUP%20BY%20ALL",
        f"/sessions/{session}/exposures/warm_000000/micrograph.png",
    )


class _Sender:
    """Streams movies into the daemon, at most ``in_flight`` unfinished, until stopped."""

    def __init__(self, daemon: DaemonProcess, movies: list[Any], address: str, in_flight: int):
        self.daemon, self.movies, self.address, self.in_flight = daemon, movies, address, in_flight
        self.sent = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self.error is not None:
            raise RuntimeError(f"the sender failed: {self.error}") from self.error

    def _run(self) -> None:
        import zmq

        push: Any = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.setsockopt(zmq.SNDTIMEO, 30_000)
        push.connect(self.address)
        try:
            while not self._stop.is_set():
                finished = finished_count(self.daemon, f"{_SESSION}_")
                while finished is not None and self.sent - finished < self.in_flight:
                    send_copy(push, self.movies, f"live_{self.sent:06d}")
                    self.sent += 1
                self._stop.wait(0.25)
        except BaseException as error:  # re-raised by stop()
            self.error = error
        finally:
            push.close(linger=0)


def _wait_for(check: Any, timeout_s: float, what: str, daemon: DaemonProcess) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not daemon.alive():
            raise RuntimeError(f"the daemon exited by itself while {what}; see {daemon.log}")
        if check():
            return
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout_s:g} s {what}; see {daemon.log}")


def _api_up(url: str) -> bool:
    import requests

    try:
        return requests.get(url + "/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _phase(database: Path, start: float, end: float) -> dict[str, Any]:
    """Exposures committed between ``start`` and ``end`` (epoch seconds): count, pace and
    latency."""
    import duckdb

    with duckdb.connect(str(database), read_only=True) as db:
        rows = db.execute(
            "SELECT latency_s FROM exposures WHERE state = 'done' AND latency_s IS NOT NULL "
            "AND epoch(done_at) >= ? AND epoch(done_at) < ?",
            [start, end],
        ).fetchall()
    latencies = sorted(float(r[0]) for r in rows)
    if not latencies:
        return {"exposures": 0, "per_minute": 0.0, "latency_s": None}
    return {
        "exposures": len(latencies),
        "per_minute": round(60.0 * len(latencies) / (end - start), 1),
        "latency_s": {
            "median": round(statistics.median(latencies), 3),
            "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
            "max": round(latencies[-1], 3),
        },
    }


def _event_delays(database: Path, received: dict[str, float], start: float) -> dict[str, Any]:
    import duckdb

    with duckdb.connect(str(database), read_only=True) as db:
        rows = db.execute(
            "SELECT exposure_id, epoch(done_at) FROM exposures WHERE state = 'done' "
            "AND epoch(done_at) >= ?",
            [start],
        ).fetchall()
    delays = [received[e] - float(t) for e, t in rows if e in received]
    missed = [e for e, _ in rows if e not in received]
    return {**quantiles_ms(delays), "missed": len(missed)}


def run_live_serve_bench(
    *,
    clients: int = 50,
    seconds: float = 60.0,
    size: int = 128,
    frames: int = 4,
    workers: int = 2,
    in_flight: int = 4,
    seed: int = 1,
    progress: Any = None,
) -> dict[str, Any]:
    """The API under ``clients`` concurrent clients while a live session processes movies
    (module docstring); a JSON report."""
    say = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    from causalscope.config import load_settings
    from causalscope.daemon.bench.faults import base_settings
    from causalscope.daemon.bench.pipeline import simulate_sources
    from causalscope.daemon.exposures import load_movie

    with tempfile.TemporaryDirectory(prefix="causalscope-serve-live-") as tmp:
        root = Path(tmp)
        sources = simulate_sources(root / "sim", size=size, frames=frames, n_distinct=4, seed=seed)
        config = root / "settings.toml"
        config.write_text(toml_settings(base_settings(root / "sim", max(2, workers))))
        settings = load_settings(config)
        movies = [
            load_movie(path, settings, metadata_path=metadata_beside(path)) for path in sources
        ]
        address = f"tcp://127.0.0.1:{free_tcp_port()}"
        port = free_tcp_port()
        url = f"http://127.0.0.1:{port}"
        with OwnCluster(num_cpus=workers, object_store_mb=200) as cluster:
            daemon = DaemonProcess(
                config,
                root / "sessions",
                _SESSION,
                [
                    *("--zmq", address, "--ray-address", cluster.address),
                    *("--workers", str(workers), "--serve", "--port", str(port)),
                ],
                root / "daemon.log",
            )
            daemon.start()
            try:
                daemon.wait_ready()
                _wait_for(lambda: _api_up(url), 300, "waiting for the API", daemon)
                say(f"API up at {url}")
                import zmq

                push: Any = zmq.Context.instance().socket(zmq.PUSH)
                push.setsockopt(zmq.SNDTIMEO, 30_000)
                push.connect(address)
                warm = 2 * in_flight
                for index in range(warm):  # the actors start and import torch; not counted
                    send_copy(push, movies, f"warm_{index:06d}")
                push.close(linger=30_000)  # what is queued still goes out
                _wait_for(
                    lambda: (finished_count(daemon, "warm_") or 0) >= warm,
                    300,
                    "warming up",
                    daemon,
                )
                say(f"warmed up ({warm} exposures)")
                received: dict[str, float] = {}
                stop_events = threading.Event()
                follower = threading.Thread(
                    target=follow_events,
                    args=(url, _SESSION, received, stop_events),
                    daemon=True,
                )
                follower.start()
                time.sleep(1.0)  # the stream's subscription is in place
                sender = _Sender(daemon, movies, address, in_flight)
                sender.start()
                idle_start = time.time()
                time.sleep(seconds)
                idle_end = loaded_start = time.time()
                say(f"{seconds:g} s without clients; now {clients} clients for {seconds:g} s")
                polled = poll_in_process(url, clients, seconds, _paths(_SESSION))
                loaded_end = time.time()
                sender.stop()
                _wait_for(
                    lambda: (finished_count(daemon, f"{_SESSION}_") or 0) >= sender.sent,
                    300,
                    "finishing",
                    daemon,
                )
                time.sleep(1.0)
                stop_events.set()
            finally:
                code = daemon.stop()
            unplanned = [run.how for run in daemon.runs if run.how != "stopped"]
            idle = _phase(daemon.database, idle_start, idle_end)
            loaded = _phase(daemon.database, loaded_start, loaded_end)
            events = _event_delays(daemon.database, received, idle_start)
            log_tail = daemon.log.read_text(errors="replace")[-3000:]
    responses = quantiles_ms(polled["times"])
    report: dict[str, Any] = {
        "session": "causalscope watch --zmq --serve, processing every movie",
        "movie": f"{size}x{size}x{frames}",
        "workers": workers,
        "in_flight": in_flight,
        "clients": clients,
        "seconds": seconds,
        "session_without_clients": idle,
        "session_with_clients": loaded,
        "responses_ms": responses,
        "responses_ms_by_path": {p: quantiles_ms(t) for p, t in polled["by_path"].items()},
        "requests_per_s": round(len(polled["times"]) / seconds, 1),
        "clients_cpu_s": round(polled["clients_cpu_s"], 1),
        "errors": polled["errors"],
        "event_delay_ms": events,
        "daemon_exit_code": code,
        "daemon_unplanned_exits": len(unplanned),
    }
    if unplanned or code not in (0, None):
        report["daemon_log_tail"] = log_tail
    report["summary"] = {
        "clients": clients,
        "seconds": seconds,
        "requests": len(polled["times"]),
        "errors": sum(polled["errors"].values()),
        "clients_cpu_s": round(polled["clients_cpu_s"], 1),
        "response_median_ms": responses["median"],
        "response_p99_ms": responses["p99"],
        "per_minute_without_clients": idle["per_minute"],
        "per_minute_with_clients": loaded["per_minute"],
        "latency_median_s_without_clients": (idle["latency_s"] or {}).get("median"),
        "latency_median_s_with_clients": (loaded["latency_s"] or {}).get("median"),
        "event_delay_max_ms": events["max"],
        "events_missed": events["missed"],
    }
    return json.loads(json.dumps(report))  # plain types only
