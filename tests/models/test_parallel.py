"""Pieces shared between Python threads: results in order, errors raised, threads as torch has,
each piece on one torch thread."""

from __future__ import annotations

import threading

import pytest
import torch

from causalscope.models.parallel import map_pieces, one_torch_thread, python_threads, small_images


def test_pieces_come_back_in_order_from_as_many_threads_as_torch_has() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        names: set[str] = set()
        inner: set[int] = set()
        barrier = threading.Barrier(2, timeout=10)  # both threads must run at once to pass it

        def square(x: int) -> int:
            names.add(threading.current_thread().name)
            inner.add(torch.get_num_threads())
            if x < 2:
                barrier.wait()
            return x * x

        assert python_threads("cpu") == 2
        assert map_pieces(square, range(6), device="cpu", name="pieces") == [0, 1, 4, 9, 16, 25]
        assert len(names) == 2 and all(n.startswith("pieces") for n in names)
        assert inner == {2}  # the caller's torch threads, not the machine's cores
        # pieces of small operations run each on one torch thread; the caller keeps its two
        inner.clear()
        squares = map_pieces(square, range(6), device="cpu", name="pieces", one_thread=True)
        assert squares == [0, 1, 4, 9, 16, 25]
        assert inner == {1} and torch.get_num_threads() == 2
        assert small_images(1024, 1024) and not small_images(1620, 1620)
        torch.set_num_threads(1)
        names.clear()
        assert map_pieces(lambda x: x + 1, [1, 2], device="cpu", name="p") == [2, 3]
        assert python_threads("cuda") == 1
    finally:
        torch.set_num_threads(previous)


def test_an_error_in_a_piece_is_raised() -> None:
    def fail(x: int) -> int:
        if x == 3:
            raise ValueError("piece 3 is broken")
        return x

    with pytest.raises(ValueError, match="piece 3 is broken"):
        map_pieces(fail, range(5), device="cpu", name="p")


def test_one_torch_thread_runs_the_block_on_one_and_restores_the_count() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_torch_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with one_torch_thread(False):
            assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="inside"), one_torch_thread():
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
