"""The scores' tables (schema version 4) and their rows.

``scores`` (one row per scored exposure or reconstruction update; the latest scoring's)
    ``kind`` ('exposure' | 'reconstruction'); ``subject`` (the exposure id, or the update's
    version as text; with ``kind`` the primary key); ``seq`` (scoring order); ``logic``,
    ``novelty``, ``impact``, ``delta_repro``, ``meta``: the components of V, each in (0, 1]
    (LogicScore, Novelty, ImpactFore, DeltaRepro, Meta; NULL where not measured, and then left
    out of V); ``v``; ``v_without_meta`` (V of the other components: what Meta compares over
    the recent window); ``hyperscore`` (NULL when nothing was measured); ``weakest``: the
    component that held V down most; ``terms`` (JSON object: each component's part in V, its
    weight times its term); ``weights`` (JSON object: w1..w5 as used, and beta, gamma, kappa);
    ``n_particles`` (the exposure's usable particles, or the map's); ``weighted_particles``
    (the exposure's particles weighted by the signal its CTF fit resolution implies at
    ``impact_resolution_angstrom``: ImpactFore's measure); ``failed_obligations``;
    ``contribution_angstrom`` (exposures: how much better the session's map is expected to be
    at its end, or now without a plan, with the exposure's particles than without them, by the
    latest forecast's SSNR fit; NULL before one; schema 10);
    ``recommendation`` ('accept' | 'reject' | 'look'; exposures only: reject when the gate
    failed it, an obligation broke or HyperScore is below ``reject_below``, accept at
    ``accept_above`` or more) and its ``reason``;
    ``run_id``; ``scored_at``.

``repro`` (one row per done exposure whose half sums were refitted; the latest commit's)
    ``exposure_id`` (primary key); ``defocus_even_angstrom``, ``defocus_odd_angstrom`` (mean
    defocus of each half's CTF fit, NULL without a fit);
    ``fit_resolution_even_angstrom``, ``fit_resolution_odd_angstrom`` (NULL where the half's
    rings do not support one); ``particles_even``, ``particles_odd`` (picks on each half);
    ``z_defocus`` (half the halves' defocus difference where they differ most, astigmatism
    included, in units of the defocus error that costs 45 degrees of CTF phase at
    ``repro_resolution_angstrom``), ``z_fit_resolution``, ``z_particles`` (each
    difference on its own scale: :mod:`models.scoring.repro`); ``delta_repro``
    (``exp(-rms(z) / 2)``, the DeltaRepro component); ``drift_difference_angstrom`` (RMS
    distance between the even and the odd frames' trajectories, each aligned on its own;
    NULL for movies of fewer than 6 frames) and its ``z_drift`` (schema 6);
    ``defocus_noise_angstrom`` (mean defocus of the whole CTF sum fitted again with as much
    noise again added; NULL without a noise estimate) and its ``z_noise`` (the two fits'
    difference where they differ most, in the same units; schema 9).

``score_weights`` (one row per learning of V's weights from the operator's labels)
    ``version`` (primary key, 1, 2, ...); ``n_labels`` (labelled, scored exposures learned
    from) and ``accepted`` (of them); ``weights`` (JSON object: w1..w5 by component, summing
    to 1); ``auc`` (ROC AUC of V on the labels with these weights) and ``start_auc`` (with the
    weights before); ``convergence`` (JSON list: the best AUC after each trial of the
    Bayesian optimisation); ``learned_at``. Scores after ``learned_at`` use the weights.

``triage`` (one row per done exposure whose micrograph was triaged; the latest commit's)
    ``exposure_id`` (primary key); ``label`` ('empty' | 'ice_only' | 'crystalline_ice' |
    'contaminated' | 'usable', from the image alone); ``p_usable`` (the exposure's Novelty);
    ``scores`` (JSON object: the probability of each class); ``reason``.

``obligations`` (one row per physical-consistency obligation stated for a subject)
    ``kind``; ``subject``; ``name`` (e.g. 'fit_within_nyquist'; with ``kind`` and ``subject``
    the primary key); ``holds`` (BOOLEAN: z3 found values within the measurements'
    uncertainty that satisfy it); ``statement`` (the claim, formally); ``message`` (in words,
    with the values); ``counterexample`` (JSON object: the solver's model of the claim's
    negation at the measured values, NULL when it holds).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from causalscope.daemon.client.views import LATEST_LABELS_SQL
from causalscope.daemon.store.tables import Column, Table, encode_json, field

if TYPE_CHECKING:
    import duckdb

    from causalscope.actors.scoring import ScoredSubject

__all__ = [
    "OBLIGATIONS_TABLE",
    "REPRO_TABLE",
    "SCORES_TABLE",
    "SCORE_WEIGHTS_TABLE",
    "TRIAGE_TABLE",
    "labelled_components",
    "latest_weights",
    "score_history",
    "unscored_records",
    "write_score",
    "write_weights",
]

_KIND = Column("kind", "VARCHAR NOT NULL CHECK (kind IN ('exposure', 'reconstruction'))")
SCORES_TABLE = Table(
    "scores",
    (
        _KIND,
        Column("subject", "VARCHAR NOT NULL"),
        Column("seq", "BIGINT NOT NULL DEFAULT nextval('score_seq')"),
        Column("logic", "DOUBLE"),
        Column("novelty", "DOUBLE"),
        Column("impact", "DOUBLE"),
        Column("delta_repro", "DOUBLE"),
        Column("meta", "DOUBLE"),
        Column("v", "DOUBLE"),
        Column("v_without_meta", "DOUBLE"),
        Column("hyperscore", "DOUBLE"),
        Column("weakest", "VARCHAR"),
        Column("terms", "JSON", json=True),
        Column("weights", "JSON", json=True),
        Column("n_particles", "INTEGER NOT NULL"),
        Column("weighted_particles", "DOUBLE"),
        Column("failed_obligations", "INTEGER NOT NULL"),
        Column("recommendation", "VARCHAR CHECK (recommendation IN ('accept', 'reject', 'look'))"),
        Column("reason", "VARCHAR"),
        Column("run_id", "INTEGER"),
        Column("scored_at", "TIMESTAMP NOT NULL"),
        Column("contribution_angstrom", "DOUBLE"),
    ),
    primary_key=("kind", "subject"),
    sequence="score_seq",
)
# Read from a ReproRecord.
REPRO_TABLE = Table(
    "repro",
    (
        Column("exposure_id", "VARCHAR PRIMARY KEY"),
        field("defocus_even_angstrom", "DOUBLE"),
        field("defocus_odd_angstrom", "DOUBLE"),
        field("fit_resolution_even_angstrom", "DOUBLE"),
        field("fit_resolution_odd_angstrom", "DOUBLE"),
        field("particles_even", "INTEGER"),
        field("particles_odd", "INTEGER"),
        field("z_defocus", "DOUBLE"),
        field("z_fit_resolution", "DOUBLE"),
        field("z_particles", "DOUBLE"),
        field("delta_repro", "DOUBLE NOT NULL"),
        field("drift_difference_angstrom", "DOUBLE"),
        field("z_drift", "DOUBLE"),
        field("defocus_noise_angstrom", "DOUBLE"),
        field("z_noise", "DOUBLE"),
    ),
)
# Read from a TriageRecord.
TRIAGE_TABLE = Table(
    "triage",
    (
        Column("exposure_id", "VARCHAR PRIMARY KEY"),
        field("label", "VARCHAR NOT NULL"),
        field("p_usable", "DOUBLE NOT NULL"),
        field("scores", "JSON", json=True),
        field("reason", "VARCHAR"),
    ),
)
OBLIGATIONS_TABLE = Table(
    "obligations",
    (
        _KIND,
        Column("subject", "VARCHAR NOT NULL"),
        Column("name", "VARCHAR NOT NULL"),
        Column("holds", "BOOLEAN NOT NULL"),
        Column("statement", "VARCHAR NOT NULL"),
        Column("message", "VARCHAR NOT NULL"),
        Column("counterexample", "JSON", json=True),
    ),
    primary_key=("kind", "subject", "name"),
)


def write_score(
    con: duckdb.DuckDBPyConnection,
    scored: ScoredSubject,
    *,
    run_id: int | None,
    now: dt.datetime,
) -> None:
    """Replace the subject's score and obligations (inside the caller's transaction)."""
    key = [scored.kind, scored.subject]
    for table in ("scores", "obligations"):
        con.execute(f"DELETE FROM {table} WHERE kind = ? AND subject = ?", key)
    c, s = scored.components, scored.score
    row = {
        "kind": scored.kind,
        "subject": scored.subject,
        "logic": c.logic,
        "novelty": c.novelty,
        "impact": c.impact,
        "delta_repro": c.delta_repro,
        "meta": c.meta,
        "v": None if s is None else s.v,
        "v_without_meta": scored.v_without_meta,
        "hyperscore": None if s is None else s.hyperscore,
        "weakest": None if s is None else s.weakest,
        "terms": encode_json({} if s is None else s.terms),
        "weights": encode_json(scored.weights),
        "n_particles": scored.n_particles,
        "weighted_particles": scored.weighted_particles,
        "failed_obligations": len(scored.failed),
        "recommendation": scored.recommendation,
        "reason": scored.reason,
        "run_id": run_id,
        "scored_at": now,
        "contribution_angstrom": scored.contribution_angstrom,
    }
    con.execute(SCORES_TABLE.insert_sql(row), row)
    if scored.obligations:
        con.executemany(
            OBLIGATIONS_TABLE.insert_sql(OBLIGATIONS_TABLE.column_names),
            [
                {
                    "kind": scored.kind,
                    "subject": scored.subject,
                    "name": o.name,
                    "holds": o.holds,
                    "statement": o.statement,
                    "message": o.message,
                    "counterexample": None if o.holds else encode_json(o.counterexample),
                }
                for o in scored.obligations
            ],
        )


def score_history(con: duckdb.DuckDBPyConnection) -> list[tuple[float | None, ...]]:
    """The exposures' (V without Meta, weighted particles, logic, novelty, impact,
    delta_repro, particles) in scoring order: what a restart replays."""
    rows = con.execute(
        "SELECT v_without_meta, weighted_particles, logic, novelty, impact, delta_repro, "
        "n_particles FROM scores WHERE kind = 'exposure' ORDER BY seq"
    ).fetchall()
    return [
        (_float(v), float(n or 0.0), *(_float(c) for c in terms), float(plain or 0))
        for v, n, *terms, plain in rows
    ]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def unscored_records(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The latest record (JSON text) of each done exposure that has no score, in commit order:
    a daemon killed between a commit and its score scores them when it restarts."""
    rows = con.execute(
        """
        SELECT r.record_json::VARCHAR
        FROM exposures e JOIN results r USING (exposure_id)
        WHERE e.state = 'done'
          AND NOT EXISTS (
            SELECT 1 FROM scores s WHERE s.kind = 'exposure' AND s.subject = e.exposure_id
          )
        QUALIFY row_number() OVER (PARTITION BY r.exposure_id ORDER BY r.committed_at DESC) = 1
        ORDER BY e.done_at, e.exposure_id
        """
    ).fetchall()
    return [str(text) for (text,) in rows]


