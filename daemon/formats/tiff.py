"""Multi-page TIFF movies (SerialEM, EPU K3) via tifffile + imagecodecs: one page per frame.

Frames are returned in the file's row order, exactly as tifffile decodes them. RELION and
MotionCor2 flip TIFF movies along y when reading them (RELION's "Conventions" page); a gain
reference made for those programs must be matched to that orientation by the caller.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from causalscope.daemon.formats._common import (
    FrameSelection,
    MovieInfo,
    captured_log,
    decode_threads,
    file_size,
    frame_indices,
    output_path,
)
from causalscope.models.errors import FormatError

__all__ = ["check_tiff_complete", "read_tiff_movie", "tiff_info", "write_tiff_movie"]

#: What tifffile raises for files it cannot parse (TiffFileError is a ValueError).
LIBRARY_ERRORS = (ValueError, OSError, EOFError, struct.error, IndexError, KeyError)
#: ... and what imagecodecs raises for corrupt compressed data (ImcdError is a RuntimeError).
DECODE_ERRORS = (*LIBRARY_ERRORS, RuntimeError)

_COMPRESSIONS = {"lzw": "lzw", "none": None}


@dataclass(frozen=True)
class TiffScan:
    """Result of walking a TIFF's IFD chain without decoding any strip."""

    n_pages: int
    shape: tuple[int, ...]
    dtype: str
    strip_end: int
    compressions: frozenset[int]
    log: tuple[str, ...]
    eer_metadata: dict[str, Any]
    first_page: int


def scan_tiff(path: Path, kind: str, *, eer: bool = False) -> tuple[TiffScan, int]:
    """Walk every IFD of ``path`` (cheap: tags only) and return what they say, and the file size.

    With ``eer`` the pages of the EER frame series are scanned (an EER file may start with an
    uncompressed integrated image) and the EER acquisition metadata is returned.
    """
    size = file_size(path, kind)
    try:
        with captured_log("tifffile") as messages, tifffile.TiffFile(path) as tif:
            first = 0
            metadata: dict[str, Any] = {}
            if eer:
                if not tif.pages.first.is_eer:
                    raise FormatError(
                        "Not an EER movie",
                        f"{path}: no EER acquisition metadata (TIFF tag 65001) on the first page",
                        path=path,
                    )
                metadata = dict(tif.eer_metadata or {})
                first = 1 if tif.pages.first.compression == 1 else 0
            pages = list(tif.pages)[first:]
            shapes = {tuple(int(n) for n in page.shape) for page in pages}
            dtypes = {str(page.dtype) for page in pages if page.dtype is not None}
            compressions = frozenset(int(page.compression) for page in pages)
            strip_end = 0
            for page in pages:
                for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
                    strip_end = max(strip_end, int(offset) + int(count))
    except LIBRARY_ERRORS as exc:
        raise FormatError(f"Unreadable {kind}", f"{path}: {exc}", path=path) from exc
    if len(shapes) > 1:
        raise FormatError(
            f"Inconsistent {kind}",
            f"{path}: pages have different shapes {sorted(shapes)}",
            path=path,
        )
    shape = shapes.pop() if shapes else (0, 0)
    if pages and len(shape) != 2:
        raise FormatError(
            f"Not a grayscale {kind}",
            f"{path}: each page has shape {shape}; expected (height, width)",
            path=path,
        )
    scan = TiffScan(
        n_pages=len(pages),
        shape=shape,
        dtype=dtypes.pop() if len(dtypes) == 1 else "uint8",
        strip_end=strip_end,
        compressions=compressions,
        log=tuple(messages),
        eer_metadata=metadata,
        first_page=first,
    )
    return scan, size


