"""The HTTP API's benchmark: many clients polling a running session over Ray Serve.

A session store commits exposures at a steady rate (the records of the dashboard's benchmark,
through its query and publish endpoints, as a daemon does) while the API serves its folder on
loopback. First ``seconds`` without clients: the commit time (``store.commit_exposure``) as
the baseline. Then ``clients`` concurrent clients (asyncio + aiohttp in a separate process, so
they do not share the store's interpreter) poll for ``seconds``: a page of exposures, the
summary, ``/sessions`` and ``/metrics`` in turn, each as soon as the last answered; every
response's time and any error are counted, and the commit time is measured again. One more
client follows the event stream throughout: the delay from each commit's return to its event.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["follow_events", "poll_in_process", "quantiles_ms", "run_serve_bench"]

_PATHS = (
    "/sessions/bench/exposures?page={k}&page_size=50",
    "/sessions/bench",
    "/sessions",
    "/metrics",
    "/sessions/bench/exposures?status=fail&page_size=20",
)


def quantiles_ms(values: list[float]) -> dict[str, float | int | None]:
    """Count, median, p99 and max of durations in seconds, the three in milliseconds."""
    if not values:
        return {"n": 0, "median": None, "p99": None, "max": None}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {
        "n": len(values),
        "median": 1e3 * statistics.median(values),
        "p99": 1e3 * p99,
        "max": 1e3 * ordered[-1],
    }


async def _poll(url: str, clients: int, seconds: float, paths: tuple[str, ...]) -> dict[str, Any]:
    import aiohttp

    times: list[float] = []
    by_path: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    stop = time.monotonic() + seconds

    async def client(index: int, session: aiohttp.ClientSession) -> None:
        k = index
        while time.monotonic() < stop:
            path = paths[k % len(paths)].format(k=k % 4)
            k += 1
            t0 = time.perf_counter()
            try:
                async with session.get(url + path) as response:
                    await response.read()
                    if response.status != 200:
                        key = f"HTTP {response.status} {path}"
                        errors[key] = errors.get(key, 0) + 1
                        continue
            except (aiohttp.ClientError, TimeoutError) as error:
                key = f"{type(error).__name__} {path}"
                errors[key] = errors.get(key, 0) + 1
                continue
            times.append(time.perf_counter() - t0)
            by_path.setdefault(paths[(k - 1) % len(paths)], []).append(times[-1])

    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    return {"times": times, "by_path": by_path, "errors": errors}


def _load(url: str, clients: int, seconds: float, paths: tuple[str, ...], out: Any) -> None:
    # the clients stand in for browsers and scrapers on other machines: on this one their own
    # CPU comes after the session's and the API's (niced), and what they used is reported
    os.nice(10)
    started = time.process_time()
    polled = asyncio.run(_poll(url, clients, seconds, paths))
    polled["clients_cpu_s"] = time.process_time() - started
    out.put(polled)


def poll_in_process(
    url: str, clients: int, seconds: float, paths: tuple[str, ...] = _PATHS
) -> dict[str, Any]:
    """``clients`` concurrent clients polling ``paths`` in turn for ``seconds``, in a process of
    their own (so that they share no interpreter with what they measure; niced): every
    response's time (s), the times by path, the errors by kind and path, and the CPU seconds
    the clients' process used (``clients_cpu_s``)."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    load = context.Process(target=_load, args=(url, clients, seconds, paths, out))
    load.start()
    try:
        polled: dict[str, Any] = out.get(timeout=seconds + 120)
    finally:
        load.join(timeout=30)
    return polled


def _commit_for(
    store: Any, seconds: float, rate_per_s: float, first: int, sent: dict[str, float]
) -> list[float]:
    """Commit records at ``rate_per_s`` for ``seconds``; each commit's duration."""
    from causalscope.daemon.bench.tui import _record

    durations: list[float] = []
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        due = start + i / rate_per_s
        if time.monotonic() < due:
            time.sleep(due - time.monotonic())
        record = _record(first + i)
        t0 = time.perf_counter()
        store.commit_exposure(record, params_hash="bench")
        durations.append(time.perf_counter() - t0)
        sent[record.exposure_id] = time.time()
        i += 1
    return durations


