"""Falcon 4/4i EER movies: read (tifffile + imagecodecs) with grouping and upsampling; write.

An EER file is a BigTIFF; each page is one detector frame (about 250-2000 per second), stored
as one strip with TIFF compression 65000, 65001 or 65002. Acquisition metadata is an XML block
(``<metadata><item name=...>``) in tag 65001 of the first page.

Bit layout of compression 65001 (what :func:`write_eer_movie` writes; imagecodecs'
``eer_decode`` reads the same, checked by exact round trips at 1x, 2x and 4x): the strip is a
bit stream read least-significant bit first (byte 0 bit 0 is the first bit). Each code starts
with a 7-bit run length ``r``: the next ``r`` pixels (raster order, x fastest) hold no electron.
``r == 127`` continues the run with no electron. Otherwise an electron sits on the pixel
reached, and 4 sub-pixel bits follow: 2 bits of x (low), then 2 bits of y, each stored as
``true_subpixel ^ 0b10`` (RELION's ``^ 0x0A`` on the 4 bits); the next run starts on the pixel
after the electron, so a pixel holds at most one electron per frame. The stream ends with a run
that reaches the last pixel; the strip is padded with zero bytes to an even length.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import tifffile

from causalscope.daemon.formats._common import (
    FrameSelection,
    MovieInfo,
    decode_threads,
    frame_indices,
    output_path,
)
from causalscope.daemon.formats.tiff import DECODE_ERRORS, raise_if_incomplete, scan_tiff
from causalscope.models.errors import FormatError

__all__ = ["check_eer_complete", "eer_info", "read_eer_movie", "write_eer_movie"]

_EER_COMPRESSION = 65001  # 7-bit run lengths, 2 + 2 sub-pixel bits
_RUN_BITS = 7
_MAX_RUN = (1 << _RUN_BITS) - 1
_CODE_BITS = _RUN_BITS + 4
_SUBPIXEL_XOR = 0b1010
_UPSAMPLING_TO_SUPERRES = {1: 0, 2: 1, 4: 2}


class _SizedFrames(Protocol):
    """Frames that say how many they are and are read one at a time."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[np.ndarray]: ...


def eer_info(path: str | Path) -> MovieInfo:
    """Header information of an EER movie (IFDs and the metadata XML; no frame is decoded).

    ``n_frames`` counts detector frames; ``height_px``/``width_px`` are the sensor grid (1x);
    ``pixel_size_angstrom`` comes from ``sensorPixelSize.width`` when the file has it.
    """
    path = Path(path)
    scan, size = scan_tiff(path, "EER movie", eer=True)
    pixel = scan.eer_metadata.get("sensorPixelSize.width")
    pixel_angstrom = float(pixel) * 1e10 if isinstance(pixel, int | float) and pixel > 0 else None
    return MovieInfo(
        path=path,
        format="eer",
        n_frames=scan.n_pages,
        height_px=scan.shape[0],
        width_px=scan.shape[1],
        dtype="uint8",
        pixel_size_angstrom=pixel_angstrom,
        bytes_expected=scan.strip_end,
        bytes_on_disk=size,
    )


def check_eer_complete(path: str | Path) -> MovieInfo:
    """Cheap completeness check of an EER movie (see :func:`check_tiff_complete`).

    Also fails when the metadata's ``numberOfFrames`` is larger than the frames present, or a
    frame page is not EER-compressed.
    """
    path = Path(path)
    scan, size = scan_tiff(path, "EER movie", eer=True)
    raise_if_incomplete(scan, path, "EER movie", size)
    unknown = scan.compressions - {65000, 65001, 65002}
    if unknown:
        raise FormatError(
            "Not an EER movie",
            f"{path}: frame pages use TIFF compression {sorted(unknown)}, not EER (65000-65002)",
            path=path,
        )
    promised = scan.eer_metadata.get("numberOfFrames")
    if isinstance(promised, int) and promised > scan.n_pages:
        raise FormatError(
            "Truncated EER movie",
            f"{path}: metadata promises {promised} frames but the file holds {scan.n_pages} "
            "(still being written, or truncated)",
            path=path,
        )
    return eer_info(path)


