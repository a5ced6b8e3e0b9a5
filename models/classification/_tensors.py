"""Private: the tensors of :class:`~.class2d.Class2D`: where its particle images are kept
(:class:`RowStore`: in memory by default, :class:`MemoryRows`; a caller may give one that
keeps them elsewhere, as the live evaluator keeps them in a file), and everything else moved
to another device (:class:`OnDevice`: what is pickled goes to the CPU, so that a saved
classifier loads where there is no GPU)."""

from __future__ import annotations

from typing import Self, TypeVar

import torch

from causalscope.models.classification._em import ClassSums, EStep
from causalscope.models.classification._grids import Grid

__all__ = ["MemoryRows", "OnDevice", "RowStore", "moved"]

T = TypeVar("T")


class RowStore:
    """Rows of equal shape (a classifier's binned particle images), added in order and read
    as one host tensor; what grows with the session, so never moved to a device.

    :meth:`append` checks the shape and keeps room that grows by half when full, so that
    adding a batch costs the batch's size, not the set's (copying the whole set per batch
    would make each batch slower as the set grows). A store says where the rows live:
    :meth:`rows`, :meth:`_capacity`, :meth:`_grow` and :meth:`_write`.
    """

    _n: int = 0
    _shape: tuple[int, ...] = ()

    def __len__(self) -> int:
        """Rows held."""
        return self._n

    def append(self, rows: torch.Tensor) -> None:
        """Add ``(m, ...)`` rows (on any device) after those held."""
        data = rows.detach().to("cpu", torch.float32)
        if self._n and tuple(data.shape[1:]) != self._shape:
            raise ValueError(f"rows of {tuple(data.shape[1:])} after {self._shape}")
        self._shape = tuple(data.shape[1:])
        need = self._n + len(data)
        if need > self._capacity():
            self._grow(max(need, self._capacity() * 3 // 2), need)
        self._write(self._n, data)
        self._n = need

    def rows(self) -> torch.Tensor:
        """``(n, ...)`` float32 CPU tensor of every row held: a view, not to be written to."""
        raise NotImplementedError

    def _capacity(self) -> int:
        """Rows there is room for."""
        raise NotImplementedError

    def _grow(self, capacity: int, need: int) -> None:
        """Room for ``capacity`` rows (at least ``need``), the rows held kept."""
        raise NotImplementedError

    def _write(self, start: int, data: torch.Tensor) -> None:
        """``data`` as rows ``start`` onwards (within the room)."""
        raise NotImplementedError


class MemoryRows(RowStore):
    """A :class:`RowStore` in host memory (``rows``: those it starts with)."""

    def __init__(self, rows: torch.Tensor | None = None) -> None:
        self._buffer = torch.zeros(0)
        if rows is not None:
            self.append(rows)

    def rows(self) -> torch.Tensor:
        return self._buffer[: self._n]

    def _capacity(self) -> int:
        return len(self._buffer)

    def _grow(self, capacity: int, need: int) -> None:
        grown = torch.empty((capacity, *self._shape))
        if self._n:
            grown[: self._n] = self.rows()
        self._buffer = grown

    def _write(self, start: int, data: torch.Tensor) -> None:
        self._buffer[start : start + len(data)] = data

    def __getstate__(self) -> dict[str, object]:
        # not the buffer's spare room
        return {"_buffer": self.rows().clone(), "_n": self._n, "_shape": self._shape}


def moved(value: T, device: torch.device | str) -> T:
    """``value`` on ``device`` when it is a tensor, :class:`ClassSums`, :class:`EStep` or
    :class:`Grid`; anything else (numpy arrays, settings, CTFs) as it is."""
    if isinstance(value, torch.Tensor | ClassSums | EStep | Grid):
        return value.to(device)  # type: ignore[return-value]
    return value


class OnDevice:
    """Holds its tensors (attributes that :func:`moved` moves) on :attr:`device`; pickled with
    every one of them on the CPU, and unpickled there: :meth:`to` moves it back."""

    device: torch.device

    def to(self, device: torch.device | str) -> Self:
        """Every tensor it holds moved to ``device``, where it then computes; itself."""
        self.device = torch.device(device)
        self.__dict__.update({k: moved(v, device) for k, v in self.__dict__.items()})
        return self

    def __getstate__(self) -> dict[str, object]:
        cpu = torch.device("cpu")
        return {**{k: moved(v, cpu) for k, v in self.__dict__.items()}, "device": cpu}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.device = torch.device("cpu")  # as saved (states from before it have no device)
