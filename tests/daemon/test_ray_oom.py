"""Ray's own memory monitor kills the exposure worker when another program takes the node's
memory (``OutOfMemoryError``), and the daemon stays up: it slows to one exposure at a time, says
why once, retries the exposure on a fresh worker, and finishes the session.

A cluster of its own (one node) starts with Ray's memory threshold a few GB above the memory
used at that moment (``RAY_memory_usage_threshold``, read by the raylet when it starts; checked
every 100 ms); the test then allocates past it, as another program on the machine would, and
frees the memory once the worker was killed. A second test takes the memory in two steps: past
the daemon's own threshold (``min_free_memory_fraction``) it slows to one exposure at a time and
no worker is killed; only past Ray's threshold does Ray kill one. On a machine shared with other
work the memory used may rise past the thresholds by itself: the tests then skip (or see more
kills, which the daemon retries too).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from causalscope.daemon.bench._live import ray_memory
from tests.daemon._faults import (
    AlertRecorder,
    run_session,
    session_rows,
    settings_for,
    simulate,
    wrapped_pools,
)

pytestmark = pytest.mark.slow

_GB = 1024**3
# Ray's threshold above the memory used before the cluster starts: room for Ray's own
# processes, the exposure actor and the tests that run beside this one (up to 2-3 GB by
# themselves; with 3 GB in all, a CI run's actor was killed before the test took any)
_MARGIN = 6 * _GB
_OURS = ("ray_", "memory_", "processing_")  # the alerts of staying up (not of the data)


@contextlib.contextmanager
def _memory_monitor(margin: int) -> Iterator[float]:
    """A one-node Ray cluster whose memory monitor kills once ``margin`` bytes more than now
    are used; yields its threshold (a share of the node's memory)."""
    import ray

    shared = ray.is_initialized()  # the suite's shared cluster: given back afterwards
    if shared:
        ray.shutdown()
    used, total = ray_memory()
    threshold = min(0.95, (used + margin) / total)
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


@pytest.fixture
def monitored() -> Iterator[float]:
    """Ray kills a worker once 6 GB more than now are used."""
    with _memory_monitor(_MARGIN) as threshold:
        yield threshold


@pytest.fixture(scope="module")
def microscope(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate(tmp_path_factory.mktemp("oom_microscope"), n=4)


def test_a_worker_killed_by_rays_memory_monitor_slows_processing_and_is_retried(
    monitored: float, microscope: Path, tmp_path: Path
) -> None:
    # another program's memory may cause more kills than the one made here: retried too
    settings = settings_for(microscope, resilience={"max_attempts": 10, "pause_after_failures": 50})
    reporter = AlertRecorder()
    hog: list[np.ndarray] = []

    def take_memory(pool: Any, task: Any, submit: Any) -> None:
        from ray.exceptions import OutOfMemoryError

        try:
            pool.actor_process_ids()  # the actor is up (its start is not what gets killed)
        except OutOfMemoryError:
            pytest.skip("the machine's memory use rose past Ray's threshold by itself")
        used, total = ray_memory()
        if used > monitored * total:
            pytest.skip("the machine's memory use rose past the test's threshold by itself")
        # 2 GB past the threshold: the tests beside this one may free memory meanwhile (with
        # 1 GB, a CI run's memory fell back below it and no worker was killed)
        need = int(monitored * total) - used + 2 * _GB
        if need > total - used - _GB:
            pytest.skip(f"not enough free memory to cross Ray's threshold ({need} B needed)")
        # another program takes the memory (pages touched: it counts); Ray kills the worker
        # that runs a task, not an idle one, so the exposure is handed over after
        hog.append(np.ones(need // 8))
        submit()

    factory, wrapped = wrapped_pools(settings, tmp_path, {1: take_memory}, on_crash=hog.clear)

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


def test_the_daemon_slows_down_before_rays_memory_monitor_has_to_kill(
    microscope: Path, tmp_path: Path
) -> None:
    """Another program takes memory in two steps. Past the daemon's threshold (3 GB more than at
    the start) work in flight drops from two exposures to one, with one alert, and no worker is
    killed; past Ray's threshold (8 GB more) Ray kills the worker, after the daemon had slowed."""
    from causalscope.daemon.memory import read_node_memory

    start = read_node_memory()
    if start is None:
        pytest.skip("the node's memory cannot be read here")
    ours_at = start.available_bytes - 3 * _GB  # the daemon slows below this much free
    settings = settings_for(
        microscope,
        max_in_flight=2,
        resilience={
            "min_free_memory_fraction": ours_at / start.total_bytes,
            "memory_check_s": 0.05,
            "max_attempts": 10,
            "pause_after_failures": 50,
        },
    )
    reporter = AlertRecorder()
    hog: list[np.ndarray] = []
    busy: list[int] = []  # exposures already running at each submission
    seen: list[list[str]] = []  # the alerts of staying up, at each submission
    ray_at: list[float] = []
    used_share: list[float] = []  # the node's memory used at each submission

    def take(size: int) -> None:  # another program's memory, its pages touched
        hog.append(np.ones(max(0, size) // 8))

    def watched(step: Any = None) -> Any:
        def action(pool: Any, task: Any, submit: Any) -> None:
            busy.append(pool.in_flight)
            used, total = ray_memory()
            used_share.append(used / total)
            seen.append([a.code for a in reporter.alerts if a.code.startswith(_OURS)])
            if step is not None:
                step(pool)
            submit()

        return action

    def past_ours(pool: Any) -> None:
        pool.actor_process_ids()  # both actors are up
        now = read_node_memory()
        used, total = ray_memory()
        assert now is not None
        if now.available_bytes < ours_at + _GB // 2:
            pytest.skip("the machine's memory use rose near the test's thresholds by itself")
        # 1 GB past the threshold: other tests that end beside this one free memory too
        need = now.available_bytes - ours_at + _GB
        if used + need > ray_at[0] * total - _GB:
            pytest.skip("the two thresholds are too close on this machine now")
        take(need)

    def past_rays(pool: Any) -> None:
        used, total = ray_memory()
        need = int(ray_at[0] * total) - used + _GB
        if need > total - used - _GB:
            pytest.skip(f"not enough free memory to cross Ray's threshold ({need} B needed)")
        take(need)

    actions = {1: watched(past_ours), 2: watched(), 3: watched(past_rays), 4: watched()}
    actions.update({5: watched(), 6: watched()})
    factory, wrapped = wrapped_pools(settings, tmp_path, actions, n_workers=2, on_crash=hog.clear)

    # 4 GB between what the test takes first and Ray's threshold: the other tests that run
    # beside this one (two at a time) take up to 2-3 GB by themselves
    with _memory_monitor(8 * _GB) as threshold:
        ray_at.append(threshold)
        paths = run_session(microscope, tmp_path, settings, factory, reporter, movies=4)
    [pool] = wrapped
    if "ray_out_of_memory" in seen[2]:
        pytest.skip(
            "Ray killed a worker before the test took memory past Ray's threshold: the node's "
            f"memory rose by itself (Ray's threshold {ray_at[0]:.1%}; used at each submission: "
            f"{', '.join(f'{u:.1%}' for u in used_share)})"
        )
    # slowed (one alert, nothing else running) before the third exposure was handed out
    assert seen[2] == ["memory_low"] and busy[2] == 0, (seen, busy)
    assert pool.failures and set(pool.failures) == {"out_of_memory"}, pool.errors
    assert pool.errors[0].startswith("OutOfMemoryError")  # then Ray's monitor, on the third
    assert all(count == 0 for count in busy[2:]), busy  # one at a time from then on
    ours = [alert.code for alert in reporter.alerts if alert.code.startswith(_OURS)]
    assert ours == ["memory_low", "ray_out_of_memory"]
    rows, results = session_rows(paths)
    assert results == 4  # each exposure done exactly once
    assert {state for _, _, state in rows} == {"done"}
