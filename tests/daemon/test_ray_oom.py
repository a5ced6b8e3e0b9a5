"""Ray's own memory monitor kills the exposure worker when another program takes the node's
memory (``OutOfMemoryError``), and the daemon stays up: it slows to one exposure at a time, says
why once, retries the exposure on a fresh worker, and finishes the session.

A cluster of its own (one node) starts with Ray's memory threshold a few GB above the memory
used at that moment (``RAY_memory_usage_threshold``, read by the raylet when it starts; checked
every 100 ms); the test then allocates past it, as another program on the machine would, and
frees the memory once the worker was killed. On a machine shared with other work the memory
used may rise past the threshold by itself: the test then skips (or sees more kills, which the
daemon retries too).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from causalscope.daemon.bench._live import ray_memory
from tests.daemon._faults import (
    AlertRecorder,
    OnSubmit,
    run_session,
    session_rows,
    settings_for,
    simulate,
)

pytestmark = pytest.mark.slow

_GB = 1024**3
_MARGIN = 3 * _GB  # Ray's threshold above the memory used when the cluster starts
_OURS = ("ray_", "memory_", "processing_")  # the alerts of staying up (not of the data)


@pytest.fixture
def monitored() -> Iterator[float]:
    """A one-node Ray cluster whose memory monitor kills past a threshold; yields it."""
    import ray

    shared = ray.is_initialized()  # the suite's shared cluster: given back afterwards
    if shared:
        ray.shutdown()
    used, total = ray_memory()
    threshold = min(0.95, (used + _MARGIN) / total)
    monitor = {
        "RAY_memory_usage_threshold": f"{threshold:.4f}",
        "RAY_memory_monitor_refresh_ms": "100",
    }
    os.environ.update(monitor)
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield threshold
    finally:
        ray.shutdown()
        for name in monitor:
            del os.environ[name]
        if shared:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)


@pytest.fixture(scope="module")
def microscope(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate(tmp_path_factory.mktemp("oom_microscope"), n=2)


def test_a_worker_killed_by_rays_memory_monitor_slows_processing_and_is_retried(
    monitored: float, microscope: Path, tmp_path: Path
) -> None:
    from causalscope.daemon.workers import RayWorkerPool

    # another program's memory may cause more kills than the one made here: retried too
    settings = settings_for(microscope, resilience={"max_attempts": 10, "pause_after_failures": 50})
    reporter = AlertRecorder()
    hog: list[np.ndarray] = []

    def take_memory(pool: Any, task: Any, submit: Any) -> None:
        pool.actor_process_ids()  # the actor is up (its start is not what gets killed)
        used, total = ray_memory()
        if used > monitored * total:
            pytest.skip("the machine's memory use rose past the test's threshold by itself")
        need = int(monitored * total) - used + _GB
        if need > total - used - _GB:
            pytest.skip(f"not enough free memory to cross Ray's threshold ({need} B needed)")
        # another program takes the memory (pages touched: it counts); Ray kills the worker
        # that runs a task, not an idle one, so the exposure is handed over after
        hog.append(np.ones(need // 8))
        submit()

    wrapped: list[OnSubmit] = []

    def factory(calibration: Any) -> Any:
        pool = RayWorkerPool(
            settings,
            output_dir=tmp_path / "sessions" / "faults",
            calibration=calibration,
            n_workers=1,
        )
        wrapped.append(OnSubmit(pool, {1: take_memory}, on_crash=hog.clear))
        return wrapped[0]

    paths = run_session(microscope, tmp_path, settings, factory, reporter, movies=2)
    [pool] = wrapped
    assert pool.failures and set(pool.failures) == {"out_of_memory"}, pool.errors
    assert pool.errors[0].startswith("OutOfMemoryError")  # Ray's own, from its monitor
    rows, results = session_rows(paths)
    assert results == 2  # each exposure done exactly once
    assert max(attempts for _, attempts, _ in rows) >= 2  # the killed one, retried
    assert {state for _, _, state in rows} == {"done"}
    ours = [alert for alert in reporter.alerts if alert.code.startswith(_OURS)]
    # slowed first, then told why
    assert [alert.code for alert in ours] == ["memory_low", "ray_out_of_memory"]
    low = ours[0]
    assert "% used" in low.message and "one exposure at a time" in low.message
