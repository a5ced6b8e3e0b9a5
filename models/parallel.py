"""Independent pieces of one computation shared between Python threads.

torch splits each operation across its threads, and every operation ends with the threads
waiting for one another. Where the work is many small operations (the patches of a movie, its
frames in the sums, the two half sums through the denoiser), those waits dominate whenever
another process holds a core: 25 patches of a 1024^2 x 20 movie took 2.5 s on 2 torch
threads beside a busy process, and 1.2-1.8 s with the patches shared between 2 Python threads
(1.6 s against 1.3 s on a quiet machine). torch's operations release the interpreter's lock,
so Python threads run them side by side.

Pieces of small images (:func:`small_images`) also run each on one torch thread: torch's
threads yield their core while they wait (``OMP_WAIT_POLICY=PASSIVE``), so an operation split
across two waits for the other thread to wake, and on two cores two Python threads each with
two torch threads are four threads. Beside a busy process a 1024^2 x 20 movie's 25 patches
took 0.72-0.78 s that way against 0.86-1.01 s with two torch threads each (the exposure
worker's motion stage, side by side); on an idle machine the two took the same time
(0.57-0.61 s). Large images keep torch's threads: at 4096^2 x 40 (beside a busy process) the
patches (1620 px) and the sums took 21 and 15-16 s on one torch thread each against 18 and
13-14 s on two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

__all__ = ["SMALL_IMAGE_PX", "map_pieces", "one_torch_thread", "python_threads", "small_images"]

#: images of at most this many pixels are small (:func:`small_images`)
SMALL_IMAGE_PX = 1024 * 1024

T = TypeVar("T")
R = TypeVar("R")


def python_threads(device: torch.device | str) -> int:
    """Python threads for independent pieces on ``device``: one per torch thread on a CPU, one
    on a GPU (its kernels already run side by side)."""
    return 1 if torch.device(device).type == "cuda" else max(1, torch.get_num_threads())


def small_images(height: int, width: int) -> bool:
    """Whether operations on ``(height, width)`` images are small enough to run each on one
    torch thread (see the module docstring)."""
    return height * width <= SMALL_IMAGE_PX


def map_pieces(
    function: Callable[[T], R],
    pieces: Iterable[T],
    *,
    device: torch.device | str,
    name: str,
    one_thread: bool = False,
) -> list[R]:
    """``[function(p) for p in pieces]``, the pieces shared between :func:`python_threads`
    threads (named ``name``), each thread on one torch thread with ``one_thread`` (for pieces
    of small operations); an exception in one is raised here."""
    items = list(pieces)
    workers = min(python_threads(device), len(items))
    if workers <= 1:
        return [function(item) for item in items]
    threads = 1 if one_thread else torch.get_num_threads()
    with ThreadPoolExecutor(
        workers, thread_name_prefix=name, initializer=torch.set_num_threads, initargs=(threads,)
    ) as pool:
        return list(pool.map(function, items))


@contextmanager
def one_torch_thread(active: bool = True) -> Iterator[None]:
    """Run the block's torch operations on one thread of the calling thread (when
    ``active``), for a sequence of small operations that cannot be shared out: each would
    otherwise wait for a second thread to wake (see the module docstring)."""
    before = torch.get_num_threads()
    if active:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if active:
            torch.set_num_threads(before)
