"""Extracted particles: an MRCS stack and RELION 3.1+ ``particles.star`` (via starfile).

``data_optics``: one row per optics group (name, number, original micrograph pixel size,
voltage, Cs, amplitude contrast, image pixel size, box size, dimensionality 2, and
``rlnCtfDataArePhaseFlipped`` when the boxes were phase-flipped). ``data_particles``: one row
per particle (coordinates in micrograph pixels, ``N@stack.mrcs`` image name, micrograph name,
optics group, defocus U/V/angle in Angstrom/degrees, phase shift when nonzero, and the
picker's score as ``rlnAutopickFigureOfMerit``). RELION's Extract job writes the same layout.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from causalscope.daemon.formats._common import check_positive_pixel_size, output_path
from causalscope.daemon.formats.mrc import write_mrc_movie

__all__ = ["write_particle_stack", "write_particles_star"]

_OPTICS_REQUIRED = (
    "pixel_size_angstrom",
    "image_size_px",
    "voltage_kv",
    "spherical_aberration_mm",
    "amplitude_contrast",
)
_OPTICS_OPTIONAL = ("original_pixel_size_angstrom", "name", "group", "phase_flipped")

# our column -> RELION label, in the order written
_COLUMNS = {
    "x_px": "rlnCoordinateX",
    "y_px": "rlnCoordinateY",
    "image_name": "rlnImageName",
    "micrograph_name": "rlnMicrographName",
    "optics_group": "rlnOpticsGroup",
    "defocus_u_angstrom": "rlnDefocusU",
    "defocus_v_angstrom": "rlnDefocusV",
    "defocus_angle_deg": "rlnDefocusAngle",
    "phase_shift_deg": "rlnPhaseShift",
    "figure_of_merit": "rlnAutopickFigureOfMerit",
}
_REQUIRED = ("x_px", "y_px", "image_name", "micrograph_name")
_NUMERIC = (
    "x_px",
    "y_px",
    "defocus_u_angstrom",
    "defocus_v_angstrom",
    "defocus_angle_deg",
    "phase_shift_deg",
    "figure_of_merit",
)


def write_particle_stack(
    path: str | Path, particles: np.ndarray, *, pixel_size_angstrom: float, atomic: bool = True
) -> list[str]:
    """Write ``(N, b, b)`` float boxes as an MRCS stack (mode 2); returns ``"i@path"`` names.

    The names count from 1 (RELION's convention) and use ``path`` as given, so pass the path
    relative to where RELION will run.
    """
    array = np.asarray(particles, dtype=np.float32)
    if array.ndim != 3 or array.shape[1] != array.shape[2] or array.shape[0] < 1:
        raise ValueError(f"{path}: particles must be (N >= 1, b, b), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: particles hold non-finite values")
    check_positive_pixel_size(pixel_size_angstrom)
    write_mrc_movie(path, array, pixel_size_angstrom=pixel_size_angstrom, mode=2, atomic=atomic)
    return [f"{i}@{path}" for i in range(1, array.shape[0] + 1)]


def _optics_row(optics: Mapping[str, object], path: Path) -> dict[str, object]:
    unknown = set(optics) - set(_OPTICS_REQUIRED) - set(_OPTICS_OPTIONAL)
    missing = [k for k in _OPTICS_REQUIRED if k not in optics]
    if unknown or missing:
        raise ValueError(
            f"{path}: optics has unknown keys {sorted(unknown)} or lacks {missing}; keys are "
            f"{[*_OPTICS_REQUIRED, *_OPTICS_OPTIONAL]}"
        )
    values: dict[str, float] = {}
    for key in (*_OPTICS_REQUIRED, "original_pixel_size_angstrom", "group"):
        value = optics.get(key, optics["pixel_size_angstrom"] if key.startswith("orig") else 1)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{path}: optics {key} must be a number, got {value!r}")
        if not np.isfinite(float(value)):
            raise ValueError(f"{path}: optics {key} must be finite, got {value!r}")
        values[key] = float(value)
    check_positive_pixel_size(values["pixel_size_angstrom"])
    check_positive_pixel_size(values["original_pixel_size_angstrom"])
    group = int(values["group"])
    row: dict[str, object] = {
        "rlnOpticsGroupName": str(optics.get("name", f"opticsGroup{group}")),
        "rlnOpticsGroup": group,
        "rlnMicrographOriginalPixelSize": values["original_pixel_size_angstrom"],
        "rlnVoltage": values["voltage_kv"],
        "rlnSphericalAberration": values["spherical_aberration_mm"],
        "rlnAmplitudeContrast": values["amplitude_contrast"],
        "rlnImagePixelSize": values["pixel_size_angstrom"],
        "rlnImageSize": int(values["image_size_px"]),
        "rlnImageDimensionality": 2,
    }
    if optics.get("phase_flipped", False):
        row["rlnCtfDataArePhaseFlipped"] = 1
    return row


def write_particles_star(
    path: str | Path,
    optics: Mapping[str, object],
    particles: pd.DataFrame,
    *,
    atomic: bool = True,
) -> Path:
    """Write a RELION 3.1+ ``particles.star``.

    Parameters
    ----------
    path
        The STAR file.
    optics
        One optics group: ``pixel_size_angstrom`` (of the boxes), ``image_size_px``,
        ``voltage_kv``, ``spherical_aberration_mm``, ``amplitude_contrast``; optional
        ``original_pixel_size_angstrom`` (default the pixel size), ``name``, ``group``
        (default 1) and ``phase_flipped`` (writes ``rlnCtfDataArePhaseFlipped 1``).
    particles
        One row per particle: ``x_px``, ``y_px``, ``image_name`` (``"i@stack.mrcs"``, as
        :func:`write_particle_stack` returns), ``micrograph_name``; optional
        ``defocus_u_angstrom``, ``defocus_v_angstrom``, ``defocus_angle_deg``,
        ``phase_shift_deg`` (written when any is nonzero), ``figure_of_merit``,
        ``optics_group`` (default the optics' group).
    atomic
        Write a temporary file and rename it, so a reader never sees a partial file.
    """
    path = Path(path)
    optics_row = _optics_row(optics, path)
    unknown = set(particles.columns) - set(_COLUMNS)
    missing = [c for c in _REQUIRED if c not in particles.columns]
    if unknown or missing:
        raise ValueError(
            f"{path}: particle columns {sorted(unknown)} are unknown, {missing} are missing; "
            f"columns are {list(_COLUMNS)}"
        )
    present = [c for c in _NUMERIC if c in particles.columns]
    values = particles[present].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise ValueError(
            f"{path}: {present[col]} of particle {row} is {values[row, col]}; RELION needs a "
            "finite number"
        )
    table = pd.DataFrame(index=particles.index)
    for column, label in _COLUMNS.items():
        if column == "optics_group":
            group = optics_row["rlnOpticsGroup"]
            source = particles[column] if column in particles.columns else group
            table[label] = pd.Series(source, index=particles.index).astype(int)
            if (table[label] != group).any():
                raise ValueError(f"{path}: particles name optics groups other than {group}")
        elif column in particles.columns:
            if column == "phase_shift_deg" and not (particles[column] != 0).any():
                continue
            series = particles[column]
            table[label] = series.astype(str) if column in _REQUIRED[2:] else series.astype(float)
    optics_table = pd.DataFrame([optics_row])
    with output_path(path, atomic=atomic) as target:
        starfile.write(
            {"optics": optics_table, "particles": table.reset_index(drop=True)},
            target,
            overwrite=True,
        )
    return path
