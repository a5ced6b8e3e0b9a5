"""Private: the tensors of :class:`~.class2d.Class2D` held on a device: a store that grows by
half its size (:func:`appended`), and everything moved to another device (:class:`OnDevice`:
what is pickled goes to the CPU, so that a saved classifier loads where there is no GPU; what
grows with the particles stays in host memory and is sent to the device a chunk at a time)."""

from __future__ import annotations

from typing import Self, TypeVar

import torch

from causalscope.models.classification._em import ClassSums, EStep
from causalscope.models.classification._grids import Grid

__all__ = ["OnDevice", "appended", "moved"]

T = TypeVar("T")


def appended(buffer: torch.Tensor, used: int, rows: torch.Tensor) -> torch.Tensor:
    """``buffer`` (its first ``used`` rows in use) with ``rows`` after them, on the rows'
    device. A full buffer is replaced by one half as large again, so that adding a batch costs
    the batch's size, not the set's (copying the whole set per batch would make each batch
    slower as the set grows)."""
    need = used + rows.shape[0]
    if need > buffer.shape[0] or buffer.device != rows.device:
        grown = rows.new_empty((max(need, buffer.shape[0] * 3 // 2), *rows.shape[1:]))
        grown[:used] = buffer[:used]
        buffer = grown
    buffer[used:need] = rows
    return buffer


def moved(value: T, device: torch.device | str) -> T:
    """``value`` on ``device`` when it is a tensor, :class:`ClassSums`, :class:`EStep` or
    :class:`Grid`; anything else (numpy arrays, settings, CTFs) as it is."""
    if isinstance(value, torch.Tensor | ClassSums | EStep | Grid):
        return value.to(device)  # type: ignore[return-value]
    return value


class OnDevice:
    """Holds its tensors (attributes that :func:`moved` moves) on :attr:`device`, but those
    named in :attr:`host_kept`, which stay in host memory; pickled with every one of them on
    the CPU, and unpickled there: :meth:`to` moves it back."""

    device: torch.device
    #: attributes kept in host memory whatever the device (they grow with the data)
    host_kept: tuple[str, ...] = ()

    def to(self, device: torch.device | str) -> Self:
        """Every tensor it holds moved to ``device``, where it then computes; itself."""
        self.device = torch.device(device)
        self.__dict__.update(
            {k: moved(v, device) for k, v in self.__dict__.items() if k not in self.host_kept}
        )
        return self

    def __getstate__(self) -> dict[str, object]:
        cpu = torch.device("cpu")
        return {**{k: moved(v, cpu) for k, v in self.__dict__.items()}, "device": cpu}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.device = torch.device("cpu")  # as saved (states from before it have no device)