#: the exposures' HyperScore quartiles and mean LogicScore
SCORED_SQL = """
SELECT count(*), quantile_cont(hyperscore, [0.1, 0.5, 0.9]), avg(logic)
FROM scores WHERE kind = 'exposure' AND hyperscore IS NOT NULL
"""
#: failed obligations by name, most frequent first
FAILED_SQL = """
SELECT name, count(*) AS n FROM obligations WHERE NOT holds
GROUP BY name ORDER BY n DESC, name
"""
#: exposures by recommendation
RECOMMENDATIONS_SQL = """
SELECT recommendation, count(*) FROM scores
WHERE kind = 'exposure' AND recommendation IS NOT NULL GROUP BY recommendation
"""
#: the lowest-scoring exposures not recommended for acceptance, with the term that held each
#: down and its failed obligations
WORST_SQL = """
SELECT s.subject, s.hyperscore, s.weakest, s.reason,
       (SELECT string_agg(o.name || ': ' || o.message, '; ' ORDER BY o.name)
        FROM obligations o
        WHERE o.kind = s.kind AND o.subject = s.subject AND NOT o.holds) AS failed
FROM scores s WHERE s.kind = 'exposure' AND s.hyperscore IS NOT NULL
    AND s.recommendation IS DISTINCT FROM 'accept'
ORDER BY s.hyperscore, s.subject LIMIT ?
"""


