"""Positions under the eight flips and transposes of an image: which axis convention a
peer's coordinates follow is checked by scoring each."""

from __future__ import annotations

import numpy as np

__all__ = ["axis_conventions"]


def axis_conventions(xy: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """``xy`` ``(n, 2)`` under the eight flips and transposes of an ``(h, w)`` image."""
    h, w = shape
    x, y = xy[:, 0], xy[:, 1]
    return {
        "as_is": np.c_[x, y],
        "flip_x": np.c_[w - 1 - x, y],
        "flip_y": np.c_[x, h - 1 - y],
        "rotate_180": np.c_[w - 1 - x, h - 1 - y],
        "transpose": np.c_[y, x],
        "transpose_flip_x": np.c_[w - 1 - y, x],
        "transpose_flip_y": np.c_[y, h - 1 - x],
        "transpose_rotate_180": np.c_[w - 1 - y, h - 1 - x],
    }
