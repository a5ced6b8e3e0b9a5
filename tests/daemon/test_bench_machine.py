"""A benchmark's report says what else used the CPU while it ran: a busy process outside the
benchmark is listed with about the CPU time it used; the benchmark's own children are not."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from causalscope.daemon.bench._machine import busy_others, cpu_seconds, machine_load, own_tree

_SPIN = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end: pass\n"


def test_a_busy_process_beside_the_benchmark_is_listed_with_its_cpu_time() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", _SPIN.format(s=1.5)])
    try:
        # its child counts as another process here: only this process is the block's own
        with machine_load(own=lambda _: {os.getpid()}) as machine:
            time.sleep(1.2)
    finally:
        spinner.wait()
    mine = [row for row in machine["other_processes"] if row["pid"] == spinner.pid]
    assert len(mine) == 1
    # it spun for the whole block, on one core (at least half of it on a busy machine)
    assert 0.5 * machine["wall_s"] <= mine[0]["cpu_s"] <= 1.1 * machine["wall_s"] + 0.2
    assert len(machine["load_average_before"]) == 3 and machine["cpus"] == os.cpu_count()


def test_the_benchmark_s_own_children_are_not_listed() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", _SPIN.format(s=1.0)])
    try:
        with machine_load() as machine:  # default: this process and its descendants
            time.sleep(0.8)
    finally:
        spinner.wait()
    assert spinner.pid not in {row["pid"] for row in machine["other_processes"]}


def test_cpu_time_by_hand() -> None:
    before = {1: ("init", 5.0, 0), 10: ("spin", 2.0, 1), 11: ("idle", 3.0, 1), 20: ("me", 0.0, 1)}
    after = {
        1: ("init", 5.0, 0),
        10: ("spin", 6.0, 1),  # 4 s of a 4 s block: one core
        11: ("idle", 3.01, 1),  # below 2 % of the block
        12: ("new", 1.0, 1),  # started meanwhile: from zero
        20: ("me", 9.0, 1),
        21: ("child", 3.0, 20),
    }
    own = own_tree(after, 20)
    assert own == {20, 21}
    rows = busy_others(before, after, own, wall_s=4.0)
    assert [(r["pid"], r["cpu_s"], r["cores"]) for r in rows] == [(10, 4.0, 1.0), (12, 1.0, 0.25)]
    assert os.getpid() in cpu_seconds()