def read_eer_movie(
    path: str | Path,
    *,
    upsampling: int = 1,
    grouping: int = 1,
    fractions: FrameSelection = None,
) -> np.ndarray:
    """Render an EER movie as ``(n_fractions, h * upsampling, w * upsampling)`` uint16 counts.

    Parameters
    ----------
    path
        The ``.eer`` file.
    upsampling
        1 (physical pixels), 2 or 4 (the 2x2 / 4x4 sub-pixel grid). A sub-pixel render is
        shaped ``(h * upsampling, w * upsampling)`` and sums to the same counts.
    grouping
        EER frames summed into each fraction. As in RELION, a trailing partial group is dropped:
        ``n_fractions = n_frames // grouping``.
    fractions
        Which fractions to return (after grouping); None for all.
    """
    if upsampling not in _UPSAMPLING_TO_SUPERRES:
        raise ValueError(f"upsampling must be 1, 2 or 4, got {upsampling}")
    if grouping < 1:
        raise ValueError(f"grouping must be >= 1, got {grouping}")
    info = check_eer_complete(path)
    n_fractions = info.n_frames // grouping
    if n_fractions == 0:
        raise FormatError(
            "Too few EER frames",
            f"{info.path} has {info.n_frames} frames, fewer than one group of {grouping}",
            path=info.path,
        )
    idx = frame_indices(n_fractions, fractions, info.path)
    shape = (info.height_px * upsampling, info.width_px * upsampling)
    out = np.zeros((len(idx), *shape), dtype=np.uint16)
    try:
        superres = _UPSAMPLING_TO_SUPERRES[upsampling]
        with tifffile.TiffFile(info.path, superres=superres) as tif:
            pages = list(tif.series[0].pages)  # the page headers read here, in one thread
            tif.filehandle.set_lock(True)  # the threads' reads of the strips take turns

            def render(k: int) -> None:  # fraction k: its pages decoded and summed
                start = int(idx[k]) * grouping
                for page in pages[start : start + grouping]:
                    if page is None:
                        raise FormatError("Missing EER frame", f"{info.path}", path=info.path)
                    out[k] += page.asarray()

            # whole fractions per thread: the pages' decoding releases the interpreter's lock
            threads = max(1, min(decode_threads(), len(idx)))
            with ThreadPoolExecutor(threads, thread_name_prefix="eer") as pool:
                list(pool.map(render, range(len(idx))))
    except DECODE_ERRORS as exc:
        raise FormatError("Corrupt EER movie", f"{info.path}: {exc}", path=info.path) from exc
    return out


def _encode_frame(pixel_index: np.ndarray, subpixel: np.ndarray, n_pixels: int) -> bytes:
    """Encode one frame: sorted unique raster indices and their 4-bit sub-pixels (x | y << 2)."""
    pos = pixel_index.astype(np.int64)
    start = np.concatenate([[0], pos[:-1] + 1]) if pos.size else pos
    gaps = pos - start
    n_full = gaps // _MAX_RUN  # 127-runs before each electron's own code
    tail = n_pixels - (int(pos[-1]) + 1 if pos.size else 0)
    tail_full, tail_rest = divmod(tail, _MAX_RUN)
    bit_start = np.concatenate([[0], np.cumsum(_RUN_BITS * n_full + _CODE_BITS)])
    code_at = bit_start[:-1] + _RUN_BITS * n_full
    end_at = int(bit_start[-1])
    last_run = tail_rest > 0 or tail_full == 0
    total_bits = end_at + _RUN_BITS * tail_full + (_RUN_BITS if last_run else 0)
    n_bytes = (total_bits + 7) // 8 + 2  # two spare bytes: the decoder peeks ahead
    n_bytes += n_bytes % 2  # imagecodecs requires an even strip length
    # Runs of 127 are all ones: mark their starts and ends, then integrate.
    edges = np.zeros(n_bytes * 8 + 1, dtype=np.int32)
    # each index array is strictly increasing (no repeats): plain fancy indexing adds
    edges[bit_start[:-1]] += 1
    edges[code_at] -= 1
    edges[end_at] += 1
    edges[end_at + _RUN_BITS * tail_full] -= 1
    bits = (np.cumsum(edges[:-1]) > 0).astype(np.uint8)
    code = (gaps % _MAX_RUN) | ((subpixel.astype(np.int64) ^ _SUBPIXEL_XOR) << _RUN_BITS)
    for b in range(_CODE_BITS):
        bits[code_at + b] = (code >> b) & 1
    if last_run:
        at = end_at + _RUN_BITS * tail_full
        for b in range(_RUN_BITS):
            bits[at + b] = (tail_rest >> b) & 1
    return np.packbits(bits, bitorder="little").tobytes()


