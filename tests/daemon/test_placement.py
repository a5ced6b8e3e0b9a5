"""The session evaluator's share of a GPU (:mod:`daemon.placement`): asked for only where the
cluster has GPUs, the device allows CUDA and a share is free; otherwise the CPU, and no GPU
asked for. The cluster's resources are stubbed: the rule, not Ray, is under test."""

from __future__ import annotations

import pytest
import ray

from causalscope.daemon import placement
from causalscope.daemon.placement import (
    EVALUATOR_GPU_SHARE,
    EXPOSURE_GPU_SHARE,
    evaluator_placement,
)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, float]]:
    """A stub cluster: set ``total`` and ``free`` resources."""
    resources: dict[str, dict[str, float]] = {"total": {"CPU": 16.0}, "free": {"CPU": 16.0}}
    monkeypatch.setattr(ray, "cluster_resources", lambda: resources["total"])
    monkeypatch.setattr(ray, "available_resources", lambda: resources["free"])
    monkeypatch.setattr(placement, "beside_the_daemon", lambda: {"num_cpus": 0})
    return resources


def test_one_exposure_actor_per_gpu_and_the_evaluators_share_beside_it() -> None:
    assert 2 * EXPOSURE_GPU_SHARE > 1.0  # two exposure actors never share a GPU
    assert EXPOSURE_GPU_SHARE + EVALUATOR_GPU_SHARE <= 1.0


def test_without_gpus_the_evaluator_computes_on_the_cpu_as_before(
    cluster: dict[str, dict[str, float]],
) -> None:
    for device in ("auto", "cuda", "cpu"):
        assert evaluator_placement(device) == ({"num_cpus": 0}, "cpu")


def test_with_a_free_share_the_evaluator_asks_for_it_unless_told_the_cpu(
    cluster: dict[str, dict[str, float]],
) -> None:
    cluster["total"]["GPU"] = 2.0
    cluster["free"]["GPU"] = 2 * (1 - EXPOSURE_GPU_SHARE)  # two exposure actors placed
    for device in ("auto", "cuda"):
        assert evaluator_placement(device) == (
            {"num_cpus": 0, "num_gpus": EVALUATOR_GPU_SHARE},
            device,
        )
    assert evaluator_placement("cpu") == ({"num_cpus": 0}, "cpu")
    cluster["free"]["GPU"] = 0.0  # every GPU held whole elsewhere: never wait for one
    assert evaluator_placement("auto") == ({"num_cpus": 0}, "cpu")
