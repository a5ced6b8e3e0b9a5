"""A session as cryoSPARC's ``.cs`` files, written with cryosparc-tools' ``Dataset``.

``exposures.cs``
    One row per micrograph: ``micrograph_blob/*`` (path, shape, pixel size), ``ctf/*`` (type
    ``imported``; defocus in Angstrom, angle and phase shift in radians, the fit's resolution)
    and ``mscope_params/*`` (voltage, Cs, total dose, the beam shift where the metadata has
    one). ``exp_group_id`` is the micrograph's optics group of ``micrographs_ctf.star``, so
    the exposure groups follow the beam/image-shift groups as RELION's optics groups do.
``particles.cs``
    One row per extracted particle: ``blob/*`` (its stack and index, box, pixel size),
    ``location/*`` (the micrograph, its shape, the centre as fractions of the width and height)
    and ``ctf/*`` with the micrograph's CTF. cryoSPARC's Import Particle Stack reads it beside
    the stacks it names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from causalscope.daemon.client.paths import Relocation, relocate_particles, relocation
from causalscope.daemon.exports._rows import Exported
from causalscope.models.errors import InputError

__all__ = ["write_cryosparc"]

_CTF_FIELDS = [
    ("ctf/type", "O"),
    ("ctf/exp_group_id", "u4"),
    ("ctf/accel_kv", "f4"),
    ("ctf/cs_mm", "f4"),
    ("ctf/amp_contrast", "f4"),
    ("ctf/df1_A", "f4"),
    ("ctf/df2_A", "f4"),
    ("ctf/df_angle_rad", "f4"),
    ("ctf/phase_shift_rad", "f4"),
    ("ctf/scale", "f4"),
    ("ctf/scale_const", "f4"),
]
_EXPOSURE_FIELDS = [
    ("micrograph_blob/path", "O"),
    ("micrograph_blob/idx", "u4"),
    ("micrograph_blob/shape", "u4", (2,)),
    ("micrograph_blob/psize_A", "f4"),
    ("micrograph_blob/format", "O"),
    ("micrograph_blob/is_background_subtracted", "u1"),
    *_CTF_FIELDS,
    ("ctf/ctf_fit_to_A", "f4"),
    ("ctf/fig_of_merit_gctf", "f4"),
    ("mscope_params/accel_kv", "f4"),
    ("mscope_params/cs_mm", "f4"),
    ("mscope_params/total_dose_e_per_A2", "f4"),
    ("mscope_params/exp_group_id", "u4"),
    ("mscope_params/phase_plate", "u4"),
    ("mscope_params/beam_shift", "f4", (2,)),
    ("mscope_params/beam_shift_known", "u4"),
]
_PARTICLE_FIELDS = [
    ("blob/path", "O"),
    ("blob/idx", "u4"),
    ("blob/shape", "u4", (2,)),
    ("blob/psize_A", "f4"),
    ("location/micrograph_uid", "u8"),
    ("location/exp_group_id", "u4"),
    ("location/micrograph_path", "O"),
    ("location/micrograph_shape", "u4", (2,)),
    ("location/micrograph_psize_A", "f4"),
    ("location/center_x_frac", "f4"),
    ("location/center_y_frac", "f4"),
    *_CTF_FIELDS,
]
_EXTRA_SQL = "SELECT exposure_id, dose_e_per_a2 FROM exposures WHERE state = 'done'"


def write_cryosparc(
    connection: duckdb.DuckDBPyConnection,
    out: Path,
    exposures: list[Exported],
    groups: Mapping[str, int],
    *,
    particles: set[str] | None = None,
) -> dict[str, int]:
    """Write ``exposures.cs`` and ``particles.cs`` into ``out`` (``particles``: only these, by
    their STAR image names: ``export --selected``'s accepted classes); counts of rows by file.

    Raises
    ------
    InputError
        A micrograph's header cannot be read (cryoSPARC keeps each micrograph's shape), or an
        exposure's particles STAR cannot.
    """
    from cryosparc.dataset import Dataset

    from causalscope.daemon.store.exporters import micrograph_rows

    out.mkdir(parents=True, exist_ok=True)
    by_id = {e.exposure_id: e for e in exposures}
    optics, rows = micrograph_rows(connection, only=set(by_id), shift_groups=groups)
    dose = dict(connection.execute(_EXTRA_SQL).fetchall())
    micrographs = Dataset.allocate(len(rows), _EXPOSURE_FIELDS)
    shapes = []
    for i, row in enumerate(rows):
        group = optics[row["optics_group"] - 1]
        shape = _micrograph_shape(Path(row["micrograph_name"]))
        shapes.append(shape)
        shift = by_id[row["exposure_id"]].shift
        values = {
            "micrograph_blob/path": row["micrograph_name"],
            "micrograph_blob/shape": shape,
            "micrograph_blob/psize_A": group["pixel_size_angstrom"],
            "micrograph_blob/format": "MRC/1.0",
            "ctf/ctf_fit_to_A": row["fit_resolution_angstrom"],
            "ctf/fig_of_merit_gctf": row["figure_of_merit"],
            "mscope_params/accel_kv": group["voltage_kv"],
            "mscope_params/cs_mm": group["spherical_aberration_mm"],
            "mscope_params/total_dose_e_per_A2": dose.get(row["exposure_id"]) or 0.0,
            "mscope_params/exp_group_id": row["optics_group"],
            "mscope_params/beam_shift": shift if shift is not None else (0.0, 0.0),
            "mscope_params/beam_shift_known": int(shift is not None),
            **_ctf_values(row, group),
        }
        for name, value in values.items():
            micrographs[name][i] = value
    micrographs.save(out / "exposures.cs")
    moved = relocation(connection)
    written = _particles(rows, optics, shapes, micrographs["uid"], by_id, particles, moved)
    written.save(out / "particles.cs")
    return {"exposures": len(micrographs), "particles": len(written)}


def _ctf_values(row: Mapping[str, Any], group: Mapping[str, Any]) -> dict[str, Any]:
    phase = row.get("phase_shift_deg") or 0.0
    return {
        "ctf/type": "imported",
        "ctf/exp_group_id": row["optics_group"],
        "ctf/accel_kv": group["voltage_kv"],
        "ctf/cs_mm": group["spherical_aberration_mm"],
        "ctf/amp_contrast": group["amplitude_contrast"],
        "ctf/df1_A": row["defocus_u_angstrom"],
        "ctf/df2_A": row["defocus_v_angstrom"],
        "ctf/df_angle_rad": math.radians(float(row["defocus_angle_deg"])),
        "ctf/phase_shift_rad": math.radians(float(phase)),
        "ctf/scale": 1.0,
        "ctf/scale_const": 0.0,
    }


def _micrograph_shape(path: Path) -> tuple[int, int]:
    """``(ny, nx)`` from the micrograph's header (cryoSPARC keeps a micrograph's shape)."""
    import mrcfile

    try:
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            return int(mrc.header.ny), int(mrc.header.nx)
    except (OSError, ValueError) as error:
        raise InputError(
            "Micrograph not readable",
            f"{path}: {error} (cryoSPARC needs each micrograph's shape)",
            path=path,
        ) from error


def _particles(
    rows: list[dict[str, Any]],
    optics: list[dict[str, Any]],
    shapes: list[tuple[int, int]],
    uids: np.ndarray,
    by_id: Mapping[str, Exported],
    only: set[str] | None,
    moved: Relocation,
) -> Any:
    import starfile
    from cryosparc.dataset import Dataset

    parts = []
    for row, shape, uid in zip(rows, shapes, uids, strict=True):
        star = by_id[str(row["exposure_id"])].outputs.get("particles_star")
        if not star:
            continue
        try:
            blocks = starfile.read(star, always_dict=True)
        except (OSError, ValueError) as error:
            raise InputError("Unreadable particles", f"{star}: {error}", path=star) from error
        table = relocate_particles(blocks.get("particles"), moved)
        table_optics = blocks.get("optics")
        if table is not None and only is not None:
            table = table[table["rlnImageName"].astype(str).isin(only)]
        if table is None or table_optics is None or table.empty:
            continue
        box = dict(zip(table_optics["rlnOpticsGroup"], table_optics["rlnImageSize"], strict=True))
        apix = dict(
            zip(table_optics["rlnOpticsGroup"], table_optics["rlnImagePixelSize"], strict=True)
        )
        names = table["rlnImageName"].astype(str).str.split("@", n=1)
        group = optics[int(row["optics_group"]) - 1]
        d = Dataset.allocate(len(table), _PARTICLE_FIELDS)
        d["blob/path"] = [n[1] for n in names]
        d["blob/idx"] = [int(n[0]) - 1 for n in names]
        d["blob/shape"] = [(box[g], box[g]) for g in table["rlnOpticsGroup"]]
        d["blob/psize_A"] = [apix[g] for g in table["rlnOpticsGroup"]]
        d["location/micrograph_uid"] = uid
        d["location/exp_group_id"] = row["optics_group"]
        d["location/micrograph_path"] = row["micrograph_name"]
        d["location/micrograph_shape"] = shape
        d["location/micrograph_psize_A"] = group["pixel_size_angstrom"]
        d["location/center_x_frac"] = table["rlnCoordinateX"].to_numpy() / shape[1]
        d["location/center_y_frac"] = table["rlnCoordinateY"].to_numpy() / shape[0]
        for name, value in _ctf_values(row, group).items():
            d[name] = value
        parts.append(d)
    if not parts:
        return Dataset.allocate(0, _PARTICLE_FIELDS)
    return Dataset.append_many(*parts)
