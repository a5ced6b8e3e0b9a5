"""A session as RELION's files: micrographs with CTF, coordinates, particles and selected classes.

Written into one folder:

``micrographs_ctf.star``
    ``data_optics`` and ``data_micrographs`` (:func:`~causalscope.daemon.store.exporters.
    rewrite_ctf_star`): one optics group per optics and beam/image-shift group, so that RELION's
    CTF refinement fits one beam tilt per shift position.
``coordinates/EXPOSURE_autopick.star`` and ``coordinates.star``
    Each micrograph's picks (``rlnCoordinateX/Y``, ``rlnAutopickFigureOfMerit``) and the list
    of micrographs with their coordinate file (``data_coordinate_files``:
    ``rlnMicrographName``, ``rlnMicrographCoordinates``), as RELION 4's Import and Extract read.
``particles.star``
    The exposures' extracted particles, their optics groups numbered as the micrographs' are.
``class_averages.star`` and ``particles_selected_classes.star``
    The latest 2D classification's selected classes (``data_model_classes``) and their
    particles, when the session classified any: those of the exported exposures, with
    ``particles.star``'s optics block and groups.

With ``particles`` (``export --selected``: the particles of the accepted classes,
:func:`~causalscope.daemon.exports.accepted_particles`), ``particles.star`` holds only those,
and the classes written are the accepted ones (the operator's label, else the
recommendation) rather than the classifier's selection.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb

from causalscope.daemon.client.paths import Relocation, relocate_particles, relocation
from causalscope.daemon.client.views import HAS_CLASSES_SQL
from causalscope.daemon.exports._rows import ACCEPTED_CLASS, Exported
from causalscope.models.errors import InputError

__all__ = ["merge_particles", "write_relion"]

_PICKS_SQL = "SELECT exposure_id, x_px, y_px, score FROM picks ORDER BY exposure_id, position"
_SELECTED_CLASSES_SQL = """
SELECT k.class_index, k.particles, k.resolution_angstrom, k.image, s.selected_star_path
FROM classes AS k JOIN class_sets AS s USING (version)
WHERE k.version = (SELECT max(version) FROM class_sets) AND {which}
ORDER BY k.class_index
"""
_SELECTED = "k.selected"
#: RELION writes resolutions it cannot estimate as 999 A.
_NO_RESOLUTION = 999.0


def write_relion(
    connection: duckdb.DuckDBPyConnection,
    out: Path,
    exposures: list[Exported],
    groups: Mapping[str, int],
    *,
    particles: set[str] | None = None,
) -> dict[str, int]:
    """Write the folder (see the module docstring; ``particles``: only these, by image name,
    and the accepted classes); counts of what was written by kind."""
    import numpy as np

    from causalscope.daemon.formats.coordinates import write_coordinates_star
    from causalscope.daemon.store.exporters import MICROGRAPH_KINDS, rewrite_ctf_star

    out.mkdir(parents=True, exist_ok=True)
    ids = {e.exposure_id for e in exposures}
    counts = {
        "micrographs": rewrite_ctf_star(
            connection, out / "micrographs_ctf.star", only=ids, shift_groups=groups
        )
    }
    picks: dict[str, list[tuple[float, float, float]]] = {}
    for exposure_id, x, y, score in connection.execute(_PICKS_SQL).fetchall():
        if exposure_id in ids:
            picks.setdefault(exposure_id, []).append((x, y, score))
    listed = []
    for e in exposures:
        name = next((e.outputs[k] for k in MICROGRAPH_KINDS if k in e.outputs), None)
        rows = picks.get(e.exposure_id)
        if name is None or not rows:
            continue
        table = np.asarray(rows, dtype=np.float64)
        path = out / "coordinates" / f"{e.exposure_id}_autopick.star"
        write_coordinates_star(path, table[:, :2], table[:, 2])
        listed.append((name, str(path.relative_to(out))))
    _write_coordinate_list(out / "coordinates.star", listed)
    counts["coordinate_files"] = len(listed)
    stars = [
        (Path(e.outputs["particles_star"]), groups.get(e.exposure_id, 0))
        for e in exposures
        if e.outputs.get("particles_star")
    ]
    moved = relocation(connection)
    counts["particles"] = merge_particles(
        stars, out / "particles.star", only=particles, relocation=moved
    )
    counts.update(
        _write_classes(
            connection, out, out / "particles.star", accepted=particles is not None, moved=moved
        )
    )
    return counts


def _write_coordinate_list(path: Path, listed: list[tuple[str, str]]) -> None:
    import pandas as pd
    import starfile

    table = pd.DataFrame(listed, columns=["rlnMicrographName", "rlnMicrographCoordinates"])
    starfile.write({"coordinate_files": table}, path, overwrite=True)


def _write_classes(
    connection: duckdb.DuckDBPyConnection,
    out: Path,
    particles_star: Path,
    *,
    accepted: bool,
    moved: Relocation,
) -> dict[str, int]:
    """The latest selected (or ``accepted``) 2D classes (``class_averages.star``, RELION's
    ``model_classes`` block) and their particles (``particles_selected_classes.star``), in the
    optics groups of the exported ``particles_star``, whose optics block they carry."""
    import pandas as pd
    import starfile

    has = connection.execute(HAS_CLASSES_SQL).fetchone()
    if not has or not has[0]:
        return {"selected_classes": 0, "selected_class_particles": 0}
    which = ACCEPTED_CLASS if accepted else _SELECTED
    rows = connection.execute(_SELECTED_CLASSES_SQL.format(which=which)).fetchall()
    if not rows:
        return {"selected_classes": 0, "selected_class_particles": 0}
    total = max(sum(r[1] for r in rows), 1)
    table = pd.DataFrame(
        {
            "rlnReferenceImage": [moved.image_name(r[3]) for r in rows],
            "rlnClassNumber": [int(r[0]) + 1 for r in rows],
            "rlnClassDistribution": [r[1] / total for r in rows],
            "rlnEstimatedResolution": [
                _NO_RESOLUTION if r[2] is None else min(float(r[2]), _NO_RESOLUTION) for r in rows
            ],
        }
    )
    starfile.write({"model_classes": table}, out / "class_averages.star", overwrite=True)
    source = Path(moved.path(rows[0][4]))
    try:
        blocks = starfile.read(source, always_dict=True)
    except (OSError, ValueError) as error:
        raise InputError(
            "Unreadable selected particles", f"{source}: {error}", path=source
        ) from error
    particles = relocate_particles(blocks.get("particles"), moved)
    if particles is None or not len(particles):
        return {"selected_classes": len(rows), "selected_class_particles": 0}
    exported = starfile.read(particles_star, always_dict=True) if particles_star.exists() else {}
    listed = exported.get("particles")
    if listed is None or "rlnImageName" not in listed or "optics" not in exported:
        return {"selected_classes": len(rows), "selected_class_particles": 0}  # none exported
    # each particle in its exported optics group (found by its image), under that block;
    # those of exposures not exported (``--selected``) are left out with them
    group_of = dict(zip(listed["rlnImageName"], listed["rlnOpticsGroup"], strict=True))
    particles = particles[particles["rlnImageName"].isin(group_of.keys())]
    if "rlnClassNumber" in particles:  # the selected STAR may hold more classes
        numbers = {int(r[0]) + 1 for r in rows}
        particles = particles[particles["rlnClassNumber"].astype(int).isin(numbers)]
    particles = particles.assign(
        rlnOpticsGroup=[int(group_of[name]) for name in particles["rlnImageName"]]
    )
    starfile.write(
        {"optics": exported["optics"], "particles": particles},
        out / "particles_selected_classes.star",
        overwrite=True,
    )
    return {"selected_classes": len(rows), "selected_class_particles": len(particles)}


def merge_particles(
    stars: list[tuple[Path, int]],
    path: Path,
    *,
    only: set[str] | None = None,
    relocation: Relocation | None = None,
) -> int:
    """One particles STAR from the exposures' own: ``(STAR, shift group)`` each; one optics group
    per distinct optics and shift group, numbered in order of first appearance; with ``only``,
    the particles whose image names (as moved by ``relocation``, a session folder's new place)
    it holds."""
    import pandas as pd
    import starfile

    optics_rows: list[dict[str, Any]] = []
    keys: dict[tuple[Any, ...], int] = {}
    tables = []
    for star, shift in stars:
        try:
            blocks = starfile.read(star, always_dict=True)
        except (OSError, ValueError) as error:
            raise InputError("Unreadable particles", f"{star}: {error}", path=star) from error
        optics, particles = blocks.get("optics"), blocks.get("particles")
        if optics is None or particles is None:
            raise InputError("Not a particles STAR", f"{star} lacks optics or particles", path=star)
        particles = relocate_particles(particles, relocation or Relocation())
        if only is not None:
            particles = particles[particles["rlnImageName"].astype(str).isin(only)]
        renumber = {}
        for _, row in optics.iterrows():
            values = row.drop(["rlnOpticsGroup", "rlnOpticsGroupName"], errors="ignore")
            key = (*values.items(), shift)
            if key not in keys:
                keys[key] = len(keys) + 1
                optics_rows.append(
                    {
                        **values.to_dict(),
                        "rlnOpticsGroupName": f"opticsGroup{keys[key]}",
                        "rlnOpticsGroup": keys[key],
                    }
                )
            renumber[int(row["rlnOpticsGroup"])] = keys[key]
        tables.append(particles.assign(rlnOpticsGroup=particles["rlnOpticsGroup"].map(renumber)))
    merged = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    starfile.write({"optics": pd.DataFrame(optics_rows), "particles": merged}, path, overwrite=True)
    return len(merged)
