"""Files an exposure worker writes: MRC micrographs and a RELION-style motion STAR file.

Every file is written to a temporary name in its folder and renamed into place, so a reader
(or a restart) never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import mrcfile
import numpy as np
import pandas as pd
import starfile

if TYPE_CHECKING:
    from models.motion import MotionCorrection

__all__ = ["write_micrograph", "write_motion_star"]


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_micrograph(path: Path, image: np.ndarray, *, pixel_size_angstrom: float) -> Path:
    """Write a 2D float32 micrograph (MRC mode 2) with its pixel size, atomically."""
    if image.ndim != 2:
        raise ValueError(f"a micrograph is 2D (h, w), got shape {image.shape} for {path}")
    with _atomic(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(image, dtype=np.float32))
            mrc.voxel_size = pixel_size_angstrom
    return path


def write_motion_star(
    path: Path, correction: MotionCorrection, *, pixel_size_angstrom: float
) -> Path:
    """The trajectory as a STAR file in RELION's motion-correction layout.

    ``data_general`` (image size, pixel size, frames) and ``data_global_shift`` (frame number
    from 1, shift x/y in pixels). The shifts are causalscope's: the position of the specimen in
    each frame relative to the first. Per-patch trajectories go to ``data_local_shift``.
    """
    aligned = correction.aligned_sum
    height, width = (int(s) for s in aligned.shape[-2:])
    shifts = np.asarray(correction.shifts_px, dtype=np.float64)
    n_frames = len(shifts)
    general: dict[str, object] = {
        "rlnImageSizeX": width,
        "rlnImageSizeY": height,
        "rlnImageSizeZ": n_frames,
        "rlnMicrographBinning": 1.0,
        "rlnMicrographOriginalPixelSize": pixel_size_angstrom,
        "rlnMicrographStartFrame": 1,
    }
    blocks: dict[str, pd.DataFrame | dict[str, object]] = {
        "general": general,
        "global_shift": pd.DataFrame(
            {
                "rlnMicrographFrameNumber": np.arange(1, n_frames + 1),
                "rlnMicrographShiftX": shifts[:, 0],
                "rlnMicrographShiftY": shifts[:, 1],
            }
        ),
    }
    patch_shifts = correction.patch_shifts_px
    positions = correction.patch_positions_px
    if patch_shifts is not None and positions is not None and len(positions):
        ps = np.asarray(patch_shifts, dtype=np.float64)  # (P, F, 2)
        pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        n_patches = pos.shape[0]
        blocks["local_shift"] = pd.DataFrame(
            {
                "rlnMicrographFrameNumber": np.tile(np.arange(1, n_frames + 1), n_patches),
                "rlnCoordinateX": np.repeat(pos[:, 0], n_frames),
                "rlnCoordinateY": np.repeat(pos[:, 1], n_frames),
                "rlnMicrographShiftX": ps[..., 0].reshape(-1),
                "rlnMicrographShiftY": ps[..., 1].reshape(-1),
            }
        )
    with _atomic(path) as tmp:
        starfile.write(blocks, tmp, overwrite=True)
    return path
