"""Ray's failure modes, produced for real on a dedicated Ray cluster, and the daemon alive after
each: an actor killed with SIGKILL mid-exposure, the frames of an exposure lost from the object
store (their owner's node removed), the node running the worker removed mid-exposure. Each
exposure goes back to the queue with its attempt counted, the worker is replaced, the operator
gets one alert with the reason and the advice, and every exposure is done exactly once.

A worker above its memory bound is recycled between exposures. (Ray's memory monitor killing a
worker is in ``test_ray_oom.py``: it needs a cluster of its own.)

A worker crash of a plain task (``WorkerCrashedError``) and an actor that is unreachable while
Ray restarts it (``ActorUnavailableError``) cannot happen to the exposure actors (they are
actors, never restarted by Ray); both are produced for real here and classified.

One cluster (a head, a node for the workers, a node that dies with its objects) serves the
module: cluster start-ups are slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from causalscope.daemon.bench._machine import cpu_seconds
from causalscope.daemon.failures import classify
from tests.daemon._faults import (
    AlertRecorder,
    run_session,
    session_rows,
    settings_for,
    simulate,
    wrapped_pools,
)

pytestmark = pytest.mark.slow

_OURS = ("ray_", "memory_", "processing_")  # the alerts of staying up (not of the data)


class _Holder:
    """Puts frames into the object store from its own process: it owns them."""

    def hold(self, frames: np.ndarray) -> list[Any]:
        import ray

        return [ray.put(np.array(frames))]

    def pid(self) -> int:
        return os.getpid()

    def wait(self, seconds: float) -> int:
        time.sleep(seconds)
        return os.getpid()


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, Any]]:
    """A head, a ``scope`` node for the exposure actors, a ``holder`` node that will die."""
    import ray
    from ray.cluster_utils import Cluster

    shared = ray.is_initialized()  # the suite's shared cluster: given back afterwards
    if shared:
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        nodes = {
            "cluster": cluster,
            "scope": cluster.add_node(num_cpus=2, resources={"scope": 4}),
            "holder": cluster.add_node(num_cpus=1, resources={"holder": 2}),
        }
        ray.init(address=cluster.address, log_to_driver=False)
        yield nodes
    finally:
        ray.shutdown()
        cluster.shutdown()
        if shared:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)


@pytest.fixture(scope="module")
def microscope(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate(tmp_path_factory.mktemp("faults_microscope"), n=3)


def test_killed_actor_lost_frames_and_dead_node_each_retried_once(
    cluster: dict[str, Any], microscope: Path, tmp_path: Path
) -> None:
    import ray

    settings = settings_for(microscope)
    reporter = AlertRecorder()
    holder_actor = ray.remote(_Holder)

    def kill_actor(pool: Any, task: Any, submit: Any) -> None:
        pids = pool.actor_process_ids()  # asked while idle: the answer comes at once

        def used() -> float:  # CPU seconds of the actors so far
            now = cpu_seconds()
            return sum(now[pid][1] for pid in pids if pid in now)

        before = used()
        submit()
        # killed once the actor is working on it (a fixed sleep let a fast machine finish first)
        deadline = time.monotonic() + 30.0
        while used() - before < 0.2:
            assert time.monotonic() < deadline, "the actor never started the exposure"
            time.sleep(0.01)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    def lose_frames(pool: Any, task: Any, submit: Any) -> None:
        holder = holder_actor.options(resources={"holder": 1}).remote()
        [ref] = ray.get(holder.hold.remote(task.frames))
        task.frames_ref, task.frames = ref, np.empty(0)
        cluster["cluster"].remove_node(cluster["holder"])  # the frames' owner dies
        submit()

    def kill_node(pool: Any, task: Any, submit: Any) -> None:
        submit()
        cluster["cluster"].remove_node(cluster["scope"])  # with the worker on it
        cluster["scope"] = cluster["cluster"].add_node(num_cpus=2, resources={"scope": 4})

    # submissions: 1 killed, 2 its retry; 3 frames lost, 4 re-read; 5 node dies, 6 retry
    actions = {1: kill_actor, 3: lose_frames, 5: kill_node}
    factory, wrapped = wrapped_pools(
        settings, tmp_path, actions, actor_options={"resources": {"scope": 1}}
    )

    paths = run_session(microscope, tmp_path, settings, factory, reporter)  # returns: alive
    [pool] = wrapped
    print("\n".join(pool.errors))
    assert pool.failures == ["actor_died", "object_lost", "node_died"], pool.errors
    ids = pool.submitted
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[4] == ids[5], ids  # retried next
    assert "ActorDiedError" in pool.errors[0]
    assert "OwnerDiedError" in pool.errors[1]  # an ObjectLostError
    rows, results = session_rows(paths)
    assert results == 3  # each exposure done exactly once
    assert [(attempts, state) for _, attempts, state in rows] == [(2, "done")] * 3
    ours = [alert for alert in reporter.alerts if alert.code.startswith(_OURS)]
    assert [alert.code for alert in ours] == ["ray_actor_died", "ray_object_lost", "ray_node_died"]
    for alert in ours:
        assert alert.advice and "attempt 1 of 3" in alert.message
    assert not reporter.quarantines


def test_a_crashed_task_worker_and_an_unreachable_actor_are_classified(
    cluster: dict[str, Any],
) -> None:
    import ray
    from ray.exceptions import ActorUnavailableError, WorkerCrashedError

    @ray.remote(max_retries=0, resources={"scope": 1})
    def die() -> None:
        os._exit(1)

    with pytest.raises(WorkerCrashedError) as crashed:
        ray.get(die.remote(), timeout=60)
    failure = classify(crashed.value)
    assert failure.code == "worker_crashed" and failure.replace_worker

    restartable = ray.remote(max_restarts=1)(_Holder).options(resources={"scope": 1}).remote()
    pid = ray.get(restartable.pid.remote(), timeout=60)
    busy = restartable.wait.remote(30.0)
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ActorUnavailableError) as unavailable:
        ray.get(busy, timeout=60)
    failure = classify(unavailable.value)
    assert failure.code == "actor_unavailable" and failure.replace_worker
    deadline = time.monotonic() + 60
    while True:  # unavailable while Ray restarts it, then a fresh process answers
        try:
            assert ray.get(restartable.pid.remote(), timeout=60) != pid
            break
        except ActorUnavailableError:
            assert time.monotonic() < deadline, "the actor did not come back"
            time.sleep(0.5)
    ray.kill(restartable)


def test_a_worker_above_its_memory_bound_is_recycled_between_exposures(
    cluster: dict[str, Any], microscope: Path, tmp_path: Path
) -> None:
    # a bound below any Python process: every exposure leaves its worker above it
    settings = settings_for(microscope, resilience={"worker_memory_limit_mb": 1})
    pids: list[int] = []

    def note_pid(pool: Any, task: Any, submit: Any) -> None:
        pids.extend(pool.actor_process_ids())
        submit()

    factory, wrapped = wrapped_pools(
        settings,
        tmp_path,
        {1: note_pid, 2: note_pid},
        actor_options={"resources": {"scope": 1}},
    )

    paths = run_session(microscope, tmp_path, settings, factory, AlertRecorder(), movies=2)
    [pool] = wrapped
    assert len(pids) == 2 and pids[0] != pids[1]  # a fresh worker for the second exposure
    assert [slot for slot, _ in pool.pool.recycled] == [0, 0]
    assert all(size > 2**20 for _, size in pool.pool.recycled)  # measured above the bound
    assert not pool.failures  # recycled between exposures, never mid-exposure
    rows, results = session_rows(paths)
    assert results == 2
    assert [(attempts, state) for _, attempts, state in rows] == [(1, "done")] * 2


def test_a_gcs_that_goes_away_is_reported_and_nothing_is_lost(
    microscope: Path, tmp_path: Path
) -> None:
    """In its own process with its own cluster: Ray ends a driver whose GCS stays away.
    (Under ``watch --supervise`` the session is then started again: ``test_supervisor.py``.)"""
    import duckdb

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.run(
        [sys.executable, "-m", "tests.daemon._gcs_child", str(microscope), str(tmp_path)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = child.stdout.splitlines()
    assert "GCS killed" in lines, child.stdout + child.stderr[-3000:]
    alerts = [line for line in lines if line.startswith("ALERT ray_unreachable")]
    assert len(alerts) == 1, child.stdout  # said once, clearly
    assert "does not answer" in alerts[0] and "ends this process" in alerts[0]
    database = next((tmp_path / "sessions").rglob("*.duckdb"))
    with duckdb.connect(str(database), read_only=True) as db:
        states = dict(db.execute("SELECT exposure_id, state FROM exposures").fetchall())
        results = db.execute("SELECT count(*) FROM results").fetchone()
        logged = db.execute(
            "SELECT count(*) FROM events WHERE kind = 'alert' AND message LIKE '%GCS%'"
        ).fetchone()
    assert len(states) == 1 and set(states.values()) <= {"done", "seen"}  # none lost
    # the worker already running went on without the GCS
    assert "done" in states.values(), child.stdout + child.stderr[-3000:]
    assert results == (sum(state == "done" for state in states.values()),)
    assert logged == (1,)  # the alert is in the session too
