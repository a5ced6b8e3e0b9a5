"""MRC / MRCS movies via mrcfile: header-only info, completeness check, reading and writing.

Supported modes (MRC2014): 0 int8, 1 int16, 2 float32, 6 uint16, 12 float16. The reader keeps the
stored dtype; callers convert. A movie is a stack of ``nz`` frames, whatever the space group says
(image stack or volume); a single 2D image is returned as one frame.
"""

from __future__ import annotations

import math
from pathlib import Path

import mrcfile
import mrcfile.utils
import numpy as np

from causalscope.daemon.formats._common import (
    FrameSelection,
    MovieInfo,
    check_positive_pixel_size,
    file_size,
    frame_indices,
    output_path,
)
from causalscope.models.errors import FormatError

__all__ = [
    "FLOAT16_VARIANCE_SHARE",
    "MRC_MODES",
    "check_mrc_complete",
    "mrc_info",
    "read_mrc_movie",
    "write_micrograph",
    "write_mrc_movie",
]

#: MRC mode -> NumPy dtype of the modes we read and write.
MRC_MODES: dict[int, np.dtype] = {
    0: np.dtype(np.int8),
    1: np.dtype(np.int16),
    2: np.dtype(np.float32),
    6: np.dtype(np.uint16),
    12: np.dtype(np.float16),
}
_HEADER_BYTES = 1024
#: a micrograph is stored as float16 only where rounding to float16's spacing at its largest
#: value adds at most this share of its variance (:func:`write_micrograph`)
FLOAT16_VARIANCE_SHARE = 1e-4


def mrc_info(path: str | Path) -> MovieInfo:
    """Read an MRC movie's header only (``header_only=True``): never touches the pixels.

    Raises
    ------
    FormatError
        The file is empty, not MRC (no ``MAP`` id) or has a mode we do not read.
    """
    path = Path(path)
    size = file_size(path, "MRC movie")
    try:
        with mrcfile.open(path, mode="r", header_only=True) as mrc:
            header = mrc.header
            dtype = mrcfile.utils.data_dtype_from_header(header)
            nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
            mode = int(header.mode)
            extended = int(header.nsymbt)
            voxel_x = float(mrc.voxel_size.x)
    except ValueError as exc:
        raise FormatError("Not a readable MRC file", f"{path}: {exc}", path=path) from exc
    if mode not in MRC_MODES:
        raise FormatError(
            "Unsupported MRC mode",
            f"{path}: mode {mode}; supported modes are {sorted(MRC_MODES)}",
            path=path,
        )
    if min(nx, ny, nz) < 0 or extended < 0:
        raise FormatError(
            "Corrupt MRC header",
            f"{path}: nx, ny, nz, nsymbt = {nx}, {ny}, {nz}, {extended}",
            path=path,
        )
    expected = _HEADER_BYTES + extended + nx * ny * nz * np.dtype(dtype).itemsize
    pixel = voxel_x if np.isfinite(voxel_x) and voxel_x > 0 else None
    return MovieInfo(
        path=path,
        format="mrc",
        n_frames=nz,
        height_px=ny,
        width_px=nx,
        dtype=np.dtype(dtype).name,
        pixel_size_angstrom=pixel,
        bytes_expected=expected,
        bytes_on_disk=size,
    )


def check_mrc_complete(path: str | Path) -> MovieInfo:
    """Header-only completeness check: the file holds every byte its header promises.

    Raises
    ------
    FormatError
        Empty file, not MRC, no frames, or shorter than ``1024 + nsymbt + nz*ny*nx*itemsize``
        (still being written, or truncated).
    """
    info = mrc_info(path)
    if info.n_frames == 0 or info.height_px == 0 or info.width_px == 0:
        raise FormatError(
            "MRC movie has no frames",
            f"{info.path}: header says nx, ny, nz = {info.width_px}, {info.height_px}, "
            f"{info.n_frames}",
            path=info.path,
        )
    if info.bytes_on_disk < info.bytes_expected:
        raise FormatError(
            "Truncated MRC movie",
            f"{info.path}: header promises {info.bytes_expected} bytes ({info.n_frames} frames of "
            f"{info.height_px}x{info.width_px} {info.dtype}) but the file has "
            f"{info.bytes_on_disk} bytes (still being written, or truncated)",
            path=info.path,
        )
    return info


def read_mrc_movie(path: str | Path, *, frames: FrameSelection = None) -> np.ndarray:
    """Frames of an MRC movie as ``(n_frames, h, w)`` in the stored dtype.

    The file is memory-mapped, so selecting a few ``frames`` reads only those.
    """
    info = check_mrc_complete(path)
    idx = frame_indices(info.n_frames, frames, info.path)
    try:
        with mrcfile.mmap(info.path, mode="r") as mrc:
            data = mrc.data
            if data is None:
                raise FormatError("MRC movie has no data", f"{info.path}", path=info.path)
            if data.ndim == 2:
                data = data[np.newaxis]
            if data.ndim != 3:
                raise FormatError(
                    "Not a movie", f"{info.path}: data has shape {data.shape}", path=info.path
                )
            return np.array(data[idx])
    except ValueError as exc:
        raise FormatError("Unreadable MRC movie", f"{info.path}: {exc}", path=info.path) from exc


