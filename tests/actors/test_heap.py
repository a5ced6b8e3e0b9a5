"""The exposure worker's C heap (``actors._memory``): freed movie-sized memory stays in the
process while it works, and goes back to the system when told. Run in a child process, so the
suite's own process keeps glibc's defaults."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

_CHILD = textwrap.dedent(
    """
    import json
    import numpy as np
    from causalscope.actors._memory import (
        keep_freed_memory, release_freed_memory, release_if_large, resident_bytes,
    )

    MIB = 2**20

    def churn():
        block = np.ones(256 * MIB // 8)  # 256 MiB, every page touched
        del block
        return resident_bytes() / MIB

    out = {"start": resident_bytes() / MIB, "default": churn()}
    out["kept"] = keep_freed_memory()
    out["after_keep"] = churn()
    # a small worker keeps its heap, one above the limit gives it back
    out["small_released"] = release_if_large(resident_bytes() + 64 * MIB)
    out["after_small"] = resident_bytes() / MIB
    out["large_released"] = release_if_large(resident_bytes() - 64 * MIB)
    out["after_large"] = resident_bytes() / MIB
    churn()
    out["released"] = release_freed_memory()
    out["after_release"] = resident_bytes() / MIB
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap: Linux only")
def test_freed_memory_is_kept_while_working_and_given_back_after() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120, check=True
    )
    out = json.loads(done.stdout)
    if not out["kept"]:
        pytest.skip("the C library is not glibc: nothing to keep")
    # glibc's default: a 256 MiB block is unmapped on free
    assert out["default"] - out["start"] < 64, out
    # kept: the freed block stays resident, ready for the next exposure's temporaries
    assert out["after_keep"] - out["start"] > 200, out
    # a worker below the limit keeps it for the next exposure; above it, gives it back
    assert not out["small_released"] and out["after_small"] - out["start"] > 200, out
    assert out["large_released"] and out["after_large"] - out["start"] < 64, out
    # released: back to about where it started
    assert out["released"] and out["after_release"] - out["start"] < 64, out


_THREADS_CHILD = textwrap.dedent(
    """
    import json, sys
    from concurrent.futures import ThreadPoolExecutor
    import numpy as np
    from causalscope.actors._memory import keep_freed_memory, resident_bytes

    MIB = 2**20

    def churn(_):
        block = np.ones(256 * MIB // 8)  # 256 MiB, every page touched
        del block

    if sys.argv[1] == "threads_first":  # e.g. a movie decoded on threads
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: np.ones(4096).sum(), range(8)))
    kept = keep_freed_memory()
    start = resident_bytes() / MIB
    with ThreadPoolExecutor(2) as pool:  # as the motion's patches and sums are shared
        list(pool.map(churn, range(4)))
    print(json.dumps({"kept": kept, "grew": resident_bytes() / MIB - start}))
    """
)


def _threads_child(order: str, env: dict[str, str] | None = None) -> dict[str, float]:
    import os

    done = subprocess.run(
        [sys.executable, "-c", _THREADS_CHILD, order],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        # the suite's Ray cluster put one heap into this process's environment
        env={**{k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}, **(env or {})},
    )
    out: dict[str, float] = json.loads(done.stdout)
    if not out["kept"]:
        pytest.skip("the C library is not glibc: nothing to keep")
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap: Linux only")
def test_threads_share_the_kept_heap_only_when_it_is_kept_before_any_thread() -> None:
    from causalscope.actors._memory import ONE_HEAP_ENV

    # kept first: the threads' freed blocks stay in the one heap, resident
    assert _threads_child("keep_first")["grew"] > 200
    # threads first: they kept heaps of their own, and new threads are handed those again,
    # which map each block afresh and unmap it on free (the kernel zeroes it every time)
    assert _threads_child("threads_first")["grew"] < 64
    # the environment of an exposure actor gives one heap from the process's start
    assert _threads_child("threads_first", ONE_HEAP_ENV)["grew"] > 200
