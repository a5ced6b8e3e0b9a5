"""Private: the tensors of :class:`~.class2d.Class2D`: where its particle images are kept
(:class:`RowStore`: in memory by default, :class:`MemoryRows`; a caller may give one that
keeps them elsewhere, as the live evaluator keeps them in a file), and everything else moved
to another device (:class:`OnDevice`: what is pickled goes to the CPU, so that a saved
classifier loads where there is no GPU)."""

from __future__ import annotations

from typing import Protocol, Self, TypeVar

import torch

from causalscope.models.classification._em import ClassSums, EStep
from causalscope.models.classification._grids import Grid

__all__ = ["MemoryRows", "OnDevice", "RowStore", "moved"]

T = TypeVar("T")


class RowStore(Protocol):
    """Rows of equal shape (a classifier's binned particle images), added in order and read
    as one host tensor; what grows with the session, so never moved to a device."""

    def __len__(self) -> int:
        """Rows held."""
        ...

    def append(self, rows: torch.Tensor) -> None:
        """Add ``(m, ...)`` rows (on any device) after those held."""
        ...

    def rows(self) -> torch.Tensor:
        """``(n, ...)`` float32 CPU tensor of every row held: a view, not to be written to."""
        ...


class MemoryRows:
    """A :class:`RowStore` in host memory: a buffer replaced by one half as large again when
    full, so that adding a batch costs the batch's size, not the set's (copying the whole set
    per batch would make each batch slower as the set grows)."""

    def __init__(self, rows: torch.Tensor | None = None) -> None:
        self._buffer = torch.zeros(0) if rows is None else rows.detach().to("cpu", torch.float32)
        self._n = 0 if rows is None else len(rows)

    def __len__(self) -> int:
        return self._n

    def append(self, rows: torch.Tensor) -> None:
        rows = rows.detach().to("cpu", torch.float32)
        if self._n and rows.shape[1:] != self._buffer.shape[1:]:
            raise ValueError(
                f"rows of {tuple(rows.shape[1:])} after {tuple(self._buffer.shape[1:])}"
            )
        need = self._n + rows.shape[0]
        if need > self._buffer.shape[0] or self._buffer.shape[1:] != rows.shape[1:]:
            grown = rows.new_empty((max(need, self._buffer.shape[0] * 3 // 2), *rows.shape[1:]))
            if self._n:
                grown[: self._n] = self._buffer[: self._n]
            self._buffer = grown
        self._buffer[self._n : need] = rows
        self._n = need

    def rows(self) -> torch.Tensor:
        return self._buffer[: self._n]

    def __getstate__(self) -> dict[str, object]:
        return {"_buffer": self.rows().clone(), "_n": self._n}  # not the buffer's spare room


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