def _mrc_dtype(frames: np.ndarray, mode: int | None) -> np.dtype:
    """The dtype to store ``frames`` in: ``mode``'s, or the smallest exact one."""
    if mode is not None:
        if mode not in MRC_MODES:
            raise ValueError(f"mode must be one of {sorted(MRC_MODES)}, got {mode}")
        return MRC_MODES[mode]
    if frames.dtype == np.float16:
        return MRC_MODES[12]
    if frames.dtype.kind == "f":
        return MRC_MODES[2]
    if frames.size == 0:
        return MRC_MODES[0]
    lo, hi = int(frames.min()), int(frames.max())
    if lo >= 0 and hi <= 127:
        return MRC_MODES[0]
    if lo >= 0 and hi <= 65535:
        return MRC_MODES[6]
    if lo >= -32768 and hi <= 32767:
        return MRC_MODES[1]
    raise ValueError(f"integer frames span {lo}..{hi}: no MRC integer mode holds them")


def write_mrc_movie(
    path: str | Path,
    frames: np.ndarray,
    *,
    pixel_size_angstrom: float,
    mode: int | None = None,
    atomic: bool = True,
) -> Path:
    """Write ``(n_frames, h, w)`` frames (or one ``(h, w)`` image) as an MRC movie.

    Parameters
    ----------
    path
        The ``.mrc``/``.mrcs`` file to write (replaced if present).
    frames
        Pixel values. Integer or boolean data go to mode 0 (int8) when they fit in 0..127, else
        mode 6 (uint16), else mode 1 (int16); float16 to mode 12; other floats to mode 2.
    pixel_size_angstrom
        Written as the voxel size.
    mode
        Force an MRC mode (0, 1, 2, 6, 12). Integer modes require integer values in range.
    atomic
        Write a hidden temporary file in the same folder and rename it onto ``path`` at the end,
        so a watcher never sees a partial file. ``False`` writes ``path`` directly.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    check_positive_pixel_size(pixel_size_angstrom)
    data = np.asarray(frames)
    if data.ndim not in (2, 3):
        raise ValueError(f"frames must be (n, h, w) or (h, w), got shape {data.shape}")
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    if data.dtype.kind not in "iuf":
        raise ValueError(f"frames must be numeric, got dtype {data.dtype}")
    dtype = _mrc_dtype(data, mode)
    stored = data.astype(dtype, copy=False)  # a float32 micrograph is written as it is
    if dtype.kind in "iu" and not np.array_equal(stored, data):
        raise ValueError(f"frames are not exactly representable as {dtype} (MRC mode {mode})")
    with output_path(path, atomic=atomic) as target:
        with mrcfile.new(target, overwrite=True) as mrc:
            mrc.set_data(stored)
            if stored.ndim == 3:
                mrc.set_image_stack()
            mrc.voxel_size = pixel_size_angstrom
    return path


def write_micrograph(
    path: str | Path, image: np.ndarray, *, pixel_size_angstrom: float, float16: bool = False
) -> Path:
    """Write one ``(h, w)`` micrograph as float32 (MRC mode 2) or, with ``float16``, as 16-bit
    floats (mode 12, which RELION 4 and later and cryoSPARC read): half the bytes.

    float16 keeps 11 significant bits. Its spacing at the image's largest value ``m`` is
    ``2^(floor(log2 m) - 10)`` (0.03 for counts near 40), and rounding adds a uniform error of
    that spacing squared over 12 in variance. The image goes to mode 12 only where that is at
    most :data:`FLOAT16_VARIANCE_SHARE` of its own variance (a sum of 40 counts per pixel:
    below 1e-5 of its shot noise; restored to a spread of 1 around 40: 0.8e-4); otherwise, or
    past float16's range (65504) or with a value that is not finite, it is written as float32.
    """
    data = np.asarray(image, dtype=np.float32)
    mode = 2
    if float16 and data.size and bool(np.isfinite(data).all()):
        largest = float(np.abs(data).max())
        variance = float(data.var(dtype=np.float64))
        if 0.0 < largest <= float(np.finfo(np.float16).max):
            spacing = 2.0 ** (math.floor(math.log2(largest)) - 10)
            if spacing * spacing / 12.0 <= FLOAT16_VARIANCE_SHARE * variance:
                mode = 12
    return write_mrc_movie(path, data, pixel_size_angstrom=pixel_size_angstrom, mode=mode)
