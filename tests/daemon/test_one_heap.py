"""Exposure actors run with one C heap from their process's start (``MALLOC_ARENA_MAX=1``):
inherited from a cluster the daemon started itself, or given by a runtime environment on a
cluster started otherwise (``actors._memory``; ``tests/actors/test_heap.py`` shows what it
changes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from causalscope.actors._memory import ONE_HEAP_ENV
from causalscope.config import load_settings
from causalscope.daemon.workers import RayWorkerPool

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/<pid>/environ"
)


def _actor_environment(tmp_path: Path) -> tuple[dict[str, str], dict[str, object]]:
    settings = load_settings(None, None, {"processing": {"device": "cpu"}})
    pool = RayWorkerPool(settings, output_dir=tmp_path, n_workers=1)
    try:
        (pid,) = pool.actor_process_ids()
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        options = dict(pool._options)
    finally:
        pool.shutdown()
    pairs = (item.decode(errors="replace").partition("=") for item in raw if item)
    return {name: value for name, _, value in pairs}, options


def test_actors_of_a_cluster_the_daemon_started_inherit_one_heap(
    ray_cluster: object, tmp_path: Path
) -> None:
    environment, options = _actor_environment(tmp_path)
    assert all(environment.get(name) == value for name, value in ONE_HEAP_ENV.items())
    assert "runtime_env" not in options  # inherited: Ray's ready workers serve at once


def test_actors_of_another_cluster_get_one_heap_from_a_runtime_environment(
    ray_cluster: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ONE_HEAP_ENV:
        monkeypatch.delenv(name, raising=False)  # as where `ray start` made the cluster
    # (this cluster's processes have one heap anyway: the options are what is checked)
    _, options = _actor_environment(tmp_path)
    assert options["runtime_env"] == {"env_vars": ONE_HEAP_ENV}
