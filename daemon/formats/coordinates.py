"""Micrographs for picking (MRC, TIFF, PNG, JPEG) and particle coordinates.

Coordinates are RELION's: ``rlnCoordinateX`` along columns, ``rlnCoordinateY`` along rows, in
pixels of the micrograph. A coordinate STAR file has one ``data_`` block whose loop holds
``_rlnCoordinateX``, ``_rlnCoordinateY`` and ``_rlnAutopickFigureOfMerit``; the CSV has the
columns ``x_px, y_px, score``. :func:`read_coordinates` also reads what other pickers and
processors write:

- STAR files with any block name that has the two coordinate columns (RELION's manual and
  automatic picks, a particles STAR);
- CSVs whose columns named x/y (or ``x_px``/``y_px``, ``x_coord``/``y_coord``), else the
  first two, are the position;
- Topaz's picks (``.txt``, tab-separated ``image_name x_coord y_coord score``);
- EMAN2 and crYOLO box files (``.box``: the lower-left corner, width and height of each
  box; the centre is the corner plus half the box);
- cryoSPARC particle files (``.cs``: ``location/center_x_frac`` and ``center_y_frac``, shares
  of the micrograph's width and height, ``location/micrograph_shape`` its ``(ny, nx)``; with
  the micrograph's own shape given they fit it at any binning).

:func:`read_scored_coordinates` adds each pick's score where the file has one (STAR's
``rlnAutopickFigureOfMerit``, a CSV's or Topaz's ``score``), and
:func:`coordinates_by_micrograph` splits a file that names several micrographs into each one's
scored picks.

A file that names several micrographs (``rlnMicrographName``, Topaz's ``image_name``,
cryoSPARC's ``location/micrograph_path``) gives the rows of the one asked for: the names whose
stem is the micrograph's, or holds it between underscores (cryoSPARC's uid prefix and
``_doseweighted``, a ``_DW`` or ``_Fractions`` ending).
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from causalscope.models.errors import FormatError, InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "IMAGE_SUFFIXES",
    "ScoredCoordinates",
    "coordinates_by_micrograph",
    "named_micrographs",
    "read_coordinates",
    "read_micrograph",
    "read_scored_coordinates",
    "write_coordinates_csv",
    "write_coordinates_star",
]

IMAGE_SUFFIXES = (".mrc", ".mrcs", ".tif", ".tiff", ".png", ".jpg", ".jpeg")


def _decode_picture(path: Path) -> np.ndarray:
    import imagecodecs

    data = path.read_bytes()
    try:
        if path.suffix.lower() == ".png":
            return np.asarray(imagecodecs.png_decode(data))
        return np.asarray(imagecodecs.jpeg8_decode(data))
    except Exception as error:  # imagecodecs raises its own error types per codec
        raise FormatError(
            "Not an image", f"{path} cannot be decoded as {path.suffix}: {error}", path=path
        ) from None


def read_micrograph(path: str | Path) -> tuple[np.ndarray, float | None]:
    """``(h, w)`` float32 micrograph and the header's pixel size (MRC/TIFF; else None).

    A movie's frames are summed. Raises :class:`FormatError` for a missing file, a file that
    is not an image of these formats, or an RGB picture (convert it to grey yourself: which
    channel mix is right depends on how it was made).
    """
    from causalscope.daemon import formats

    path = Path(path)
    if not path.is_file():
        raise FormatError("File not found", f"{path} does not exist", path=path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise FormatError(
            "Not a micrograph",
            f"{path}: suffix {path.suffix!r} is not one of {', '.join(IMAGE_SUFFIXES)}",
            path=path,
        )
    apix: float | None = None
    if suffix in (".png", ".jpg", ".jpeg"):
        image = _decode_picture(path)
        if image.ndim == 3 and image.shape[-1] in (3, 4):
            raise FormatError(
                "RGB image",
                f"{path} is a colour image {image.shape} ({image.shape[-1]} channels); "
                "give a single-channel grey micrograph",
                path=path,
            )
    else:
        try:
            frames = formats.read_movie(path)
            apix = formats.movie_info(path).pixel_size_angstrom
        except FormatError:
            raise
        except Exception as error:  # mrcfile / tifffile raise several types for bad files
            raise FormatError("Not an image", f"{path}: {error}", path=path) from None
        image = frames.astype(np.float32).sum(axis=0) if frames.shape[0] > 1 else frames[0]
    if image.ndim != 2 or min(image.shape) < 16:
        raise FormatError(
            "Not a 2D micrograph", f"{path} holds an array of shape {image.shape}", path=path
        )
    image = np.asarray(image, dtype=np.float32)
    if not np.isfinite(image).all():
        raise FormatError("Non-finite pixels", f"{path} has NaN or infinite pixels", path=path)
    return image, apix


class ScoredCoordinates(NamedTuple):
    """Picks of one micrograph: ``(n, 2)`` float64 [x, y] (pixels) and each one's score, or
    None where the file gives no score."""

    xy_px: np.ndarray
    scores: np.ndarray | None


class _Rows(NamedTuple):
    """What a coordinate file holds: positions, and where it gives them, scores and each
    row's micrograph name."""

    xy: np.ndarray
    scores: np.ndarray | None = None
    names: np.ndarray | None = None