def raise_if_incomplete(scan: TiffScan, path: Path, kind: str, bytes_on_disk: int) -> None:
    """FormatError when the scan shows a file still being written or truncated."""
    if scan.n_pages == 0:
        raise FormatError(f"{kind} has no frames", f"{path} holds no image pages", path=path)
    if scan.strip_end > bytes_on_disk:
        raise FormatError(
            f"Truncated {kind}",
            f"{path}: page data extend to byte {scan.strip_end} but the file has "
            f"{bytes_on_disk} bytes (still being written, or truncated)",
            path=path,
        )
    broken = [m for m in scan.log if "offset" in m or "corrupt" in m.lower()]
    if broken:
        raise FormatError(
            f"Truncated {kind}",
            f"{path}: the chain of pages is broken after {scan.n_pages} frames "
            f"({broken[0]}; still being written, or truncated)",
            path=path,
        )


def tiff_info(path: str | Path) -> MovieInfo:
    """Header information of a TIFF movie, from its IFDs only (no strip is decoded)."""
    path = Path(path)
    scan, size = scan_tiff(path, "TIFF movie")
    return MovieInfo(
        path=path,
        format="tiff",
        n_frames=scan.n_pages,
        height_px=scan.shape[0],
        width_px=scan.shape[1],
        dtype=scan.dtype,
        pixel_size_angstrom=None,
        bytes_expected=scan.strip_end,
        bytes_on_disk=size,
    )


def check_tiff_complete(path: str | Path) -> MovieInfo:
    """Cheap completeness check of a TIFF movie: every IFD readable, every strip inside the file.

    Raises
    ------
    FormatError
        Empty or not a TIFF, no pages, a broken IFD chain, or strips past the end of the file.
    """
    path = Path(path)
    scan, size = scan_tiff(path, "TIFF movie")
    raise_if_incomplete(scan, path, "TIFF movie", size)
    return tiff_info(path)


def read_tiff_movie(path: str | Path, *, frames: FrameSelection = None) -> np.ndarray:
    """Frames of a multi-page TIFF as ``(n_frames, h, w)`` in the stored dtype."""
    info = check_tiff_complete(path)
    idx = frame_indices(info.n_frames, frames, info.path)
    out_shape = (len(idx), info.height_px, info.width_px)
    if len(idx) == 0:
        return np.zeros(out_shape, dtype=info.dtype)
    try:
        with tifffile.TiffFile(info.path) as tif:
            data = tif.asarray(key=[int(i) for i in idx], maxworkers=decode_threads())
    except DECODE_ERRORS as exc:
        raise FormatError("Corrupt TIFF movie", f"{info.path}: {exc}", path=info.path) from exc
    return np.asarray(data).reshape(out_shape)


def write_tiff_movie(
    path: str | Path,
    frames: np.ndarray,
    *,
    compression: str = "lzw",
    atomic: bool = True,
) -> Path:
    """Write ``(n_frames, h, w)`` counts as a multi-page uint8 TIFF, one page per frame.

    Parameters
    ----------
    path
        The ``.tif``/``.tiff`` file (replaced if present).
    frames
        Integer counts in 0..255 (as K3 frames saved by SerialEM or EPU).
    compression
        ``"lzw"`` (default, as SerialEM and EPU write) or ``"none"``.
    atomic
        Write to a hidden temporary beside ``path`` and rename at the end (see
        :func:`daemon.formats.write_mrc_movie`).
    """
    path = Path(path)
    if compression not in _COMPRESSIONS:
        raise ValueError(f"compression must be one of {sorted(_COMPRESSIONS)}, got {compression!r}")
    data = np.asarray(frames)
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3 or data.shape[0] == 0:
        raise ValueError(f"frames must be (n >= 1, h, w) or (h, w), got shape {data.shape}")
    stored = data.astype(np.uint8)
    if not np.array_equal(stored, data):
        raise ValueError("TIFF movie frames must be integer counts in 0..255")
    with output_path(path, atomic=atomic) as target:
        tifffile.imwrite(
            target,
            stored,
            compression=_COMPRESSIONS[compression],
            photometric="minisblack",
            metadata=None,
        )
    return path
