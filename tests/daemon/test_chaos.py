"""The chaos run, short (``causalscope bench faults`` is the long one): ``causalscope watch`` as
a subprocess on a folder and a frame stream, on a Ray cluster of its own, while an exposure
worker is killed with SIGKILL, the session's disk fills and empties (where a tmpfs can be
mounted here; the report says why not otherwise), the stream sends garbage and an exposure with
a dropped frame, and the daemon itself is killed with ``kill -9`` and started again. Every
exposure ends done or quarantined with a reason, exactly once, and the daemon restarted only
when it was killed. (Ray's memory monitor killing a worker is in ``test_ray_oom.py``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from causalscope.daemon.bench.faults import format_table, run_faults_bench

pytestmark = pytest.mark.slow

_N = 6  # exposures: 4 movie files and 2 over the stream (the second loses a frame)


@pytest.fixture
def no_shared_cluster() -> Iterator[None]:
    """The run starts its own cluster; the suite's shared one is given back afterwards."""
    import ray

    shared = ray.is_initialized()
    if shared:
        ray.shutdown()
    yield
    if shared:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)


def test_a_short_chaos_run_loses_nothing_and_restarts_only_when_killed(
    no_shared_cluster: None, tmp_path: Path
) -> None:
    report = run_faults_bench(
        n=_N,
        size=128,
        frames=4,
        workers=1,
        stream_every=3,
        interval_s=0.3,
        worker_kills=1,
        oom_kills=0,
        daemon_kills=1,
        disk_hold_s=3.0,
        timeout_s=240.0,
        work_dir=tmp_path,
        progress=lambda line: None,
    )
    detail = format_table(report) + str(report.get("daemon_log_tail", ""))
    assert report["finished_in_time"], detail
    assert report["lost"] == 0, (report["lost_exposures"], detail)
    assert report["duplicated"] == 0, detail
    assert report["done"] + report["quarantined"] == _N
    quarantined = report["quarantined_exposures"]
    assert all(entry["code"] and entry["reason"].strip() for entry in quarantined.values())
    # the stream's exposure that lost a frame is quarantined, saying which frame
    [dropped] = [key for key, entry in quarantined.items() if entry["fault"] == "dropped_frame"]
    assert quarantined[dropped]["code"] == "missing_frames"
    assert "frames 1 of 4 never arrived" in quarantined[dropped]["reason"]
    assert not report["unexpected"], detail
    faults = report["faults"]
    assert faults["worker_sigkill"] == 1 and faults["daemon_kill9"] == 1
    assert faults["stream_garbage_message"] == 1 and faults["stream_dropped_frame"] == 1
    assert faults.get("disk_full") == 1 or "disk_full" in report["faults_skipped"]
    # the garbage is quarantined too, without an exposure to name
    assert report["other_quarantine_rows"].get("garbage_message", 0) >= 2
    daemon = report["daemon"]
    assert daemon["restarts"] == daemon["planned_restarts"] == 1, detail
    assert daemon["unplanned_exits"] == 0 and daemon["uptime_unbroken"]
    assert daemon["runs_in_database"] == 2  # one run per start: no restart went unnoticed
    assert [run["ended"] for run in daemon["runs"]] == ["killed", "stopped"]
    # the daemon was killed only once the worker's death had reached it (else that restart
    # would hide it), and the killed worker's exposure came back, with its attempt counted
    assert report["fault_details"]["daemon_kill9"][0]["worker_kills_noticed_before"], detail
    assert report["alerts"].get("ray_actor_died", 0) >= 1, detail
