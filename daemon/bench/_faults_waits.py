"""The chaos run's waits on the live session: it is asked, through the daemon's query socket,
what its database holds now."""

from __future__ import annotations

import time

from causalscope.daemon.bench._faults_ledger import Planned
from causalscope.daemon.bench._live import DaemonProcess

__all__ = ["wait_finished", "wait_kills_noticed", "wait_stream_recorded"]


def _id_list(ids: list[str]) -> str:
    return ", ".join(f"'{exposure_id}'" for exposure_id in ids)  # safe names (letters, _)


def wait_stream_recorded(daemon: DaemonProcess, sent: list[str], garbage: int) -> None:
    """Until everything sent over the stream is in the session database (the stream has no
    acknowledgements: see the ``faults`` module's docstring)."""
    if not sent and not garbage:
        return
    deadline = time.monotonic() + 120.0
    listed = _id_list(sent) or "''"
    sql = (
        f"SELECT (SELECT count(DISTINCT exposure_id) FROM (SELECT exposure_id FROM exposures "
        f"WHERE exposure_id IN ({listed}) UNION SELECT exposure_id FROM quarantine WHERE "
        f"exposure_id IN ({listed}))), (SELECT count(*) FROM quarantine WHERE exposure_id IS "
        "NULL AND code = 'garbage_message')"
    )
    while time.monotonic() < deadline:
        rows = daemon.query(sql)
        if rows and rows[0][0] >= len(sent) and rows[0][1] >= garbage:
            return
        time.sleep(0.3)


def wait_kills_noticed(daemon: DaemonProcess, kills: int, timeout_s: float = 60.0) -> bool:
    """Until the daemon has started at least ``kills`` attempts beyond each exposure's first:
    a worker killed mid-exposure gives that exposure a second attempt, one killed while idle
    fails the next exposure sent to it, which goes back to the queue. A daemon killed before
    that would take the worker's death with it, and the run would show nothing of it. (The
    count is a lower bound: a restart's resumed exposures count too.) False at the timeout."""
    if kills <= 0:
        return True
    deadline = time.monotonic() + timeout_s
    sql = "SELECT coalesce(sum(attempts - 1), 0) FROM exposures WHERE attempts > 1"
    while time.monotonic() < deadline:
        rows = daemon.query(sql)
        if rows and int(rows[0][0]) >= kills:
            return True
        time.sleep(0.3)
    return False


def wait_finished(daemon: DaemonProcess, plan: list[Planned], deadline: float) -> bool:
    """Until every planned exposure is done or quarantined (or the deadline); a daemon that
    exited by itself is started again (the report counts it)."""
    listed = _id_list([p.exposure_id for p in plan])
    sql = (
        "SELECT count(DISTINCT exposure_id) FROM (SELECT exposure_id FROM exposures WHERE "
        f"state IN ('done', 'quarantined') AND exposure_id IN ({listed}) UNION SELECT "
        f"exposure_id FROM quarantine WHERE exposure_id IN ({listed}))"
    )
    while time.monotonic() < deadline:
        if not daemon.alive():
            daemon.start()  # an unplanned exit: counted in the report, and the run goes on
            daemon.wait_ready()
        rows = daemon.query(sql)
        if rows and rows[0][0] >= len(plan):
            return True
        time.sleep(1.0)
    return False