def _chained(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _frames_from_counts(
    counts: Iterator[np.ndarray], rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Per frame, ``(k, 2)`` int arrays of (pixel index, sub-pixel) from 0/1 counts."""
    for i, frame in enumerate(counts):
        frame = np.asarray(frame)
        if frame.dtype.kind not in "iub":
            raise ValueError(f"counts must be integers, got dtype {frame.dtype} in frame {i}")
        if frame.size and (frame.min() < 0 or frame.max() > 1):
            raise ValueError(
                f"EER holds at most one electron per pixel per frame; frame {i} has counts "
                f"{int(frame.min())}..{int(frame.max())} (split it over more EER frames)"
            )
        flat = np.flatnonzero(frame.ravel())
        sub = rng.integers(0, 16, size=flat.size)
        yield np.stack([flat, sub], axis=1)


def _frames_from_positions(
    positions: Iterator[np.ndarray], shape: tuple[int, int]
) -> Iterator[np.ndarray]:
    """Per frame, (pixel index, sub-pixel) from ``(k, 2)`` float (x, y) positions in pixels."""
    h, w = shape
    for i, xy in enumerate(positions):
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        x4 = np.floor(xy[:, 0] * 4).astype(np.int64)
        y4 = np.floor(xy[:, 1] * 4).astype(np.int64)
        if np.any((x4 < 0) | (x4 >= 4 * w) | (y4 < 0) | (y4 >= 4 * h)):
            raise ValueError(f"frame {i}: electron positions outside the {w}x{h} sensor")
        flat = (y4 // 4) * w + x4 // 4
        order = np.argsort(flat, kind="stable")
        flat, x4, y4 = flat[order], x4[order], y4[order]
        if np.any(np.diff(flat) == 0):
            raise ValueError(f"frame {i}: two electrons in one pixel; EER holds at most one")
        yield np.stack([flat, (x4 % 4) | ((y4 % 4) << 2)], axis=1)


def _metadata_xml(items: dict[str, tuple[object, str | None]]) -> bytes:
    parts = ["<metadata>"]
    for name, (value, unit) in items.items():
        unit_attr = f' unit="{unit}"' if unit else ""
        parts.append(f'<item name="{name}"{unit_attr}>{value}</item>')
    parts.append("</metadata>")
    return "".join(parts).encode()


def write_eer_movie(
    path: str | Path,
    events_or_counts: np.ndarray | _SizedFrames,
    *,
    shape: tuple[int, int] | None = None,
    pixel_size_angstrom: float | None = None,
    exposure_time_s: float | None = None,
    seed: int = 0,
    atomic: bool = True,
) -> Path:
    """Encode electron events as an EER movie (compression 65001), for tests and the simulator.

    Parameters
    ----------
    path
        The ``.eer`` file to write.
    events_or_counts
        Either counts, each 0 or 1 (EER records at most one electron per pixel per frame): an
        integer array ``(n_frames, h, w)`` or a sized iterable of ``(h, w)`` integer frames
        (read one at a time: a 4096^2 movie of 1,280 EER frames is 21 GB as one array); each
        electron gets a uniformly random 4x4 sub-pixel position from
        ``np.random.default_rng(seed)``. Or a sized iterable of ``(k, 2)`` float arrays, one
        per frame, of electron positions ``(x, y)`` in pixels (x along columns) with
        quarter-pixel precision (the sub-pixel is ``floor(4 * fraction)``); needs ``shape``.
    shape
        ``(h, w)`` of the sensor, for positions.
    pixel_size_angstrom, exposure_time_s
        Written into the EER metadata XML when given.
    seed
        Seeds the sub-pixel placement of counts.
    atomic
        Temporary file and rename, as for the other writers.
    """
    path = Path(path)
    n_frames = len(events_or_counts)
    frames = iter(events_or_counts)
    first = next(frames, None)
    if first is None:
        raise ValueError("need at least one frame, got none")
    rest = _chained(first, frames)
    if np.asarray(first).ndim == 2 and np.asarray(first).dtype.kind in "iub" and shape is None:
        frame_shape = (int(first.shape[0]), int(first.shape[1]))
        events = _frames_from_counts(rest, np.random.default_rng(seed))
    else:
        if shape is None:
            raise ValueError("shape=(h, w) is required when events are given as positions")
        frame_shape = (int(shape[0]), int(shape[1]))
        events = _frames_from_positions(rest, frame_shape)
    h, w = frame_shape
    if h < 1 or w < 1:
        raise ValueError(f"need a non-empty sensor, got {h}x{w}")
    items: dict[str, tuple[object, str | None]] = {
        "commercialName": ("causalscope simulator", None),
        "numberOfFrames": (n_frames, None),
        "sensorImageHeight": (h, "pixels"),
        "sensorImageWidth": (w, "pixels"),
    }
    if pixel_size_angstrom is not None:
        items["sensorPixelSize.height"] = (pixel_size_angstrom * 1e-10, "m")
        items["sensorPixelSize.width"] = (pixel_size_angstrom * 1e-10, "m")
    if exposure_time_s is not None:
        items["exposureTime"] = (exposure_time_s, "s")
    metadata = _metadata_xml(items)
    with output_path(path, atomic=atomic) as target:
        with tifffile.TiffWriter(target, bigtiff=True) as tif:
            for i, ev in enumerate(events):
                strip = _encode_frame(ev[:, 0], ev[:, 1], h * w)
                # tifffile has no EER encoder: write the encoded strip as "deflate" and
                # re-label the pages' compression below.
                tif.write(
                    iter([strip]),
                    shape=frame_shape,
                    dtype=np.uint8,
                    compression="zlib",
                    rowsperstrip=h,
                    photometric="minisblack",
                    metadata=None,
                    extratags=[(65001, 7, len(metadata), metadata, True)] if i == 0 else None,
                )
        with tifffile.TiffFile(target, mode="r+") as tif:
            for page in tif.pages:
                if isinstance(page, tifffile.TiffPage):
                    page.tags[259].overwrite(_EER_COMPRESSION)
    return path
