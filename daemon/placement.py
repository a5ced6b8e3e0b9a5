"""Where a session's own actors run: beside the daemon, not among the exposure workers; and
how the session evaluator shares a GPU with them.

The GPU rule. Each exposure actor asks Ray for :data:`EXPOSURE_GPU_SHARE` (0.75) of a GPU, not
a whole one: two of them still never fit on one GPU, so there is still one exposure actor per
GPU, and a quarter of each GPU is left. The session evaluator asks for
:data:`EVALUATOR_GPU_SHARE` (that quarter) when the cluster has GPUs, ``processing.device``
allows CUDA and a share is free when it starts; it then runs beside one exposure actor on that
GPU (Ray makes it the only one the evaluator sees). Otherwise it computes on the CPU and asks
for no GPU, so that it never waits for one and, on a CPU-only cluster, nothing changes. Why a
share and not a GPU of its own: its work comes in bursts (an update per thousand or so
particles) and needs little memory (its classes, maps and a batch of binned particles: a few
hundred MB at box 64-128, beside an exposure actor's several GB on a 4096^2 movie), so a whole
GPU for it would take one away from the exposures on a one-GPU machine; and without a share
Ray hides the GPUs from it. Ray's shares are bookkeeping: the two processes share the GPU's
time and memory as they come.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EVALUATOR_GPU_SHARE",
    "EXPOSURE_GPU_SHARE",
    "beside_the_daemon",
    "evaluator_placement",
]

#: the share of a GPU each exposure actor asks for (one actor per GPU, see the module)
EXPOSURE_GPU_SHARE = 0.75
#: the share the session evaluator asks for, beside one exposure actor
EVALUATOR_GPU_SHARE = 0.25


def beside_the_daemon() -> dict[str, Any]:
    """Ray options that place a session's own actor (causal model, evaluator, trainers)
    on the daemon's node, with no CPU reserved.

    On a cluster the exposure actors spread over the nodes; the session's singletons stay with
    the daemon, so that losing a worker node costs only the exposures it was processing. Soft:
    where the daemon's node cannot take it, Ray places it elsewhere.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    return {"num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=True)}


def evaluator_placement(device: str) -> tuple[dict[str, Any], str]:
    """The session evaluator's Ray options and the device it is to compute on, for
    ``processing.device`` ``device`` (the GPU rule of the module docstring): beside the
    daemon, with :data:`EVALUATOR_GPU_SHARE` of a GPU and ``device`` as it is where the
    cluster has a free share and ``device`` allows CUDA, else no GPU and ``"cpu"``."""
    import ray

    options = beside_the_daemon()
    if device == "cpu" or ray.cluster_resources().get("GPU", 0) <= 0:
        return options, "cpu"
    if ray.available_resources().get("GPU", 0) < EVALUATOR_GPU_SHARE:
        return options, "cpu"  # never wait for a share: the classes are wanted now
    return {**options, "num_gpus": EVALUATOR_GPU_SHARE}, device
