"""A watch session whose Ray control store (GCS) is killed after the first exposure is handed
out; run as ``python -m tests.daemon._gcs_child MICROSCOPE ROOT`` by ``test_ray_failures.py``.

Ray ends a driver whose GCS stays away for ``gcs_rpc_server_reconnect_timeout_s``: that is Ray's
doing and cannot be caught, so this runs in its own process, and the test reads what the session
left behind. It prints each alert as ``ALERT <code> <message>``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

# long enough for the running worker to finish its exposure on a slow, shared machine; the
# child ends as soon as the session does, so this bounds only a failing run
os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", "120")


def main(microscope: Path, root: Path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from tests.daemon._faults import AlertRecorder, run_session, settings_for, wrapped_pools

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False}
    )
    ray.init(address=cluster.address, log_to_driver=False)
    settings = settings_for(microscope)

    class Printing(AlertRecorder):
        def alert(self, alert: Any) -> None:
            print(f"ALERT {alert.code} {alert.message}", flush=True)
            print(f"alerted at {time.monotonic():.1f}", flush=True)

    def kill_gcs(pool: Any, task: Any, submit: Any) -> None:
        pool.actor_process_ids()  # the worker is up: it goes on without the GCS
        submit()
        cluster.head_node.kill_gcs_server()
        print("GCS killed", flush=True)
        print(f"killed at {time.monotonic():.1f}", flush=True)

    factory, _ = wrapped_pools(settings, root, {1: kill_gcs})
    run_session(microscope, root, settings, factory, Printing(), movies=1)
    print(f"session ended at {time.monotonic():.1f}", flush=True)
    os._exit(0)  # shutting Ray down needs the GCS


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
