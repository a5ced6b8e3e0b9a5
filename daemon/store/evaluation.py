"""The running reconstructions' tables (schema version 3) and their rows.

``evaluations`` (one row per update of the running reconstructions: the idempotency key)
    ``version`` (INTEGER primary key, 1, 2, ...: the evaluator's update); ``particles`` (held by
    the evaluator: the sum of the particles of the exposures it took); ``exposures`` (how many
    it took); ``seconds`` (the update's compute time); ``run_id``; ``committed_at``.

``class_sets`` (the 2D classes of an update, when the classifier has started)
    ``version`` (primary key, as in ``evaluations``); ``n_classes``; ``particles``
    (classified); ``selected_particles`` (in selected classes, less the per-particle
    outliers); ``pixel_size_angstrom`` (of the class averages); ``averages_path`` (MRCS, one
    average per class, in class order); ``gallery_path`` (PNG: the averages 10 to a row,
    rejected ones crossed out); ``model_star_path`` (RELION's ``model.star``);
    ``selected_star_path`` (the selected particles' STAR; the latest update's).

``classes`` (one row per class of a class set)
    ``version``, ``class_index`` (from 0; primary key together); ``particles`` (whose most
    probable class it is); ``effective_sample_size``; ``resolution_angstrom`` (FRC 0.143 of
    the half-set averages; NULL when none); ``junk_score`` (0 good .. 1 junk); ``auto_selected``
    (BOOLEAN: junk score below the threshold); ``selected`` (BOOLEAN: after the operator's
    labels); ``label`` ('select' | 'reject' | NULL); ``image`` (``N@averages_path``, RELION's
    image name of its average); from schema 5, against the novelty index (NULL without one):
    ``novelty`` (``1 - exp(-(d / novelty_scale)^2)`` of the distance ``d`` between the
    average's embedding and the nearest known structure's; 0 known .. 1 new),
    ``nearest`` (the nearest entry's label, e.g. '6z6u' or 'ice'), ``nearest_kind``
    ('structure' | 'junk': a class nearest junk is flagged as junk), ``structure_distance``
    and ``junk_distance`` (to the nearest of each kind; unit embeddings, 0..2);
    ``recommendation`` ('accept' | 'reject' | 'look') and its ``reason``.

``class_labels`` (the operator's select and reject of 2D classes, from the dashboard)
    ``id`` (primary key); ``class_index``; ``label`` ('select' | 'reject'); ``labelled_at``;
    ``labelled_by``.

``reconstructions`` (the 3D map of an update, when the session refines against a reference)
    ``version`` (primary key); ``particles`` (in the map); ``symmetry``;
    ``pixel_size_angstrom`` (of the map); ``resolution_angstrom`` (gold-standard FSC 0.143,
    masked and corrected; NULL when not reached), ``resolution_unmasked_angstrom``,
    ``resolution_fsc_05_angstrom``; ``fsc_masked``, ``fsc_unmasked`` (JSON lists: shell ``i``
    at ``i / (2 (n - 1))`` cycles per pixel); ``half_map_1``, ``half_map_2``, ``map_path``
    (MRC), ``fsc_star_path`` (RELION's ``postprocess.star``); ``coverage`` (share of viewing
    directions within 15 degrees of a particle's); ``largest_gap_deg``;
    ``symmetry_correlations`` (JSON list: the reference's correlation with itself under each
    operator of ``symmetry``, empty for C1; schema 4); ``initial_model`` (the map refinement
    started from: the reference, or the session's ab-initio map) and ``ab_initio`` (BOOLEAN:
    it was ab initio, so its hand is undetermined; schema 4); ``novelty`` (the map against
    the novelty index: the median over 50 of its views of the distance to the nearest known
    structure, as Novelty; NULL without an index; schema 5) and ``nearest`` (the structure
    most views are nearest).

``forecasts`` (resolution against particles at an update with a map)
    ``version`` (primary key); ``particles``; ``bfactor_angstrom2`` and
    ``bfactor_sd_angstrom2`` (Rosenthal-Henderson over the updates; NULL before three);
    ``ssnr_bfactor_angstrom2`` (from the current FSC); ``target_resolution_angstrom``;
    ``particles_needed`` (for the target); ``resolution_at_double_angstrom`` (at twice the
    particles); ``particles_per_hour`` (the session's rate); ``hours_to_target`` (NULL when
    unknown); from schema 7, with a planned session length (``session_hours``):
    ``hours_left`` of it, ``particles_at_end`` at the current rate,
    ``resolution_at_end_angstrom`` expected from them and ``p_reach_target`` (the probability
    that it reaches the target); NULL without a plan.

One update is written in one transaction, keyed by its version in ``evaluations``: writing
a version that is there already changes nothing (a restart may hand the last one over again).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from causalscope.daemon.store.tables import Column, Table, field

if TYPE_CHECKING:
    import duckdb

    from causalscope.actors._evaluation_results import EvaluationUpdate

__all__ = [
    "CLASSES_TABLE",
    "CLASS_LABELS_TABLE",
    "CLASS_SETS_TABLE",
    "EVALUATIONS_TABLE",
    "FORECASTS_TABLE",
    "RECONSTRUCTIONS_TABLE",
    "class_labels",
    "particle_stars",
    "stored_version",
    "write_evaluation",
]

_VERSION = Column("version", "INTEGER PRIMARY KEY")
# Read from an EvaluationUpdate (actors._evaluation_results).
EVALUATIONS_TABLE = Table(
    "evaluations",
    (
        field("version", "INTEGER PRIMARY KEY"),
        field("particles", "INTEGER NOT NULL"),
        field("exposures", "INTEGER NOT NULL"),
        field("seconds", "DOUBLE NOT NULL"),
        Column("run_id", "INTEGER"),
        Column("committed_at", "TIMESTAMP NOT NULL"),
    ),
)
# Read from a ClassSetUpdate.
CLASS_SETS_TABLE = Table(
    "class_sets",
    (
        _VERSION,
        field("n_classes", "INTEGER NOT NULL"),
        field("particles", "INTEGER NOT NULL"),
        field("selected_particles", "INTEGER NOT NULL"),
        field("pixel_size_angstrom", "DOUBLE NOT NULL"),
        field("averages_path", "VARCHAR NOT NULL"),
        field("gallery_path", "VARCHAR NOT NULL"),
        field("model_star_path", "VARCHAR NOT NULL"),
        field("selected_star_path", "VARCHAR NOT NULL"),
    ),
)
# Read from a ClassRow; the writer gives the version and the image name.
CLASSES_TABLE = Table(
    "classes",
    (
        Column("version", "INTEGER NOT NULL"),
        field("class_index", "INTEGER NOT NULL"),
        field("particles", "INTEGER NOT NULL"),
        field("effective_sample_size", "DOUBLE NOT NULL"),
        field("resolution_angstrom", "DOUBLE"),
        field("junk_score", "DOUBLE NOT NULL"),
        field("auto_selected", "BOOLEAN NOT NULL"),
        field("selected", "BOOLEAN NOT NULL"),
        field("label", "VARCHAR CHECK (label IN ('select', 'reject'))"),
        Column("image", "VARCHAR NOT NULL"),
        field("novelty", "DOUBLE"),
        field("nearest", "VARCHAR"),
        field("nearest_kind", "VARCHAR CHECK (nearest_kind IN ('structure', 'junk'))"),
        field("structure_distance", "DOUBLE"),
        field("junk_distance", "DOUBLE"),
        field("recommendation", "VARCHAR CHECK (recommendation IN ('accept', 'reject', 'look'))"),
        field("reason", "VARCHAR"),
    ),
    primary_key=("version", "class_index"),
)
CLASS_LABELS_TABLE = Table(
    "class_labels",
    (
        Column("id", "BIGINT PRIMARY KEY DEFAULT nextval('class_label_id')"),
        Column("class_index", "INTEGER NOT NULL"),
        Column("label", "VARCHAR NOT NULL CHECK (label IN ('select', 'reject'))"),
        Column("labelled_at", "TIMESTAMP NOT NULL"),
        Column("labelled_by", "VARCHAR NOT NULL"),
    ),
    sequence="class_label_id",
)
# Read from a MapUpdate.
RECONSTRUCTIONS_TABLE = Table(
    "reconstructions",
    (
        _VERSION,
        field("particles", "INTEGER NOT NULL"),
        field("symmetry", "VARCHAR NOT NULL"),
        field("pixel_size_angstrom", "DOUBLE NOT NULL"),
        field("resolution_angstrom", "DOUBLE"),
        field("resolution_unmasked_angstrom", "DOUBLE"),
        field("resolution_fsc_05_angstrom", "DOUBLE"),
        field("fsc_masked", "JSON NOT NULL", json=True),
        field("fsc_unmasked", "JSON NOT NULL", json=True),
        field("half_map_1", "VARCHAR NOT NULL"),
        field("half_map_2", "VARCHAR NOT NULL"),
        field("map_path", "VARCHAR NOT NULL"),
        field("fsc_star_path", "VARCHAR NOT NULL"),
        field("coverage", "DOUBLE NOT NULL"),
        field("largest_gap_deg", "DOUBLE NOT NULL"),
        field("symmetry_correlations", "JSON", json=True),
        field("initial_model", "VARCHAR"),
        field("ab_initio", "BOOLEAN"),
        field("novelty", "DOUBLE"),
        field("nearest", "VARCHAR"),
    ),
)
# Read from a ForecastUpdate.
FORECASTS_TABLE = Table(
    "forecasts",
    (
        _VERSION,
        field("particles", "INTEGER NOT NULL"),
        field("bfactor_angstrom2", "DOUBLE"),
        field("bfactor_sd_angstrom2", "DOUBLE"),
        field("ssnr_bfactor_angstrom2", "DOUBLE"),
        field("target_resolution_angstrom", "DOUBLE NOT NULL"),
        field("particles_needed", "DOUBLE"),
        field("resolution_at_double_angstrom", "DOUBLE"),
        field("particles_per_hour", "DOUBLE"),
        field("hours_to_target", "DOUBLE"),
        field("hours_left", "DOUBLE"),
        field("particles_at_end", "DOUBLE"),
        field("resolution_at_end_angstrom", "DOUBLE"),
        field("p_reach_target", "DOUBLE"),
    ),
)


def write_evaluation(
    con: duckdb.DuckDBPyConnection,
    update: EvaluationUpdate,
    *,
    run_id: int | None,
    now: dt.datetime,
) -> bool:
    """Insert one update's rows; False (and nothing written) when its version is stored."""
    version = update.version
    found = con.execute("SELECT 1 FROM evaluations WHERE version = ?", [version]).fetchone()
    if found is not None:
        return False
    row = EVALUATIONS_TABLE.values(update, run_id=run_id, committed_at=now)
    con.execute(EVALUATIONS_TABLE.insert_sql(row), row)
    if update.class_set is not None:
        table = CLASS_SETS_TABLE
        row = table.values(update.class_set, version=version)
        con.execute(table.insert_sql(row), row)
        classes = CLASSES_TABLE
        averages = update.class_set.averages_path
        con.executemany(
            classes.insert_sql(classes.column_names),
            [
                classes.values(c, version=version, image=f"{c.class_index + 1}@{averages}")
                for c in update.class_set.classes
            ],
        )
    for table, part in (
        (RECONSTRUCTIONS_TABLE, update.map),
        (FORECASTS_TABLE, update.forecast),
    ):
        if part is not None:
            row = table.values(part, version=version)
            con.execute(table.insert_sql(row), row)
    return True


def stored_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The last update stored, or None."""
    found = con.execute("SELECT max(version) FROM evaluations").fetchone()
    return None if found is None or found[0] is None else int(found[0])


def particle_stars(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int]]:
    """Done exposures that passed the gate (or warned) with extracted particles, in commit
    order: (id, particle STAR, count)."""
    rows = con.execute(
        """
        SELECT e.exposure_id, e.outputs->>'particles_star', coalesce(p.n_particles, 0)
        FROM exposures e LEFT JOIN picking p USING (exposure_id)
        WHERE e.state = 'done' AND e.gate_status <> 'fail'
          AND e.outputs->>'particles_star' IS NOT NULL AND p.n_particles > 0
        ORDER BY e.done_at, e.exposure_id
        """
    ).fetchall()
    return [(str(e), str(star), int(n)) for e, star, n in rows]


def class_labels(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """The operator's latest label per class."""
    rows = con.execute("SELECT class_index, label FROM class_labels ORDER BY id").fetchall()
    out: dict[int, str] = {}
    for index, label in rows:
        out[int(index)] = str(label)
    return out
