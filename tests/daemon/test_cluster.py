"""The live pipeline on a Ray cluster of two nodes on this machine (``ray.cluster_utils``), as a
facility runs it with ``--ray-address``: the exposure actors spread over the nodes, the
session's own actors stay on the daemon's node, and a worker node lost mid-exposure loses
nothing (the exposure is processed again elsewhere, once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from causalscope.daemon.live import LiveOptions, LiveSession
from causalscope.daemon.session import SessionPaths
from tests.daemon._faults import AlertRecorder
from tests.daemon.test_live import _copy_movies, _settings
from tests.daemon.test_live import small as small  # the fixture


@pytest.fixture
def two_nodes() -> Iterator[tuple[Any, Any]]:
    """A head node with 2 CPUs (the daemon's) and a worker node with 1; the suite's one-node
    cluster is shut down first (``ray_cluster`` starts it again for the tests after)."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster, worker
    finally:
        ray.shutdown()
        cluster.shutdown()


class _LoseWorkerNode:
    """A pool that records where each exposure went and removes the worker node as soon as
    both nodes have an exposure in hand (the worker node's still mid-exposure)."""

    def __init__(self, pool: Any, cluster: Any, node: Any) -> None:
        self._pool = pool
        self._cluster = cluster
        self._node = node
        self.nodes_at_start: list[str] = pool.actor_node_ids()
        self.placed: list[tuple[str, int, str | None]] = []  # exposure, attempt, node
        self.lost = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def submit(self, task: Any) -> int:
        slot = self._pool.submit(task)
        node = None if self.lost else self.nodes_at_start[slot]
        self.placed.append((task.exposure_id, task.attempt, node))
        if not self.lost and {n for _, _, n in self.placed} == set(self.nodes_at_start):
            self.lost = True
            self._cluster.remove_node(self._node)
        return slot


@pytest.mark.slow
def test_exposures_spread_over_nodes_and_a_lost_node_loses_nothing(
    two_nodes: tuple[Any, Any], small: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    import ray

    from causalscope.daemon.workers import RayWorkerPool

    cluster, worker_node = two_nodes
    microscope, _truth = small
    watch = tmp_path / "watch"
    _copy_movies(microscope, watch)
    settings = _settings(microscope, processing={"device": "cpu", "max_in_flight": 2})
    paths = SessionPaths.under(tmp_path / "sessions", "cluster")
    reporter = AlertRecorder()
    pools: list[_LoseWorkerNode] = []

    def factory(calibration: Any) -> Any:
        pool = RayWorkerPool(settings, output_dir=paths.root, calibration=calibration, n_workers=2)
        pools.append(_LoseWorkerNode(pool, cluster, worker_node))
        return pools[0]

    head = ray.get_runtime_context().get_node_id()
    options = LiveOptions(directory=watch, until_idle_s=2.0, publish=False, query=False)
    with LiveSession(settings, paths, options, reporter=reporter, pool_factory=factory) as s:
        s.run()
    pool = pools[0]
    # spread: one actor on each node, and the first two exposures went one to each
    assert sorted(pool.nodes_at_start) == sorted([head, worker_node.node_id])
    first_two = {node for _, attempt, node in pool.placed[:2]}
    assert first_two == {head, worker_node.node_id}, pool.placed
    assert pool.lost
    # the lost exposure came back once, as its node's death, and was done on the head node
    assert not reporter.problems
    failures = [alert for alert in reporter.alerts if alert.code.startswith("ray_")]
    assert [alert.code for alert in failures] == ["ray_node_died"]  # one alert, with advice
    assert failures[0].advice
    with duckdb.connect(str(paths.database), read_only=True) as db:
        rows = db.execute("SELECT exposure_id, attempts, state FROM exposures").fetchall()
        assert db.execute("SELECT count(*) FROM results").fetchone() == (3,)
    assert sorted(row[1] for row in rows) == [1, 1, 2]
    assert {row[2] for row in rows} == {"done"}
    assert [n["Alive"] for n in ray.nodes() if n["NodeID"] == worker_node.node_id] == [False]
