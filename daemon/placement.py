"""Where a session's own actors run: beside the daemon, not among the exposure workers."""

from __future__ import annotations

from typing import Any

__all__ = ["beside_the_daemon"]


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