# One row per learning of the weights from the operator's labels.
SCORE_WEIGHTS_TABLE = Table(
    "score_weights",
    (
        Column("version", "INTEGER PRIMARY KEY"),
        Column("n_labels", "INTEGER NOT NULL"),
        Column("accepted", "INTEGER NOT NULL"),
        Column("weights", "JSON NOT NULL", json=True),
        Column("auc", "DOUBLE NOT NULL"),
        Column("start_auc", "DOUBLE NOT NULL"),
        Column("convergence", "JSON NOT NULL", json=True),
        Column("learned_at", "TIMESTAMP NOT NULL"),
    ),
)

# each labelled exposure's latest label with its stored components
_LABELLED_SQL = f"""
SELECT s.logic, s.novelty, s.impact, s.delta_repro, s.meta, l.label
FROM ({LATEST_LABELS_SQL}) l JOIN scores s ON s.kind = 'exposure' AND s.subject = l.exposure_id
ORDER BY s.seq
"""


def labelled_components(
    con: duckdb.DuckDBPyConnection,
) -> list[tuple[dict[str, float | None], bool]]:
    """The scored exposures that carry a label: their components and whether accepted."""
    names = ("logic", "novelty", "impact", "delta_repro", "meta")
    return [
        (dict(zip(names, row[:5], strict=True)), row[5] == "accept")
        for row in con.execute(_LABELLED_SQL).fetchall()
    ]


