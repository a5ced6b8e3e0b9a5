"""Independent pieces of one computation shared between Python threads.

torch splits each operation across its threads, and every operation ends with the threads
waiting for one another. Where the work is many small operations (the patches of a movie, its
frames in the sums, the two half sums through the denoiser), those waits dominate whenever
another process holds a core: 25 patches of a 1024^2 x 20 movie took 2.5 s on 2 torch
threads beside a busy process, and 1.2-1.8 s with the patches shared between 2 Python threads
(1.6 s against 1.3 s on a quiet machine). torch's operations release the interpreter's lock,
so Python threads run them side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["map_pieces", "python_threads"]

T = TypeVar("T")
R = TypeVar("R")


def python_threads(device: torch.device | str) -> int:
    """Python threads for independent pieces on ``device``: one per torch thread on a CPU, one
    on a GPU (its kernels already run side by side)."""
    return 1 if torch.device(device).type == "cuda" else max(1, torch.get_num_threads())


def map_pieces(
    function: Callable[[T], R], pieces: Iterable[T], *, device: torch.device | str, name: str
) -> list[R]:
    """``[function(p) for p in pieces]``, the pieces shared between :func:`python_threads`
    threads (named ``name``); an exception in one is raised here."""
    items = list(pieces)
    workers = min(python_threads(device), len(items))
    if workers <= 1:
        return [function(item) for item in items]
    # each thread is one of torch's: its own operations run on it alone, so that no operation
    # waits for a team of threads to wake (torch's waits yield their core)
    with ThreadPoolExecutor(
        workers, thread_name_prefix=name, initializer=torch.set_num_threads, initargs=(1,)
    ) as pool:
        return list(pool.map(function, items))
