"""From a movie file to what an exposure worker needs: frames, metadata, calibration.

The daemon reads files; workers (actors) only see arrays. Metadata comes from a given file,
else from EPU XML or a SerialEM .mdoc found beside the movie; the gain reference and defect
list come from the detector settings, rotated and flipped as configured and, for EER rendered
at 2x or 4x, enlarged to the rendered grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from causalscope.actors.exposure import DetectorCalibration
from causalscope.config import Settings
from causalscope.daemon import formats
from causalscope.models.errors import FormatError, InputError
from causalscope.models.records import AcquisitionMetadata

__all__ = ["LoadedMovie", "find_metadata", "load_calibration", "load_movie", "read_metadata"]


@dataclass(frozen=True)
class LoadedMovie:
    """A movie's frames and what is known about them."""

    path: Path
    frames: np.ndarray
    metadata: AcquisitionMetadata | None
    pixel_size_angstrom: float | None
    upsampling: int


def read_metadata(path: Path, movie: Path | None = None) -> AcquisitionMetadata:
    """Read an EPU ``.xml`` or SerialEM ``.mdoc``; for an mdoc, the section of ``movie``."""
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return formats.read_epu_xml(path)
    if suffix == ".mdoc":
        sections = formats.read_mdoc(path)
        if movie is not None:
            for section in sections:
                if section.movie_name and Path(section.movie_name).name == movie.name:
                    return section
        if len(sections) == 1 or movie is None:
            return sections[0]
        raise InputError(
            "Movie not in metadata",
            f"{path} has {len(sections)} sections and none names {movie.name}",
            path=path,
        )
    raise InputError(
        "Unknown metadata file",
        f"{path}: suffix {suffix!r}; expected an EPU .xml or a SerialEM .mdoc",
        path=path,
    )


def find_metadata(movie: Path) -> Path | None:
    """EPU XML or SerialEM mdoc beside ``movie``, if any."""
    return formats.find_epu_metadata(movie) or formats.find_mdoc(movie)


def load_movie(
    movie: Path, settings: Settings, *, metadata_path: Path | None = None
) -> LoadedMovie:
    """Read a movie and its metadata.

    Raises
    ------
    InputError
        The movie does not exist.
    FormatError
        It is unreadable, truncated or corrupt (the message names the file and the problem).
    """
    if not movie.exists():
        raise InputError("Movie not found", f"{movie} does not exist", path=movie)
    detector = settings.detector
    is_eer = movie.suffix.lower() == ".eer"
    upsampling = detector.eer_upsampling if is_eer else 1
    frames = formats.read_movie(
        movie, eer_upsampling=upsampling, eer_grouping=detector.eer_grouping
    )
    if metadata_path is None:
        metadata_path = find_metadata(movie)
    metadata = read_metadata(metadata_path, movie) if metadata_path is not None else None
    header_apix = formats.movie_info(movie).pixel_size_angstrom
    pixel_size = metadata.pixel_size_angstrom if metadata else None
    pixel_size = pixel_size or header_apix
    if pixel_size is not None and is_eer:
        pixel_size = pixel_size / upsampling
    return LoadedMovie(movie, frames, metadata, pixel_size, upsampling)


def load_calibration(
    settings: Settings, frame_shape: tuple[int, int], *, upsampling: int = 1
) -> DetectorCalibration:
    """The configured gain reference and defect mask, in the frames' orientation and size."""
    detector = settings.detector
    gain = None
    if detector.gain_reference is not None:
        raw = formats.read_gain(detector.gain_reference)
        gain = formats.transform_gain(raw, rotation=detector.gain_rotation, flip=detector.gain_flip)
        gain = _enlarge(gain, frame_shape, upsampling, Path(detector.gain_reference))
    defects = None
    if detector.defects_file is not None:
        physical = (frame_shape[0] // upsampling, frame_shape[1] // upsampling)
        mask = formats.read_defects(detector.defects_file, physical)
        defects = _enlarge(mask, frame_shape, upsampling, Path(detector.defects_file))
    return DetectorCalibration(gain=gain, defect_mask=defects)


def _enlarge(array: np.ndarray, shape: tuple[int, int], upsampling: int, path: Path) -> np.ndarray:
    if array.shape == shape:
        return array
    if upsampling > 1 and (array.shape[0] * upsampling, array.shape[1] * upsampling) == shape:
        return np.repeat(np.repeat(array, upsampling, axis=0), upsampling, axis=1)
    raise FormatError(
        "Calibration does not match the movies",
        f"{path} is {array.shape[1]}x{array.shape[0]} px but the frames are "
        f"{shape[1]}x{shape[0]} px: check detector.gain_rotation, gain_flip and eer_upsampling",
        path=path,
    )
