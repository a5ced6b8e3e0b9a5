"""Files the store keeps up to date from the session database: ``micrographs_ctf.star``.

RELION reads the session's micrographs and their CTF from it while the session runs; it is
rewritten after each commit that changed it. pandas is imported only by a store that writes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb

from causalscope.daemon.client.errors import StoreError

__all__ = ["MICROGRAPH_KINDS", "CtfStarExporter", "micrograph_rows", "rewrite_ctf_star"]

# Done, not failed by the gate, with a CTF fit that rings support and the optics RELION needs.
_ROWS_SQL = """
SELECT e.exposure_id, e.outputs, e.pixel_size_angstrom, e.voltage_kv, e.cs_mm, e.amplitude_contrast,
       c.defocus_u_angstrom, c.defocus_v_angstrom, c.defocus_angle_deg, c.figure_of_merit,
       c.fit_resolution_angstrom, c.phase_shift_deg
FROM exposures AS e JOIN ctf AS c USING (exposure_id)
WHERE e.state = 'done' AND e.gate_status IS DISTINCT FROM 'fail'
  AND c.fit_resolution_angstrom IS NOT NULL
  AND e.pixel_size_angstrom IS NOT NULL AND e.voltage_kv IS NOT NULL AND e.cs_mm IS NOT NULL
ORDER BY e.done_at, e.exposure_id
"""

#: Output kinds that name the micrograph, in order of preference.
MICROGRAPH_KINDS = ("dose_weighted_sum", "aligned_sum")
_DEFAULT_AMPLITUDE_CONTRAST = 0.1


def micrograph_rows(
    connection: duckdb.DuckDBPyConnection,
    *,
    only: set[str] | None = None,
    shift_groups: Mapping[str, int] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The optics groups and one row per micrograph (with its ``exposure_id``) that
    ``micrographs_ctf.star`` lists.

    Exposures without a written micrograph are left out (RELION needs its file); a row has
    ``motion_star`` when the exposure has a trajectory. One optics group per distinct (pixel
    size, voltage, Cs, amplitude contrast), numbered in order of first appearance, and split
    further by ``shift_groups`` (exposure id -> its beam/image-shift group) when given.
    """
    from causalscope.daemon.client.paths import relocation

    moved = relocation(connection)  # a session folder copied or moved since
    groups: dict[tuple[float, float, float, float, int], int] = {}
    rows: list[dict[str, Any]] = []
    for exposure_id, outputs_json, pixel, voltage, cs, amplitude, *ctf in connection.execute(
        _ROWS_SQL
    ).fetchall():
        if only is not None and exposure_id not in only:
            continue
        outputs = moved.outputs(json.loads(outputs_json) if outputs_json else {})
        name = next((outputs[k] for k in MICROGRAPH_KINDS if k in outputs), None)
        if name is None:
            continue
        amplitude = _DEFAULT_AMPLITUDE_CONTRAST if amplitude is None else amplitude
        shift = 0 if shift_groups is None else shift_groups.get(exposure_id, 0)
        key = (pixel, voltage, cs, amplitude, shift)
        group = groups.setdefault(key, len(groups) + 1)
        u, v, angle, merit, resolution, phase = ctf
        row = {
            "exposure_id": exposure_id,
            "micrograph_name": name,
            "optics_group": group,
            "defocus_u_angstrom": u,
            "defocus_v_angstrom": v,
            "defocus_angle_deg": angle,
            "figure_of_merit": merit,
            "fit_resolution_angstrom": resolution,
            "phase_shift_deg": phase,
        }
        if "trajectory" in outputs:
            row["motion_star"] = outputs["trajectory"]
        rows.append(row)
    optics = [
        {
            "pixel_size_angstrom": pixel,
            "voltage_kv": voltage,
            "spherical_aberration_mm": cs,
            "amplitude_contrast": amplitude,
            "group": number,
        }
        for (pixel, voltage, cs, amplitude, _), number in groups.items()
    ]
    return optics, rows


def rewrite_ctf_star(
    connection: duckdb.DuckDBPyConnection,
    path: Path,
    *,
    only: set[str] | None = None,
    shift_groups: Mapping[str, int] | None = None,
) -> int:
    """Write ``path`` from the committed rows (those of the exposures in ``only`` when given);
    returns the number of micrographs written.

    The rows and optics groups are :func:`micrograph_rows`'. With no usable micrograph (yet, or
    any more) both tables are empty.
    """
    optics, rows = micrograph_rows(connection, only=only, shift_groups=shift_groups)
    columns = [
        "micrograph_name",
        "optics_group",
        "defocus_u_angstrom",
        "defocus_v_angstrom",
        "defocus_angle_deg",
        "figure_of_merit",
        "fit_resolution_angstrom",
        "phase_shift_deg",
    ]
    if rows and all("motion_star" in r for r in rows):
        columns.append("motion_star")
    import pandas as pd

    from causalscope.daemon.formats.ctf_star import write_micrographs_ctf_star

    frame = pd.DataFrame(rows, columns=columns)
    write_micrographs_ctf_star(path, optics, frame)
    return len(rows)


class CtfStarExporter:
    """Keeps ``micrographs_ctf.star`` in step with the commits of one store.

    Parameters
    ----------
    path
        The STAR file.
    database
        The session's database file (named in errors).
    """

    def __init__(self, path: Path, database: Path) -> None:
        self.path = path
        self._database = database
        self._stale = False

    def changed(self) -> None:
        """A commit changed what the file lists."""
        self._stale = True

    def rewrite(self, connection: duckdb.DuckDBPyConnection) -> None:
        """Rewrite the file if a commit changed it since it was last written.

        Raises
        ------
        StoreError
            The file cannot be written; the commit stands and the next call tries again.
        """
        if not self._stale:
            return
        try:
            rewrite_ctf_star(connection, self.path)
        except (OSError, duckdb.Error) as exc:
            raise StoreError(
                "Cannot write micrographs_ctf.star",
                f"{self.path}: {exc} (the commit to {self._database} stands; the file is "
                "rewritten at the next commit)",
                path=self.path,
            ) from exc
        self._stale = False