def read_coordinates(
    path: str | Path,
    *,
    micrograph: str | Path | None = None,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """``(n, 2)`` float64 [x, y] (pixels) from a coordinate file (module docstring).

    ``micrograph`` picks its rows from a file that names several; ``shape`` ``(h, w)`` is the
    micrograph's, for cryoSPARC's shares of it. Raises :class:`FormatError` naming the file
    for what it cannot read.
    """
    return read_scored_coordinates(path, micrograph=micrograph, shape=shape).xy_px


def read_scored_coordinates(
    path: str | Path,
    *,
    micrograph: str | Path | None = None,
    shape: tuple[int, int] | None = None,
) -> ScoredCoordinates:
    """:func:`read_coordinates`' positions with their scores: STAR's
    ``rlnAutopickFigureOfMerit``, a CSV's or Topaz's ``score`` column (None for the others)."""
    path = Path(path)
    rows = _checked(path, shape)
    if rows.names is None:
        return ScoredCoordinates(rows.xy, rows.scores)
    keep = _rows_of(path, rows.names, micrograph)
    return ScoredCoordinates(rows.xy[keep], None if rows.scores is None else rows.scores[keep])


def coordinates_by_micrograph(
    path: str | Path, *, shape: tuple[int, int] | None = None
) -> dict[str, ScoredCoordinates]:
    """Every micrograph's scored picks in a file that names them (Topaz's ``image_name``, a
    STAR's ``rlnMicrographName``, ...), keyed by the name's stem; a micrograph without picks
    is absent. Raises :class:`FormatError` for a file that names no micrograph."""
    path = Path(path)
    rows = _checked(path, shape)
    if rows.names is None:
        raise FormatError(
            "No micrograph names", f"{path} does not say which micrograph each pick is on",
            path=path,
        )  # fmt: skip
    stems = np.array([Path(n).stem for n in rows.names])
    return {
        stem: ScoredCoordinates(
            rows.xy[stems == stem], None if rows.scores is None else rows.scores[stems == stem]
        )
        for stem in sorted(set(stems))
    }


def _checked(path: Path, shape: tuple[int, int] | None) -> _Rows:
    """:func:`_read`'s rows, the positions checked."""
    if not path.is_file():
        raise InputError("File not found", f"{path} does not exist", path=path)
    rows = _read(path, shape)
    if rows.xy.ndim != 2 or rows.xy.shape[1] != 2 or not np.isfinite(rows.xy).all():
        raise FormatError("Bad coordinates", f"{path}: need finite x, y columns", path=path)
    return rows


def _read(path: Path, shape: tuple[int, int] | None) -> _Rows:
    """The file's rows (:class:`_Rows`), by its suffix."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".cs":
            return _cryosparc(path, shape)
        if suffix == ".box":
            return _Rows(_box(path))
        if suffix == ".star":
            return _star(path)
        return _table(path, tabbed=suffix == ".txt")
    except FormatError:
        raise
    except Exception as error:  # parse errors from numpy / pandas / starfile
        raise FormatError("Unreadable coordinates", f"{path}: {error}", path=path) from None


def _column(table: pd.DataFrame, name: Hashable | None) -> np.ndarray | None:
    """``table[name]`` as float64, or None where the table has no such column."""
    if name is None or name not in table.columns:
        return None
    return table[name].to_numpy(dtype=np.float64)


def _star(path: Path) -> _Rows:
    import pandas as pd
    import starfile

    blocks = starfile.read(path, always_dict=True)
    tables = [b for b in blocks.values() if isinstance(b, pd.DataFrame)]
    table = next(
        (t for t in tables if {"rlnCoordinateX", "rlnCoordinateY"} <= set(t.columns)), None
    )
    if table is None:
        raise FormatError("No coordinates", f"{path} has no rlnCoordinateX/Y loop", path=path)
    xy = table[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(dtype=np.float64)
    names = table.get("rlnMicrographName")
    return _Rows(
        xy,
        _column(table, "rlnAutopickFigureOfMerit"),
        None if names is None else names.astype(str).to_numpy(),
    )


def _table(path: Path, *, tabbed: bool) -> _Rows:
    import pandas as pd

    table = pd.read_csv(path, sep=r"\s+" if tabbed else ",")
    names = {str(c).strip().lower(): c for c in table.columns}
    for x_name, y_name in (("x_px", "y_px"), ("x_coord", "y_coord"), ("x", "y")):
        if x_name in names and y_name in names:
            columns = [names[x_name], names[y_name]]
            break
    else:
        columns = list(table.columns[:2])
    xy = table[columns].to_numpy(dtype=np.float64)
    image = names.get("image_name", names.get("micrograph"))
    return _Rows(
        xy,
        _column(table, names.get("score")),
        None if image is None else table[image].astype(str).to_numpy(),
    )


def _box(path: Path) -> np.ndarray:
    """EMAN2 / crYOLO boxes: ``x y w h`` (lower-left corner, size) per line -> centres."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return np.zeros((0, 2))
    if min(len(r) for r in rows) < 4:
        raise FormatError(
            "Not a box file", f"{path}: each line needs x, y, width and height", path=path
        )
    boxes = np.array([[float(v) for v in r[:4]] for r in rows])
    if (boxes[:, 2:] <= 0).any():
        raise FormatError(
            "Bad box size", f"{path}: box sizes must be positive, found {boxes[:, 2:].min():g}",
            path=path,
        )  # fmt: skip
    return boxes[:, :2] + boxes[:, 2:] / 2.0


def _cryosparc(path: Path, shape: tuple[int, int] | None) -> _Rows:
    """cryoSPARC shares of the micrograph -> pixels of ``shape`` (else the file's own)."""
    with path.open("rb") as handle:
        data = np.load(handle, allow_pickle=False)
    fields = data.dtype.names or ()
    wanted = ("location/center_x_frac", "location/center_y_frac", "location/micrograph_path")
    missing = [f for f in wanted if f not in fields]
    if missing:
        raise FormatError(
            "No particle locations",
            f"{path} has no {', '.join(missing)} (export the particles of a picking, "
            "extraction or 2D job)",
            path=path,
        )
    if shape is not None:
        ny, nx = np.full(len(data), shape[0]), np.full(len(data), shape[1])
    elif "location/micrograph_shape" in fields:
        ny, nx = data["location/micrograph_shape"][:, 0], data["location/micrograph_shape"][:, 1]
    else:
        raise FormatError(
            "No micrograph shape", f"{path} has no location/micrograph_shape", path=path
        )
    xy = np.stack(
        [data["location/center_x_frac"] * nx, data["location/center_y_frac"] * ny], axis=1
    ).astype(np.float64)
    names = np.array([_text(v) for v in data["location/micrograph_path"]])
    return _Rows(xy, names=names)


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _runs(stem: str) -> set[str]:
    """Every run of whole ``_``-separated parts of ``stem``: the names of a micrograph that a
    longer name holds (``0123_mic_7_doseweighted`` holds ``mic_7``, not ``mic``'s ``mic_70``)."""
    parts = stem.split("_")
    return {"_".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)}


