"""Camera defect lists: SerialEM/IMOD's defect file, or a plain "x y" pixel list.

The SerialEM/IMOD format is the one IMOD's ``CorDefParseDefects`` reads and
``CorDefDefectsToString`` writes (``IMOD/libcfshr/CorrectDefects.cpp``; SerialEM saves it beside
K2/K3 frames as ``defects*.txt``; ``alignframes -defect`` and ``clip defect`` read it). One entry
per line, a keyword then integers; ``#`` starts a comment; unknown keywords are skipped:

``CameraSizeX n``, ``CameraSizeY n``
    Size of the chip the coordinates refer to.
``BadColumns c ...``, ``BadRows r ...``
    Whole bad columns (x) / rows (y); may repeat (IMOD writes 20 per line).
``BadPixels x y [x y ...]``
    Single pixels (IMOD writes 10 pairs per line).
``PartialBadColumn x width y_start y_end``, ``PartialBadRow y height x_start x_end``
    Part of ``width`` columns from row ``y_start`` to ``y_end`` inclusive (rows likewise).
``UsableArea top left bottom right``
    Pixels outside rows ``top..bottom-1`` and columns ``left..right-1`` are unusable; 0 for
    ``bottom``/``right`` means the chip's edge.
``RotationAndFlip n``, ``WasScaled n``, ``K2Type n``
    Read; a non-zero ``RotationAndFlip`` (coordinates of a rotated chip) is refused.

Coordinates are 0-based, x along columns, y along rows of the image as the camera reads it out
(row 0 first, as in a SerialEM TIFF). SerialEM's MRC files store rows bottom-up, and IMOD flips
defect rows for them: pass ``flip_y=True`` for those. When the image is 2x or 4x the chip
(super-resolution), each defect covers the corresponding 2x2 / 4x4 block; when it is binned by
2 or 4, coordinates are divided.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from causalscope.daemon.formats._common import file_size, output_path
from causalscope.models.errors import FormatError

__all__ = ["read_defects", "write_defects"]

_KEYWORD = re.compile(r"^([A-Za-z][A-Za-z0-9]*)[ \t]+(.*)$")
_MIN_VALUES = {
    "CameraSizeX": 1,
    "CameraSizeY": 1,
    "RotationAndFlip": 1,
    "WasScaled": 1,
    "K2Type": 1,
    "UsableArea": 4,
    "PartialBadColumn": 4,
    "PartialBadRow": 4,
    "BadPixels": 2,
    "BadColumns": 1,
    "BadRows": 1,
}


def _parse(path: Path) -> tuple[dict[str, list[list[int]]], list[tuple[int, int]]]:
    """Keyword entries, and "x y" lines (the plain list format)."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError("Unreadable defect list", f"{path}: {exc}", path=path) from exc
    entries: dict[str, list[list[int]]] = {}
    pairs: list[tuple[int, int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _KEYWORD.match(line)
        fields = match.group(2).split() if match else line.split()
        try:
            values = [int(v) for v in fields]
        except ValueError as exc:
            raise FormatError(
                "Bad defect list line", f"{path}, line {number}: {raw!r}", path=path
            ) from exc
        if match is None:
            if len(values) != 2:
                raise FormatError(
                    "Bad defect list line",
                    f"{path}, line {number}: {raw!r} is neither a keyword entry nor 'x y'",
                    path=path,
                )
            pairs.append((values[0], values[1]))
            continue
        keyword = match.group(1)
        if keyword not in _MIN_VALUES:
            continue  # IMOD skips keywords it does not know
        wanted = _MIN_VALUES[keyword]
        if len(values) < wanted or (keyword == "BadPixels" and len(values) % 2):
            raise FormatError(
                "Bad defect list line",
                f"{path}, line {number}: {keyword} needs {wanted}"
                f"{' (pairs)' if keyword == 'BadPixels' else ''} values, got {raw!r}",
                path=path,
            )
        entries.setdefault(keyword, []).append(values)
    if not entries and not pairs:
        raise FormatError("Empty defect list", f"{path} lists no defects", path=path)
    return entries, pairs


def _scale(chip: tuple[int, int] | None, shape: tuple[int, int], path: Path) -> tuple[int, int]:
    """(up, down): image pixels per chip pixel, or chip pixels per image pixel."""
    if chip is None:
        return 1, 1
    chip_h, chip_w = chip
    h, w = shape
    for factor in (1, 2, 4):
        if (h, w) == (chip_h * factor, chip_w * factor):
            return factor, 1
        if (h * factor, w * factor) == (chip_h, chip_w):
            return 1, factor
    raise FormatError(
        "Defect list does not fit the image",
        f"{path}: camera size {chip_w}x{chip_h} (CameraSizeX x CameraSizeY) against an image of "
        f"{w}x{h}; expected equal, 2x/4x super-resolution or binned by 2/4",
        path=path,
    )


def read_defects(path: str | Path, shape: tuple[int, int], *, flip_y: bool = False) -> np.ndarray:
    """A boolean ``(h, w)`` mask, True on bad pixels, from a defect list.

    Parameters
    ----------
    path
        A SerialEM/IMOD defect file or a plain list of "x y" lines (0-based pixels).
    shape
        ``(h, w)`` of the images the mask is for.
    flip_y
        Mirror rows (for SerialEM MRC files, stored bottom-up).

    Raises
    ------
    FormatError
        Unreadable or malformed lines, unsupported ``RotationAndFlip``, a camera size that does
        not match ``shape``, or a defect outside the image.
    """
    path = Path(path)
    file_size(path, "defect list")
    entries, pairs = _parse(path)
    rot_flip = entries.get("RotationAndFlip", [[0]])[-1][0]
    if rot_flip:
        raise FormatError(
            "Unsupported defect list",
            f"{path}: RotationAndFlip {rot_flip}; only defects in the chip's own orientation "
            "(0) are supported",
            path=path,
        )
    chip = None
    if "CameraSizeX" in entries and "CameraSizeY" in entries:
        chip = (entries["CameraSizeY"][-1][0], entries["CameraSizeX"][-1][0])
    up, down = _scale(chip, shape, path)
    ch, cw = chip if chip is not None else (shape[0], shape[1])
    chip_mask: np.ndarray = np.zeros((ch, cw), dtype=bool)

    def mark(rows: slice | int, cols: slice | int, what: str) -> None:
        for value, size in ((rows, ch), (cols, cw)):
            lo, hi = (value.start, value.stop - 1) if isinstance(value, slice) else (value, value)
            if lo < 0 or hi >= size or lo > hi:
                raise FormatError(
                    "Defect outside the image",
                    f"{path}: {what} lies outside the {cw}x{ch} camera",
                    path=path,
                )
        chip_mask[rows, cols] = True

    for values in entries.get("BadColumns", []):
        for x in values:
            mark(slice(0, ch), x, f"BadColumns {x}")
    for values in entries.get("BadRows", []):
        for y in values:
            mark(y, slice(0, cw), f"BadRows {y}")
    for values in entries.get("BadPixels", []):
        for x, y in zip(values[::2], values[1::2], strict=True):
            mark(y, x, f"BadPixels {x} {y}")
    for x, y in pairs:
        mark(y, x, f"pixel {x} {y}")
    for x, width, y0, y1 in (v[:4] for v in entries.get("PartialBadColumn", [])):
        mark(slice(y0, y1 + 1), slice(x, x + width), f"PartialBadColumn {x} {width} {y0} {y1}")
    for y, height, x0, x1 in (v[:4] for v in entries.get("PartialBadRow", [])):
        mark(slice(y, y + height), slice(x0, x1 + 1), f"PartialBadRow {y} {height} {x0} {x1}")
    if "UsableArea" in entries:
        top, left, bottom, right = entries["UsableArea"][-1][:4]
        usable = np.zeros_like(chip_mask)
        usable[top : bottom or ch, left : right or cw] = True
        chip_mask |= ~usable
    if flip_y:
        chip_mask = chip_mask[::-1]
    if up > 1:
        chip_mask = np.repeat(np.repeat(chip_mask, up, axis=0), up, axis=1)
    if down > 1:
        chip_mask = np.any(chip_mask.reshape(shape[0], down, shape[1], down), axis=(1, 3))
    return np.ascontiguousarray(chip_mask)


def _lines(keyword: str, values: list[int], per_line: int) -> list[str]:
    return [
        " ".join([keyword, *(str(v) for v in values[i : i + per_line])])
        for i in range(0, len(values), per_line)
    ]


def write_defects(
    path: str | Path,
    *,
    columns: Iterable[int] = (),
    rows: Iterable[int] = (),
    pixels: Iterable[tuple[int, int]] = (),
    shape: tuple[int, int] | None = None,
    atomic: bool = True,
) -> Path:
    """Write a SerialEM/IMOD defect file (as IMOD's ``CorDefDefectsToString`` lays it out).

    Parameters
    ----------
    columns, rows
        Whole bad columns (x) and rows (y), 0-based.
    pixels
        Bad pixels as ``(x, y)``.
    shape
        ``(h, w)`` of the camera, written as ``CameraSizeX``/``CameraSizeY`` when given.
    """
    path = Path(path)
    cols = sorted({int(c) for c in columns})
    rws = sorted({int(r) for r in rows})
    pix = [(int(x), int(y)) for x, y in pixels]
    if any(v < 0 for v in [*cols, *rws, *(c for p in pix for c in p)]):
        raise ValueError("defect coordinates must be >= 0")
    lines = []
    if shape is not None:
        lines += [f"CameraSizeX {int(shape[1])}", f"CameraSizeY {int(shape[0])}"]
    lines += _lines("BadPixels", [c for p in pix for c in p], 20)
    lines += _lines("BadColumns", cols, 20)
    lines += _lines("BadRows", rws, 20)
    with output_path(path, atomic=atomic) as target:
        target.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path