def write_weights(
    con: duckdb.DuckDBPyConnection,
    *,
    n_labels: int,
    accepted: int,
    weights: dict[str, float],
    auc: float,
    start_auc: float,
    convergence: list[float],
    now: dt.datetime,
) -> int:
    """Store a learning of the weights; returns its version (1, 2, ...)."""
    (latest,) = con.execute("SELECT coalesce(max(version), 0) FROM score_weights").fetchone()  # type: ignore[misc]
    version = int(latest) + 1
    row = {
        "version": version,
        "n_labels": n_labels,
        "accepted": accepted,
        "weights": encode_json(weights),
        "auc": auc,
        "start_auc": start_auc,
        "convergence": encode_json(convergence),
        "learned_at": now,
    }
    con.execute(SCORE_WEIGHTS_TABLE.insert_sql(row), row)
    return version


def latest_weights(con: duckdb.DuckDBPyConnection) -> tuple[int, dict[str, float], int] | None:
    """The last learned weights: (version, weights, labels they were learned from)."""
    found = con.execute(
        "SELECT version, weights, n_labels FROM score_weights ORDER BY version DESC LIMIT 1"
    ).fetchone()
    if found is None:
        return None
    import json

    weights = found[1] if isinstance(found[1], dict) else json.loads(found[1])
    return int(found[0]), {str(k): float(v) for k, v in weights.items()}, int(found[2])
