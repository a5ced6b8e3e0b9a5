"""CTF estimates as RELION's ``micrographs_ctf.star`` (via starfile).

``data_optics``: one row per optics group (name, number, original and micrograph pixel size,
voltage, spherical aberration, amplitude contrast). ``data_micrographs``: one row per
micrograph (name, optics group, defocus U/V in Angstrom, astigmatism ``|U - V|``, angle,
figure of merit, the fit's maximum resolution; the CTF image, the motion STAR file, the ice
ring density and the phase shift when given). RELION's Select, Extract and Refine jobs read it.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from causalscope.daemon.formats._common import check_positive_pixel_size, output_path

__all__ = ["write_micrographs_ctf_star"]

_OPTICS_KEYS = {
    "pixel_size_angstrom",
    "voltage_kv",
    "spherical_aberration_mm",
    "amplitude_contrast",
    "original_pixel_size_angstrom",
    "name",
    "group",
}
_REQUIRED_OPTICS = ("pixel_size_angstrom", "voltage_kv", "spherical_aberration_mm")

_OPTICS_LABELS = [
    "rlnOpticsGroupName",
    "rlnOpticsGroup",
    "rlnMicrographOriginalPixelSize",
    "rlnVoltage",
    "rlnSphericalAberration",
    "rlnAmplitudeContrast",
    "rlnMicrographPixelSize",
]

# Our column (unit in the name) -> RELION's label, in the order written.
_REQUIRED_COLUMNS = {
    "micrograph_name": "rlnMicrographName",
    "defocus_u_angstrom": "rlnDefocusU",
    "defocus_v_angstrom": "rlnDefocusV",
    "defocus_angle_deg": "rlnDefocusAngle",
    "figure_of_merit": "rlnCtfFigureOfMerit",
    "fit_resolution_angstrom": "rlnCtfMaxResolution",
}
_OPTIONAL_COLUMNS = {
    "optics_group": "rlnOpticsGroup",
    "ctf_image": "rlnCtfImage",
    "motion_star": "rlnMicrographMetadata",
    "ice_ring_density": "rlnCtfIceRingDensity",
    "phase_shift_deg": "rlnPhaseShift",
}


def write_micrographs_ctf_star(
    path: str | Path,
    optics: Mapping[str, object] | Sequence[Mapping[str, object]],
    micrographs: pd.DataFrame,
    *,
    atomic: bool = True,
) -> Path:
    """Write ``micrographs_ctf.star``.

    Parameters
    ----------
    path
        The STAR file to write.
    optics
        One optics group, or a sequence of them: ``pixel_size_angstrom``, ``voltage_kv``,
        ``spherical_aberration_mm``, ``amplitude_contrast`` (default 0.1); optional
        ``original_pixel_size_angstrom`` (default the pixel size), ``name`` (default
        ``opticsGroupN``) and ``group`` (default N, counting from 1 in the order given).
        Empty only when ``micrographs`` is.
    micrographs
        One row per micrograph: ``micrograph_name``, ``defocus_u_angstrom``,
        ``defocus_v_angstrom``, ``defocus_angle_deg``, ``figure_of_merit``,
        ``fit_resolution_angstrom``; optional ``optics_group`` (default 1), ``ctf_image``,
        ``motion_star``, ``ice_ring_density``, ``phase_shift_deg`` (written when any is
        nonzero). May have no rows.
    atomic
        Write to a temporary file and rename it, so a reader never sees a partial file.
    """
    path = Path(path)
    groups = [optics] if isinstance(optics, Mapping) else list(optics)
    optics_table = _optics_table(groups, path)
    table = _micrographs_table(micrographs, set(optics_table["rlnOpticsGroup"]), path)
    with output_path(path, atomic=atomic) as target:
        starfile.write({"optics": optics_table, "micrographs": table}, target, overwrite=True)
    return path


def _optics_table(groups: list[Mapping[str, object]], path: Path) -> pd.DataFrame:
    rows = []
    for n, group in enumerate(groups, start=1):
        unknown = set(group) - _OPTICS_KEYS
        missing = [k for k in _REQUIRED_OPTICS if k not in group]
        if unknown or missing:
            raise ValueError(
                f"{path}: optics group {n} has unknown keys {sorted(unknown)} or lacks "
                f"{missing}; keys are {sorted(_OPTICS_KEYS)}"
            )
        pixel = _number(group, "pixel_size_angstrom", path)
        check_positive_pixel_size(pixel)
        original = _number(group, "original_pixel_size_angstrom", path, default=pixel)
        check_positive_pixel_size(original)
        number = int(_number(group, "group", path, default=n))
        rows.append(
            {
                "rlnOpticsGroupName": str(group.get("name", f"opticsGroup{number}")),
                "rlnOpticsGroup": number,
                "rlnMicrographOriginalPixelSize": original,
                "rlnVoltage": _number(group, "voltage_kv", path),
                "rlnSphericalAberration": _number(group, "spherical_aberration_mm", path),
                "rlnAmplitudeContrast": _number(group, "amplitude_contrast", path, default=0.1),
                "rlnMicrographPixelSize": pixel,
            }
        )
    table = pd.DataFrame(rows, columns=_OPTICS_LABELS)
    if table["rlnOpticsGroup"].duplicated().any():
        raise ValueError(f"{path}: optics group numbers repeat: {table['rlnOpticsGroup'].tolist()}")
    return table


def _number(
    group: Mapping[str, object], key: str, path: Path, default: float | None = None
) -> float:
    value = group.get(key, default)
    if not isinstance(value, numbers.Real) or not np.isfinite(float(value)):
        raise ValueError(f"{path}: optics {key} must be a finite number, got {value!r}")
    return float(value)


def _micrographs_table(frame: pd.DataFrame, groups: set[int], path: Path) -> pd.DataFrame:
    unknown = set(frame.columns) - set(_REQUIRED_COLUMNS) - set(_OPTIONAL_COLUMNS)
    missing = [c for c in _REQUIRED_COLUMNS if c not in frame.columns]
    if unknown or missing:
        raise ValueError(
            f"{path}: micrograph columns {sorted(unknown)} are unknown, {missing} are missing; "
            f"columns are {[*_REQUIRED_COLUMNS, *_OPTIONAL_COLUMNS]}"
        )
    numeric = [c for c in _REQUIRED_COLUMNS if c != "micrograph_name"]
    values = frame[numeric].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise ValueError(
            f"{path}: {numeric[col]} of micrograph {frame['micrograph_name'].iloc[row]!r} is "
            f"{values[row, col]}; RELION needs a finite number"
        )
    optics_group = (
        frame["optics_group"].astype(int)
        if "optics_group" in frame.columns
        else pd.Series(1, index=frame.index, dtype=int)
    )
    unknown_groups = set(optics_group) - groups
    if unknown_groups:
        raise ValueError(
            f"{path}: micrographs name optics groups {sorted(unknown_groups)}, not in the optics "
            f"table {sorted(groups)}"
        )
    out = pd.DataFrame(
        {
            "rlnMicrographName": frame["micrograph_name"].astype(str),
            "rlnOpticsGroup": optics_group,
        },
        index=frame.index,
    )
    for column in ("ctf_image", "motion_star"):
        if column in frame.columns:
            out[_OPTIONAL_COLUMNS[column]] = frame[column].astype(str)
    out["rlnDefocusU"] = values[:, 0]
    out["rlnDefocusV"] = values[:, 1]
    out["rlnCtfAstigmatism"] = np.abs(values[:, 0] - values[:, 1])
    out["rlnDefocusAngle"] = values[:, 2]
    out["rlnCtfFigureOfMerit"] = values[:, 3]
    out["rlnCtfMaxResolution"] = values[:, 4]
    if "ice_ring_density" in frame.columns:
        out["rlnCtfIceRingDensity"] = frame["ice_ring_density"].astype(np.float64)
    if "phase_shift_deg" in frame.columns:
        phase = frame["phase_shift_deg"].astype(np.float64)
        if (phase != 0).any():
            out["rlnPhaseShift"] = phase
    return out.reset_index(drop=True)
