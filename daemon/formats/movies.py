"""One entry point for every movie format, dispatching on the file suffix.

``.mrc``/``.mrcs`` (mrcfile), ``.tif``/``.tiff`` (tifffile), ``.eer`` (tifffile + imagecodecs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from causalscope.daemon.formats._common import FrameSelection, MovieInfo, movie_format
from causalscope.daemon.formats.eer import check_eer_complete, eer_info, read_eer_movie
from causalscope.daemon.formats.mrc import check_mrc_complete, mrc_info, read_mrc_movie
from causalscope.daemon.formats.tiff import check_tiff_complete, read_tiff_movie, tiff_info
from causalscope.models.errors import FormatError

__all__ = ["check_complete", "movie_info", "read_movie"]


def read_movie(
    path: str | Path,
    *,
    eer_upsampling: int = 1,
    eer_grouping: int = 1,
    frames: FrameSelection = None,
) -> np.ndarray:
    """Read a movie's frames as ``(n_frames, h, w)``; a single 2D image becomes ``(1, h, w)``.

    Parameters
    ----------
    path
        ``.mrc``, ``.mrcs``, ``.tif``, ``.tiff`` or ``.eer``.
    eer_upsampling
        EER only: render at 1x, 2x or 4x (sub-pixel) resolution. Ignored for other formats.
    eer_grouping
        EER only: detector frames summed per returned fraction; a trailing partial group is
        dropped, as RELION does. Ignored for other formats.
    frames
        Indices (or a slice) of the frames to return (for EER: of the fractions); None for all.

    Returns
    -------
    np.ndarray
        In the stored dtype (int8, int16, uint16, float16, float32 for MRC; uint8 for TIFF);
        EER fractions are uint16 counts. TIFF rows are in file order (see
        :mod:`daemon.formats.tiff` about RELION's y flip).

    Raises
    ------
    FormatError
        Unknown suffix, unreadable, incomplete or corrupt file; names the file and the problem.
    """
    path = Path(path)
    fmt = movie_format(path)
    if fmt == "mrc":
        return read_mrc_movie(path, frames=frames)
    if fmt == "tiff":
        return read_tiff_movie(path, frames=frames)
    return read_eer_movie(path, upsampling=eer_upsampling, grouping=eer_grouping, fractions=frames)


def movie_info(path: str | Path) -> MovieInfo:
    """What a movie's header says (frames, size, dtype, pixel size, byte counts); no decoding.

    It does not judge completeness: compare ``bytes_expected`` with ``bytes_on_disk``, or call
    :func:`check_complete`.
    """
    path = Path(path)
    fmt = movie_format(path)
    if fmt == "mrc":
        return mrc_info(path)
    if fmt == "tiff":
        return tiff_info(path)
    return eer_info(path)


def check_complete(path: str | Path, *, expected_frames: int | None = None) -> MovieInfo:
    """The watcher's cheap check that a movie is whole before it is processed.

    MRC: header only, the file must hold ``1024 + nsymbt + nz*ny*nx*itemsize`` bytes. TIFF/EER:
    every IFD readable and every page's strips inside the file (tags only, no decoding); EER
    also checks the frame count its metadata promises.

    Parameters
    ----------
    path
        The movie.
    expected_frames
        When the metadata (EPU XML, mdoc) says how many frames to expect, fewer is an error:
        a TIFF cut between two pages otherwise looks like a shorter, complete file.

    Raises
    ------
    FormatError
        Zero-byte file, not the format its suffix claims, no frames, truncated or still being
        written, or fewer frames than ``expected_frames``.
    """
    path = Path(path)
    fmt = movie_format(path)
    if fmt == "mrc":
        info = check_mrc_complete(path)
    elif fmt == "tiff":
        info = check_tiff_complete(path)
    else:
        info = check_eer_complete(path)
    if expected_frames is not None and info.n_frames < expected_frames:
        raise FormatError(
            "Incomplete movie",
            f"{path} holds {info.n_frames} frames; its metadata expects {expected_frames}",
            path=path,
        )
    return info
