"""The exposures an export writes, and their shift groups, read from a session database."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

from causalscope.daemon.client.paths import relocate_particles, relocation
from causalscope.daemon.client.views import HAS_CLASSES_SQL, LATEST_LABELS_SQL

__all__ = [
    "ACCEPTED_CLASS",
    "EXPORTED_SQL",
    "SELECTED_SQL",
    "Exported",
    "accepted_particles",
    "exported",
    "shift_groups",
]

#: Done exposures the gate did not fail, in commit order: what a whole-session export writes.
EXPORTED_SQL = """
SELECT e.exposure_id, e.outputs, e.acquisition
FROM exposures AS e
WHERE e.state = 'done' AND e.gate_status IS DISTINCT FROM 'fail'
ORDER BY e.done_at, e.exposure_id
"""

#: Exposures accepted by the operator's latest label, else by the score's recommendation.
SELECTED_SQL = f"""
SELECT e.exposure_id
FROM exposures AS e
LEFT JOIN ({LATEST_LABELS_SQL}) AS l USING (exposure_id)
LEFT JOIN scores AS s ON s.kind = 'exposure' AND s.subject = e.exposure_id
WHERE e.state = 'done' AND coalesce(l.label, s.recommendation) = 'accept'
ORDER BY e.done_at, e.exposure_id
"""


@dataclass(frozen=True)
class Exported:
    """One exposure to export.

    Attributes
    ----------
    exposure_id
        Its id.
    outputs
        Its written files by kind (``dose_weighted_sum``, ``particles_star``, ...).
    shift
        Its image shift ``(x, y)`` from the metadata (beam shift where the metadata has no
        image shift), or None.
    """

    exposure_id: str
    outputs: dict[str, str]
    shift: tuple[float, float] | None


#: The latest class set's accepted classes (by the operator's label, else the recommendation,
#: which reads the label too; a file from before recommendations: the selection) and the STAR
#: of the selected classes' particles, which holds their class numbers.
ACCEPTED_CLASS = "coalesce(k.recommendation, CASE WHEN k.selected THEN 'accept' END) = 'accept'"
_ACCEPTED_CLASSES_SQL = f"""
SELECT k.class_index, s.selected_star_path
FROM classes AS k JOIN class_sets AS s USING (version)
WHERE k.version = (SELECT max(version) FROM class_sets) AND {ACCEPTED_CLASS}
ORDER BY k.class_index
"""


def accepted_particles(connection: duckdb.DuckDBPyConnection) -> set[str] | None:
    """The image names (``rlnImageName``) of the particles in the latest 2D classification's
    accepted classes, not flagged as outliers; None when the session classified no particles
    (then no particle is left out for its class)."""
    import starfile

    from causalscope.models.errors import InputError

    has = connection.execute(HAS_CLASSES_SQL).fetchone()
    if not has or not has[0]:
        return None
    if connection.execute("SELECT count(*) FROM class_sets").fetchone() == (0,):
        return None
    rows = connection.execute(_ACCEPTED_CLASSES_SQL).fetchall()
    if not rows:
        return set()
    moved = relocation(connection)
    source = moved.path(rows[0][1])
    try:
        particles = relocate_particles(
            starfile.read(source, always_dict=True).get("particles"), moved
        )
    except (OSError, ValueError) as error:
        raise InputError(
            "Unreadable selected particles", f"{source}: {error}", path=source
        ) from error
    if particles is None or not len(particles):
        return set()
    if "rlnClassNumber" not in particles:  # written before the classes were numbered in it
        return set(particles["rlnImageName"].astype(str))
    numbers = {int(k) + 1 for k, _ in rows}
    chosen = particles[particles["rlnClassNumber"].astype(int).isin(numbers)]
    return set(chosen["rlnImageName"].astype(str))


def exported(
    connection: duckdb.DuckDBPyConnection, *, only: Iterable[str] | None = None
) -> list[Exported]:
    """The done, not failed exposures (those in ``only`` when given), in commit order."""
    keep = None if only is None else set(only)
    moved = relocation(connection)
    out = []
    for exposure_id, outputs_json, acquisition_json in connection.execute(EXPORTED_SQL).fetchall():
        if keep is not None and exposure_id not in keep:
            continue
        outputs = moved.outputs(json.loads(outputs_json) if outputs_json else {})
        out.append(Exported(str(exposure_id), outputs, _shift(acquisition_json)))
    return out


def _shift(acquisition_json: str | None) -> tuple[float, float] | None:
    if not acquisition_json:
        return None
    metadata: dict[str, Any] = json.loads(acquisition_json)
    for key in ("image_shift", "beam_shift"):
        value = metadata.get(key)
        if value is not None and len(value) == 2 and all(np.isfinite(value)):
            return float(value[0]), float(value[1])
    return None


def shift_groups(exposures: list[Exported], *, n_groups: int | None = None) -> dict[str, int]:
    """Each exposure's shift group, from 1 (see :mod:`causalscope.models.optics_groups`);
    exposures without a shift are in group 0."""
    from causalscope.models.optics_groups import cluster_image_shifts

    with_shift = [e for e in exposures if e.shift is not None]
    groups = {e.exposure_id: 0 for e in exposures}
    if not with_shift:
        return groups
    count = None if n_groups is None else min(n_groups, len(with_shift))
    labels = cluster_image_shifts(np.array([e.shift for e in with_shift]), n_groups=count)
    groups.update({e.exposure_id: int(g) + 1 for e, g in zip(with_shift, labels, strict=True)})
    return groups
