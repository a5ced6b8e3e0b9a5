"""Scaling out on Ray: the same burst of movies with one exposure actor and with one per node.

A Ray cluster of ``nodes`` single-CPU nodes is started on this machine
(``ray.cluster_utils.Cluster``, as a facility's cluster would be joined with ``--ray-address``);
the burst phase of the pipeline benchmark runs first with one actor, then with ``nodes`` actors
(spread over the nodes), in the same run. The report gives exposures per minute for each and
their ratio, and where each actor ran. On one machine the ratio is bounded by its free cores:
say what else was running.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from causalscope.daemon.bench.pipeline import bench_settings, run_phase, simulate_sources

__all__ = ["run_scaling_bench"]


def run_scaling_bench(
    *,
    nodes: int = 2,
    n: int = 8,
    size: int = 512,
    frames: int = 12,
    settle_s: float = 0.5,
    work_dir: Path | None = None,
) -> dict[str, Any]:
    """Exposures per minute with 1 and with ``nodes`` actors on a ``nodes``-node cluster."""
    import ray
    from ray.cluster_utils import Cluster

    if nodes < 2:
        raise ValueError(f"scaling needs at least 2 nodes, got {nodes}")
    if ray.is_initialized():
        ray.shutdown()
    with tempfile.TemporaryDirectory(prefix="causalscope-scaling-", dir=work_dir) as tmp:
        root = Path(tmp)
        sources = simulate_sources(root / "sim", size=size, frames=frames, n_distinct=4, seed=1)
        settings = bench_settings(root / "sim", device="cpu", settle_s=settle_s)
        started = time.monotonic()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        cluster_s = time.monotonic() - started
        try:
            phases = {
                workers: run_phase(
                    settings,
                    sources,
                    root,
                    f"workers{workers}",
                    n,
                    interval_s=0.0,
                    n_workers=workers,
                )
                for workers in (1, nodes)
            }
        finally:
            ray.shutdown()
            cluster.shutdown()
    one, many = phases[1], phases[nodes]
    return {
        "bench": "scaling",
        "nodes": nodes,
        "cpus_on_this_machine": os.cpu_count(),
        "cluster_start_s": round(cluster_s, 2),
        "movie": f"{size}x{size}x{frames}",
        "burst": n,
        "exposures_per_minute": {
            "1 worker": one["exposures_per_minute"],
            f"{nodes} workers": many["exposures_per_minute"],
        },
        "ratio": round(many["exposures_per_minute"] / max(one["exposures_per_minute"], 1e-9), 2),
        "phases": {f"{k} worker(s)": v for k, v in phases.items()},
    }