def follow_events(
    url: str, session: str, received: dict[str, float], stop: threading.Event
) -> None:
    """Follow ``session``'s event stream until ``stop`` or its end: each exposure's arrival
    time. A stream cut off (the server stopping) ends it; what arrived is what counts."""
    import json

    import requests

    try:
        with requests.get(
            f"{url}/sessions/{session}/events",
            params={"topics": "exposure"},
            stream=True,
            timeout=30,
        ) as stream:
            for raw in stream.iter_lines():
                line = raw.decode() if isinstance(raw, bytes) else str(raw)
                if stop.is_set():
                    break
                if line.startswith("data: ") and line != "data: {}":
                    received[json.loads(line[6:])["exposure_id"]] = time.time()
    except requests.RequestException as error:
        if not stop.is_set():
            print(f"event stream ended: {error}", file=sys.stderr)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_serve_bench(
    *, clients: int = 10, seconds: float = 10.0, rate_per_s: float = 2.0, seed_rows: int = 500
) -> dict[str, Any]:
    """Commit time without and with ``clients`` polling the API; the API's response times
    (median, p99, max in ms), errors, and the event stream's delay; a JSON report."""
    import ray

    from causalscope.daemon.bench.tui import make_session
    from causalscope.daemon.serve import start_api, stop_api
    from causalscope.daemon.store import SessionStore

    with tempfile.TemporaryDirectory(prefix="causalscope-serve-bench-") as tmp:
        folder = Path(tmp) / "sessions"
        (folder / "bench").mkdir(parents=True)
        database = folder / "bench" / "bench.duckdb"
        make_session(database, seed_rows)
        started_ray = not ray.is_initialized()
        if started_ray:
            ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
        any_port = "tcp://127.0.0.1:0"
        try:
            with SessionStore(database, publish_address=any_port, query_address=any_port) as store:
                url = start_api(folder, port=_free_port())
                sent: dict[str, float] = {}
                received: dict[str, float] = {}
                stop = threading.Event()
                follower = threading.Thread(
                    target=follow_events, args=(url, "bench", received, stop), daemon=True
                )
                follower.start()
                time.sleep(1.0)  # the stream's subscription is in place
                idle = _commit_for(store, seconds, rate_per_s, 100_000, sent)
                polled: dict[str, Any] = {}
                poller = threading.Thread(
                    target=lambda: polled.update(poll_in_process(url, clients, seconds)),
                    daemon=True,
                )
                poller.start()
                loaded = _commit_for(store, seconds, rate_per_s, 200_000, sent)
                poller.join(timeout=seconds + 150)
                stop.set()
                time.sleep(1.5)
                stop_api()
        finally:
            if started_ray:
                ray.shutdown()
    delays = [received[k] - sent[k] for k in sent if k in received]
    responses = quantiles_ms(polled["times"])
    n_errors = sum(polled["errors"].values())
    commit_idle, commit_loaded = quantiles_ms(idle), quantiles_ms(loaded)
    return {
        "clients": clients,
        "seconds": seconds,
        "rate_per_s": rate_per_s,
        "seed_exposures": seed_rows,
        "commit_ms": {"without_load": commit_idle, "with_load": commit_loaded},
        "commits": {"without_load": len(idle), "with_load": len(loaded)},
        "responses_ms": responses,
        "responses_ms_by_path": {p: quantiles_ms(t) for p, t in polled["by_path"].items()},
        "requests_per_s": len(polled["times"]) / seconds,
        "clients_cpu_s": polled["clients_cpu_s"],
        "errors": polled["errors"],
        "event_delay_ms": {**quantiles_ms(delays), "missed": len(sent) - len(delays)},
        "summary": {
            "clients": clients,
            "seconds": seconds,
            "requests": len(polled["times"]),
            "errors": n_errors,
            "response_p99_ms": responses["p99"],
            "response_median_ms": responses["median"],
            "commit_median_ms_without_load": commit_idle["median"],
            "commit_median_ms_with_load": commit_loaded["median"],
            "commit_max_ms_with_load": commit_loaded["max"],
            "commits_with_load": len(loaded),
            "event_delay_max_ms": quantiles_ms(delays)["max"],
        },
    }
