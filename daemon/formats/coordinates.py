"""Micrographs for picking (MRC, TIFF, PNG, JPEG) and particle coordinates (STAR, CSV).

Coordinates are RELION's: ``rlnCoordinateX`` along columns, ``rlnCoordinateY`` along rows, in
pixels of the micrograph. A coordinate STAR file has one ``data_`` block whose loop holds
``_rlnCoordinateX``, ``_rlnCoordinateY`` and ``_rlnAutopickFigureOfMerit``; the CSV has the
columns ``x_px, y_px, score``. Reading accepts STAR files with any block name that has the two
coordinate columns, and CSVs whose first two columns (or columns named x/y) are the position.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from causalscope.models.errors import FormatError, InputError

__all__ = [
    "IMAGE_SUFFIXES",
    "read_coordinates",
    "read_micrograph",
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


def read_coordinates(path: str | Path) -> np.ndarray:
    """``(n, 2)`` float64 [x, y] from a coordinate STAR or CSV file."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError("File not found", f"{path} does not exist", path=path)
    try:
        if path.suffix.lower() == ".star":
            import starfile

            blocks = starfile.read(path, always_dict=True)
            tables = [b for b in blocks.values() if isinstance(b, pd.DataFrame)]
            table = next(
                (t for t in tables if {"rlnCoordinateX", "rlnCoordinateY"} <= set(t.columns)),
                None,
            )
            if table is None:
                raise FormatError(
                    "No coordinates", f"{path} has no rlnCoordinateX/Y loop", path=path
                )
            xy = table[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(dtype=np.float64)
        else:
            table = pd.read_csv(path)
            names = {c.strip().lower(): c for c in table.columns}
            x = names.get("x_px", names.get("x"))
            y = names.get("y_px", names.get("y"))
            columns = [x, y] if x is not None and y is not None else list(table.columns[:2])
            xy = table[columns].to_numpy(dtype=np.float64)
    except FormatError:
        raise
    except Exception as error:  # parse errors from pandas / starfile
        raise FormatError("Unreadable coordinates", f"{path}: {error}", path=path) from None
    if xy.ndim != 2 or xy.shape[1] != 2 or not np.isfinite(xy).all():
        raise FormatError("Bad coordinates", f"{path}: need finite x, y columns", path=path)
    return xy


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
