"""``/metrics``: every session under the folder in Prometheus's text format.

Made with ``prometheus_client`` at each scrape from the sessions themselves (a running one
through its query and control endpoints, a finished one from its file), so the numbers are
the store's, never a second count kept here. Every metric carries the label ``session``.

``causalscope_session_up``           1 when the session could be read, else 0
``causalscope_session_live``         1 while its daemon runs
``causalscope_exposures``            exposures by ``status``: pending, done, quarantined and
                                     the done ones' gate verdict pass, warn, fail
``causalscope_exposure_latency_seconds``  histogram: movie complete -> commit
``causalscope_particles``            particles picked on done exposures
``causalscope_resolution_angstrom``  the latest 3D map's gold-standard FSC 0.143 resolution
``causalscope_acquisition_per_minute``, ``causalscope_processing_per_minute``,
``causalscope_queue_exposures``, ``causalscope_in_flight_exposures``,
``causalscope_workers``, ``causalscope_keeping_up``, ``causalscope_paused``
                                     a running session's status (its pool's configured
                                     workers, 0 before the first movie, and whether they keep
                                     up with acquisition)

A running session's exposure workers (Ray actors), from its status's ``worker_health``; a
finished session has none of these, and one whose pool starts at the first movie has 0 alive.
The counters count this run of the daemon (they start again from 0 when it restarts):

``causalscope_workers_alive``        actors started and answering, of ``causalscope_workers``
                                     (a replacement Ray cannot place is not alive)
``causalscope_worker_replacements_total``  actors replaced, by ``reason``: ``failure`` (Ray
                                     failed the worker) or ``memory`` (recycled between
                                     exposures above ``worker_memory_limit_mb``)
``causalscope_worker_failures_total``  exposure attempts that Ray failed, by ``kind``:
                                     ``out_of_memory``, ``actor_died``, ``worker_crashed``,
                                     ``node_died``, ``object_lost``, ``actor_unavailable``,
                                     ``ray_unreachable``, ``ray_error`` (every kind present,
                                     0 until it happens)
``causalscope_worker_memory_bytes``  each worker's resident memory by ``slot``, measured
                                     after its latest exposure (absent until measured)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from pydantic import ValidationError

from causalscope.daemon.client import views
from causalscope.daemon.client.errors import StoreError
from causalscope.daemon.client.wire import WorkerHealth
from causalscope.daemon.serve.sessions import SessionRef, list_sessions

__all__ = ["LATENCY_BUCKETS_S", "SessionsCollector", "router"]

router = APIRouter(tags=["service"])

#: Upper bounds of the latency histogram's buckets, in seconds.
LATENCY_BUCKETS_S = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

_COUNTS_SQL = (
    "SELECT count(*) FILTER (WHERE state = 'seen'), count(*) FILTER (WHERE state = 'done'), "
    "count(*) FILTER (WHERE state = 'quarantined'), "
    "count(*) FILTER (WHERE state = 'done' AND gate_status = 'pass'), "
    "count(*) FILTER (WHERE state = 'done' AND gate_status = 'warn'), "
    "count(*) FILTER (WHERE state = 'done' AND gate_status = 'fail'), "
    "count(latency_s), coalesce(sum(latency_s), 0), "
    + ", ".join(f"count(*) FILTER (WHERE latency_s <= {b})" for b in LATENCY_BUCKETS_S)
    + ", (SELECT coalesce(sum(p.n_particles), 0) FROM picking AS p JOIN exposures AS x "
    "USING (exposure_id) WHERE x.state = 'done') FROM exposures"
)
_STATUSES = ("pending", "done", "quarantined", "pass", "warn", "fail")
_RESOLUTION_SQL = "SELECT resolution_angstrom FROM reconstructions ORDER BY version DESC LIMIT 1"
_LIVE_GAUGES = (
    ("acquisition_per_minute", "acquisition_per_min", "Exposures seen per minute (recent)."),
    ("processing_per_minute", "processing_per_min", "Exposures finished per minute (recent)."),
    ("queue_exposures", "queue", "Exposures waiting for a worker."),
    ("in_flight_exposures", "in_flight", "Exposures being processed."),
)


class SessionsCollector:
    """A ``prometheus_client`` collector over the sessions in ``folder``.

    ``read`` reads one session: whether it is live, its counts, its latest resolution and a
    running one's status (default: through the session's endpoints, or its file).
    """

    def __init__(
        self, folder: Path, *, read: Callable[[SessionRef], dict[str, Any]] | None = None
    ) -> None:
        self.folder = folder
        self._read = read or _read

    def collect(self) -> Iterator[Metric]:
        """The metric families, one sample per session."""
        gauges: dict[str, GaugeMetricFamily] = {}
        counters: dict[str, CounterMetricFamily] = {}

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            if name not in gauges:
                gauges[name] = GaugeMetricFamily(
                    f"causalscope_{name}", doc, labels=["session", *extra]
                )
            return gauges[name]

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> CounterMetricFamily:
            if name not in counters:  # exposed as causalscope_<name>_total
                counters[name] = CounterMetricFamily(
                    f"causalscope_{name}", doc, labels=["session", *extra]
                )
            return counters[name]

        up = gauge("session_up", "1 when the session could be read, else 0.")
        live = gauge("session_live", "1 while the session's daemon runs.")
        latency = HistogramMetricFamily(
            "causalscope_exposure_latency_seconds",
            "Seconds from a movie being complete to its commit.",
            labels=["session"],
        )
        for ref in list_sessions(self.folder):
            try:
                found = self._read(ref)
            except StoreError:
                up.add_metric([ref.name], 0)
                continue
            up.add_metric([ref.name], 1)
            live.add_metric([ref.name], 1 if found["live"] else 0)
            counts = found["counts"]
            exposures = gauge("exposures", "Exposures by status.", ("status",))
            for status, value in zip(_STATUSES, counts[:6], strict=True):
                exposures.add_metric([ref.name, status], value)
            n_timed, total_s, *cumulative, particles = counts[6:]
            buckets = [(f"{b:g}", c) for b, c in zip(LATENCY_BUCKETS_S, cumulative, strict=True)]
            latency.add_metric([ref.name], [*buckets, ("+Inf", n_timed)], sum_value=total_s)
            gauge("particles", "Particles picked on done exposures.").add_metric(
                [ref.name], particles
            )
            if found["resolution"] is not None:
                gauge(
                    "resolution_angstrom", "The latest 3D map's FSC 0.143 resolution (A)."
                ).add_metric([ref.name], found["resolution"])
            status = found["status"]
            if status is None:
                continue
            for name, key, doc in _LIVE_GAUGES:
                if status.get(key) is not None:
                    gauge(name, doc).add_metric([ref.name], float(status[key]))
            gauge("workers", "Exposure workers of the running session.").add_metric(
                [ref.name], _workers(str(status.get("workers", "")))
            )
            gauge("keeping_up", "1 while processing keeps up with acquisition.").add_metric(
                [ref.name], 1 if status.get("keeping_up") else 0
            )
            gauge("paused", "1 while the operator has paused processing.").add_metric(
                [ref.name], 1 if status.get("paused") else 0
            )
            health = _health(status)
            if health is None:  # a daemon older than these numbers
                continue
            gauge("workers_alive", "Exposure workers started and answering.").add_metric(
                [ref.name], health.alive
            )
            replaced = counter(
                "worker_replacements", "Exposure workers replaced in this run.", ("reason",)
            )
            replaced.add_metric([ref.name, "failure"], health.replaced_after_failure)
            replaced.add_metric([ref.name, "memory"], health.recycled_for_memory)
            failures = counter(
                "worker_failures", "Exposure attempts Ray failed in this run.", ("kind",)
            )
            for kind, n in sorted(health.failures.items()):
                failures.add_metric([ref.name, kind], n)
            for slot, measured in enumerate(health.memory_bytes):
                if measured is not None:  # no family at all until a worker is measured
                    gauge(
                        "worker_memory_bytes",
                        "Worker resident memory after its latest exposure.",
                        ("slot",),
                    ).add_metric([ref.name, str(slot)], measured)
        yield from gauges.values()
        yield from counters.values()
        yield latency


def _read(ref: SessionRef) -> dict[str, Any]:
    with ref.reading(time_limit_s=5.0) as reader:
        counts = [float(v or 0) for v in reader.select(_COUNTS_SQL).rows[0]]
        resolution = None
        has = int(reader.select(views.HAS_EVALUATIONS_SQL).rows[0][0])
        if has == len(views.EVALUATION_RELATIONS):
            rows = reader.select(_RESOLUTION_SQL).rows
            resolution = rows[0][0] if rows else None
        is_live = reader.live
    return {
        "live": is_live,
        "counts": counts,
        "resolution": resolution,
        "status": ref.status() if is_live else None,
    }


def _health(status: dict[str, Any]) -> WorkerHealth | None:
    """The status's ``worker_health``; None where it has none (or not in this shape)."""
    try:
        return WorkerHealth.model_validate(status.get("worker_health"))
    except ValidationError:
        return None


def _workers(described: str) -> int:
    # "2 CPU actor(s), 1 thread(s) each", or "starting at the first movie"
    found = re.match(r"\s*(\d+)", described)
    return int(found.group(1)) if found else 0


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Every session's numbers in Prometheus's text format (see the module docstring)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SessionsCollector(request.app.state.options.sessions_dir))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
