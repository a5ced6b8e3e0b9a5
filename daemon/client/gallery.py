"""The 2D classes' gallery: one PNG of every class average, cut back into one picture per class.

The evaluator writes the averages side by side, :data:`GALLERY_COLUMNS` to a row, each
``b x b`` average in a tile of ``b + 2`` pixels (a one-pixel border all round), rejected ones
crossed out (``class_sets.gallery_path``). A reader that has the sheet (the file, or the PNG
the control action ``thumbnail`` with ``kind`` ``class_gallery`` sends) gets the pictures back
with :func:`gallery_tiles`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GALLERY_COLUMNS", "gallery_tiles"]

#: Averages per row of the gallery (fewer when there are fewer classes).
GALLERY_COLUMNS = 10


def gallery_tiles(sheet: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """The ``n_classes`` averages of a gallery ``(h, w)`` sheet, in class order.

    Raises
    ------
    ValueError
        The sheet's shape is not that of a gallery of ``n_classes`` averages.
    """
    if n_classes < 1:
        raise ValueError(f"a gallery holds at least one class, got n_classes={n_classes}")
    if sheet.ndim != 2:
        raise ValueError(f"a gallery is one grey (h, w) picture, got shape {sheet.shape}")
    columns = min(GALLERY_COLUMNS, n_classes)
    rows = -(-n_classes // columns)
    height, width = sheet.shape
    tile = width // columns
    if tile < 3 or width != columns * tile or height != rows * tile:
        raise ValueError(
            f"a gallery of {n_classes} classes is {rows} x {columns} square tiles; "
            f"got a {height} x {width} picture"
        )
    b = tile - 2
    out = []
    for index in range(n_classes):
        r, c = divmod(index, columns)
        top, left = r * tile + 1, c * tile + 1
        out.append(sheet[top : top + b, left : left + b].copy())
    return out