def _key(micrograph: str | Path) -> str:
    key = Path(micrograph).stem
    for ending in ("_DW", "_doseweighted", "_Fractions"):
        key = key.removesuffix(ending)
    return key


def named_micrographs(path: str | Path) -> set[str]:
    """The micrograph names a coordinate file holds, as every name that finds their rows
    (:func:`read_coordinates`' ``micrograph``, less its folder and suffix); empty for a file
    that names none or cannot be read."""
    path = Path(path)
    try:
        # only the names are wanted: any shape does for cryoSPARC's shares (it need not hold one)
        names = _read(path, (1, 1)).names
    except Exception:  # unreadable: read_coordinates says why when it is read for an exposure
        return set()
    if names is None:
        return set()
    found: set[str] = set()
    for stem in {Path(n).stem for n in names}:
        found |= _runs(stem)
    return found


def _rows_of(path: Path, names: np.ndarray, micrograph: str | Path | None) -> np.ndarray:
    """Which rows are the micrograph's: all of them if the file names one micrograph."""
    unique = sorted({Path(n).stem for n in names})
    if len(unique) <= 1:
        return np.ones(len(names), dtype=bool)
    if micrograph is None:
        raise FormatError(
            "Several micrographs",
            f"{path} names {len(unique)} micrographs ({_few(unique)}); give the micrograph "
            "whose coordinates to read",
            path=path,
        )
    key = _key(micrograph)
    holds = {stem: key in _runs(stem) for stem in unique}
    rows = np.array([holds[Path(n).stem] for n in names])
    if not rows.any():
        raise FormatError(
            "Micrograph not in the file",
            f"{path} names {len(unique)} micrographs ({_few(unique)}), none of them {key!r}",
            path=path,
        )
    return rows


def write_coordinates_star(path: str | Path, xy_px: np.ndarray, scores: np.ndarray) -> Path:
    """RELION coordinate STAR: one ``data_`` block, X, Y and the figure of merit."""
    import pandas as pd
    import starfile

    path = Path(path)
    xy = np.asarray(xy_px, dtype=np.float64).reshape(-1, 2)
    table = pd.DataFrame(
        {
            "rlnCoordinateX": np.round(xy[:, 0], 2),
            "rlnCoordinateY": np.round(xy[:, 1], 2),
            "rlnAutopickFigureOfMerit": np.round(np.asarray(scores, dtype=np.float64), 5),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    starfile.write({"": table}, path, overwrite=True)
    return path


def write_coordinates_csv(path: str | Path, xy_px: np.ndarray, scores: np.ndarray) -> Path:
    """CSV ``x_px, y_px, score``."""
    path = Path(path)
    xy = np.asarray(xy_px, dtype=np.float64).reshape(-1, 2)
    lines = ["x_px,y_px,score"]
    lines += [f"{x:.2f},{y:.2f},{s:.5f}" for (x, y), s in zip(xy, np.asarray(scores), strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
