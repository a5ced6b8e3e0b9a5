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
        keep_freed_memory, release_freed_memory, resident_bytes,
    )

    MIB = 2**20

    def churn():
        block = np.ones(256 * MIB // 8)  # 256 MiB, every page touched
        del block
        return resident_bytes() / MIB

    out = {"start": resident_bytes() / MIB, "default": churn()}
    out["kept"] = keep_freed_memory()
    out["after_keep"] = churn()
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
    # released: back to about where it started
    assert out["released"] and out["after_release"] - out["start"] < 64, out
