"""The live evaluator's 2D particle store in a file (:class:`FileRows`, made by
:func:`particle_store`).

The classifier keeps every particle's binned image (16 KB at the 64 px working grid). In the
process's memory that grows with the session (1.6 GB at 10^5 particles, 16 GB at 10^6), and
the state saved at each update held all of it again (1,581 MiB written in 5.5 s at 10^5). Here
the images are raw float32 rows in one file beside ``state.pt``, memory-mapped: they sit in
the page cache, which the kernel reads in as the E-step asks for them and can drop again,
and the state holds only their count (19 MiB in 0.3 s at 10^5).

The state names the file by its absolute path, as it names the exposures' particle files: a
session resumes where it was written.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalscope.models.classification import RowStore
from causalscope.models.errors import FormatError

__all__ = ["PARTICLE_ROWS", "FileRows", "particle_store"]

_DTYPE = np.float32
#: the file's name in the evaluator's folder, beside ``state.pt``
PARTICLE_ROWS = "class2d_particles.f32"


def particle_store(state_dir: Path) -> FileRows:
    """A new, empty store for the classifier of the evaluator in ``state_dir``."""
    return FileRows(Path(state_dir) / PARTICLE_ROWS)


class FileRows(RowStore):
    """A :class:`~models.classification.RowStore` in the file ``path`` (emptied when made).

    The file's rows past the count hold nothing. Pickled (with the evaluator's state), it is
    flushed to disk first and gives its path, row shape and count; unpickled, it maps the file
    again, and the rows past that count (added after the state was saved, by an update that a
    restart does again) are written over.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        self._map: np.memmap | None = None

    def rows(self) -> torch.Tensor:
        if self._map is None:
            return torch.zeros((0, *self._shape))
        return torch.from_numpy(self._map[: self._n])

    def flush(self) -> None:
        """Write the rows to disk (msync)."""
        if self._map is not None:
            self._map.flush()

    def _capacity(self) -> int:
        return 0 if self._map is None else len(self._map)

    def _grow(self, capacity: int, need: int) -> None:
        try:
            self._map = self._mapped(capacity, grow=True)
        except OSError:  # no room to spare: room for the rows needed alone, else the error
            self._map = self._mapped(need, grow=True)

    def _write(self, start: int, data: torch.Tensor) -> None:
        assert self._map is not None  # _grow made it
        self._map[start : start + len(data)] = data.numpy()

    def _row_bytes(self) -> int:
        return math.prod(self._shape) * np.dtype(_DTYPE).itemsize

    def _mapped(self, capacity: int, *, grow: bool) -> np.memmap:
        """The file mapped as ``capacity`` rows (first made that long when ``grow``: its
        blocks allocated now, so that a full disk raises ``OSError`` here; a sparse file
        would kill the process with SIGBUS when a write into the mapping finds no space)."""
        if grow:
            self.flush()
            with open(self.path, "r+b") as handle:
                os.posix_fallocate(handle.fileno(), 0, capacity * self._row_bytes())
        shape = (capacity, *self._shape)
        return np.memmap(self.path, dtype=_DTYPE, mode="r+", shape=shape)

    def __getstate__(self) -> dict[str, object]:
        self.flush()
        return {"path": str(self.path), "shape": self._shape, "n": self._n}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = Path(state["path"])
        self._shape = tuple(int(v) for v in state["shape"])
        self._n = int(state["n"])
        self._map = None
        if not self._n:
            return
        need = self._n * self._row_bytes()
        size = self.path.stat().st_size if self.path.is_file() else None
        if size is None or size < need:
            raise FormatError(
                "Particle store too short",
                f"{self.path} holds {'no file' if size is None else f'{size} bytes'}; the "
                f"saved state needs {need} ({self._n} rows of {self._shape} float32)",
                path=self.path,
            )
        self._map = self._mapped(size // self._row_bytes(), grow=False)
