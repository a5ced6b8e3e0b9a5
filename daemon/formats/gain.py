"""Gain references: read (MRC or TIFF, including Falcon ``.gain``), orient as RELION does, write.

Orientation follows RELION's motion correction (``--gain_rot``, ``--gain_flip``, the same as
MotionCor2's ``-RotGain``/``-FlipGain``), taken from RELION's ``src/jaz/image_op.h`` and
``MotioncorrRunner::prepareGainReference``: rotate first, then flip.

- ``rotation`` k in 0..3 turns the array by k * 90 degrees. One turn maps ``src[y, x]`` to
  ``dst[x, h - 1 - y]``: clockwise as displayed with row 0 at the top (relion_display), which
  is counter-clockwise with y pointing up (MotionCor2's and IMOD's wording). In NumPy:
  ``np.rot90(gain, k=-rotation)``.
- ``flip`` ``"none"`` (0), ``"y"`` (1, upside down: ``gain[::-1, :]``) or ``"x"`` (2, left-right:
  ``gain[:, ::-1]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import mrcfile
import numpy as np
import tifffile

from causalscope.daemon.formats._common import check_positive_pixel_size, file_size, output_path
from causalscope.daemon.formats.tiff import DECODE_ERRORS
from causalscope.models.errors import FormatError

__all__ = ["GAIN_FLIPS", "read_gain", "transform_gain", "write_gain"]

GainFlip = Literal["none", "y", "x"]

#: RELION's ``--gain_flip`` numbers and the names used here.
GAIN_FLIPS: dict[int, GainFlip] = {0: "none", 1: "y", 2: "x"}

_TIFF_SUFFIXES = {".tif", ".tiff", ".gain"}


def read_gain(path: str | Path) -> np.ndarray:
    """A gain reference as a float32 ``(h, w)`` array.

    MRC (one 2D image, or a stack of one) via mrcfile; TIFF and Falcon EER ``.gain`` (a TIFF)
    via tifffile, first page.

    Raises
    ------
    FormatError
        Unreadable, not a single 2D image, or holding NaN/inf values.
    """
    path = Path(path)
    file_size(path, "gain reference")
    suffix = path.suffix.lower()
    try:
        if suffix in _TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                data = tif.pages.first.asarray()
        elif suffix in {".mrc", ".mrcs"}:
            with mrcfile.open(path, mode="r") as mrc:
                data = np.asarray(mrc.data)
        else:
            raise FormatError(
                "Unknown gain reference format",
                f"{path}: suffix {suffix!r}; expected .mrc, .tif, .tiff or .gain",
                path=path,
            )
    except DECODE_ERRORS as exc:
        raise FormatError("Unreadable gain reference", f"{path}: {exc}", path=path) from exc
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise FormatError(
            "Gain reference is not one image", f"{path}: shape {data.shape}", path=path
        )
    gain = data.astype(np.float32)
    bad = int(np.count_nonzero(~np.isfinite(gain)))
    if bad:
        raise FormatError(
            "Invalid gain reference", f"{path}: {bad} pixels are NaN or infinite", path=path
        )
    return gain


def transform_gain(
    gain: np.ndarray, *, rotation: int = 0, flip: GainFlip | int = "none"
) -> np.ndarray:
    """Rotate, then flip, a gain reference as RELION's ``--gain_rot``/``--gain_flip`` do.

    Parameters
    ----------
    gain
        ``(h, w)`` array.
    rotation
        0..3 quarter turns (0: none, 1: 90, 2: 180, 3: 270 degrees), each mapping
        ``src[y, x]`` to ``dst[x, h - 1 - y]`` (see the module docstring for the sense).
    flip
        ``"none"``/0, ``"y"``/1 (upside down) or ``"x"``/2 (left-right), applied after the
        rotation.

    Returns
    -------
    np.ndarray
        A new array; ``(w, h)`` for odd ``rotation``.
    """
    if gain.ndim != 2:
        raise ValueError(f"gain must be 2D (h, w), got shape {gain.shape}")
    if rotation not in (0, 1, 2, 3):
        raise ValueError(f"rotation must be 0, 1, 2 or 3 quarter turns, got {rotation}")
    if isinstance(flip, int):
        if flip not in GAIN_FLIPS:
            raise ValueError(f"flip must be 0, 1 or 2, got {flip}")
        flip = GAIN_FLIPS[flip]
    if flip not in ("none", "y", "x"):
        raise ValueError(f"flip must be 'none', 'y' or 'x', got {flip!r}")
    out = np.rot90(gain, k=-rotation)
    if flip == "y":
        out = out[::-1, :]
    elif flip == "x":
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def write_gain(
    path: str | Path, gain: np.ndarray, *, pixel_size_angstrom: float, atomic: bool = True
) -> Path:
    """Write a gain reference as a float32 MRC image (mode 2) with its pixel size."""
    path = Path(path)
    check_positive_pixel_size(pixel_size_angstrom)
    data = np.asarray(gain, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"gain must be 2D (h, w), got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError("gain holds NaN or infinite values")
    with output_path(path, atomic=atomic) as target:
        with mrcfile.new(target, overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.voxel_size = pixel_size_angstrom
    return path
