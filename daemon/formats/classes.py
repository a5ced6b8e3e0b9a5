"""2D classes as files other tools read: the averages (MRCS), their gallery (PNG) and RELION's
``model.star``.

:func:`write_class_files` writes ``class_averages.mrcs`` (one average per class, protein
bright), ``classes.png`` (the averages in class order, 10 to a row, rejected ones crossed
out) and ``model.star`` (``data_model_classes``: reference image, class distribution and
estimated resolution, the labels RELION's Class2D writes and its class selection reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["class_gallery", "write_class_files"]

#: RELION writes resolutions it cannot estimate as 999 A.
_NO_RESOLUTION = 999.0


def class_gallery(averages: np.ndarray, keep: np.ndarray, *, columns: int = 10) -> np.ndarray:
    """``uint8`` sheet of the ``(K, b, b)`` averages side by side, rejected ones crossed out."""
    import torch

    from causalscope.models.thumbnails import to_uint8

    k, b = averages.shape[0], averages.shape[-1]
    columns = max(1, min(columns, k))
    rows = -(-k // columns)
    sheet = np.zeros((rows * (b + 2), columns * (b + 2)), dtype=np.uint8)
    for i in range(k):
        tile = to_uint8(torch.as_tensor(averages[i]))
        if not keep[i]:
            diagonal = np.arange(b)
            tile[diagonal, diagonal] = tile[diagonal, b - 1 - diagonal] = 0
        r, c = divmod(i, columns)
        sheet[r * (b + 2) + 1 : r * (b + 2) + 1 + b, c * (b + 2) + 1 : c * (b + 2) + 1 + b] = tile
    return sheet


def write_class_files(
    folder: str | Path,
    averages: np.ndarray,
    *,
    pixel_size_angstrom: float,
    keep: np.ndarray,
    particles: Sequence[int],
    resolutions_angstrom: Sequence[float],
    stem: str = "",
) -> dict[str, str]:
    """Write the averages, gallery and model STAR into ``folder`` (names prefixed ``stem``);
    the written paths by kind (``averages``, ``gallery``, ``model_star``)."""
    import pandas as pd
    import starfile

    from causalscope.daemon.formats.mrc import write_mrc_movie
    from causalscope.daemon.formats.png import write_png

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stack = folder / f"{stem}class_averages.mrcs"
    write_mrc_movie(stack, averages, pixel_size_angstrom=pixel_size_angstrom, mode=2)
    gallery = write_png(folder / f"{stem}classes.png", class_gallery(averages, keep))
    counts = np.asarray(particles, dtype=float)
    table = pd.DataFrame(
        {
            "rlnReferenceImage": [f"{k + 1}@{stack.name}" for k in range(len(counts))],
            "rlnClassDistribution": counts / max(counts.sum(), 1.0),
            "rlnEstimatedResolution": [min(float(r), _NO_RESOLUTION) for r in resolutions_angstrom],
        }
    )
    model = folder / f"{stem}model.star"
    partial = model.with_name(f".{model.name}.part")
    starfile.write({"model_classes": table}, partial, overwrite=True)
    partial.replace(model)
    return {"averages": str(stack), "gallery": str(gallery), "model_star": str(model)}
