"""Motion trajectories as STAR files in RELION's motion-correction layout (via starfile).

``data_general`` (image size, pixel size, frames), ``data_global_shift`` (frame number from 1,
shift x/y in pixels) and, when patches were aligned, ``data_local_shift`` (per patch centre and
frame). The shifts are causalscope's: the position of the specimen in each frame relative to
the first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from causalscope.daemon.formats._common import check_positive_pixel_size, output_path

__all__ = ["write_motion_star"]


def write_motion_star(
    path: str | Path,
    shifts_px: np.ndarray,
    *,
    width_px: int,
    height_px: int,
    pixel_size_angstrom: float,
    patch_positions_px: np.ndarray | None = None,
    patch_shifts_px: np.ndarray | None = None,
    atomic: bool = True,
) -> Path:
    """Write a trajectory: ``shifts_px`` ``(F, 2)``; patches ``(P, 2)`` and ``(P, F, 2)``."""
    path = Path(path)
    check_positive_pixel_size(pixel_size_angstrom)
    shifts = np.asarray(shifts_px, dtype=np.float64).reshape(-1, 2)
    n_frames = len(shifts)
    frame_numbers = np.arange(1, n_frames + 1)
    blocks: dict[str, pd.DataFrame | dict[str, object]] = {
        "general": {
            "rlnImageSizeX": width_px,
            "rlnImageSizeY": height_px,
            "rlnImageSizeZ": n_frames,
            "rlnMicrographBinning": 1.0,
            "rlnMicrographOriginalPixelSize": pixel_size_angstrom,
            "rlnMicrographStartFrame": 1,
        },
        "global_shift": pd.DataFrame(
            {
                "rlnMicrographFrameNumber": frame_numbers,
                "rlnMicrographShiftX": shifts[:, 0],
                "rlnMicrographShiftY": shifts[:, 1],
            }
        ),
    }
    if patch_positions_px is not None and patch_shifts_px is not None:
        positions = np.asarray(patch_positions_px, dtype=np.float64).reshape(-1, 2)
        patch_shifts = np.asarray(patch_shifts_px, dtype=np.float64)
        if patch_shifts.shape != (len(positions), n_frames, 2):
            raise ValueError(
                f"patch shifts must be (patches, frames, 2) = ({len(positions)}, {n_frames}, 2), "
                f"got {patch_shifts.shape} for {path}"
            )
        if len(positions):
            blocks["local_shift"] = pd.DataFrame(
                {
                    "rlnMicrographFrameNumber": np.tile(frame_numbers, len(positions)),
                    "rlnCoordinateX": np.repeat(positions[:, 0], n_frames),
                    "rlnCoordinateY": np.repeat(positions[:, 1], n_frames),
                    "rlnMicrographShiftX": patch_shifts[..., 0].reshape(-1),
                    "rlnMicrographShiftY": patch_shifts[..., 1].reshape(-1),
                }
            )
    with output_path(path, atomic=atomic) as target:
        starfile.write(blocks, target, overwrite=True)
    return path
