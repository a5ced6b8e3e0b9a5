"""The session's views: the shapes of the rows a session publishes and the dashboard reads.

The store creates these views in every session file (they are part of its schema, version 2
on); what it publishes after a commit is a row of ``published_exposures``, and the dashboard's
history is read from ``exposure_rows``, so both have one definition. A file written before the
views existed gets them as temporary views when it is opened read-only
(:func:`causalscope.daemon.client.recorded.open_session_file`).

``exposure_rows``
    One row per exposure: the ``exposures`` row with ``motion``, ``ctf`` and ``picking`` (JSON
    objects of those rows without ``exposure_id``, null when there is none; ``motion`` without
    the per-frame ``shifts_px``) and ``flags`` (a JSON list of the gate's flags in order, each
    without ``exposure_id`` and ``position``). See :class:`~.wire.ExposureRow`.
``published_exposures``
    ``exposure_rows`` with the per-frame ``shifts_px`` in ``motion``: what is published on
    ``exposure`` after each commit.
``alerts``
    The ``events`` of kind ``alert`` (:class:`~.wire.Event`).
``latest_causes``
    The causal model's latest ranking of the session's causes (:class:`~.wire.Cause`).
``causal_verdicts``
    The causal model's verdict on each exposure with its ``shares`` (a JSON list), in the shape
    of a published ``causal`` update less its ranking; ``index`` is ``model_index``
    (:class:`~.wire.CausalVerdict`).
``score_rows``
    One row per scored exposure or reconstruction update, in the shape published on ``score``
    (:class:`~.wire.Score`): the ``scores`` row's components, V, HyperScore, terms and weights
    with its ``obligations`` (a JSON list of objects, each with ``subject`` as
    ``'<kind> <subject>'`` and an empty ``counterexample`` where it holds).
``evaluation_updates``
    One row per update of the running reconstructions, in the shape published on
    ``evaluation`` (:class:`~.wire.EvaluationUpdate`): ``version``, ``particles``,
    ``exposures``, ``seconds`` and the JSON objects ``class_set`` (the ``class_sets`` row with
    its ``classes``, a JSON list of the ``classes`` rows in class order without ``version`` and
    ``image``), ``map`` (the ``reconstructions`` row) and ``forecast`` (the ``forecasts``
    row), each without its ``version`` and null when the update has none.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ALERTS_SQL",
    "CAUSAL_CATCH_UP_SQL",
    "CAUSAL_RELATIONS",
    "CAUSAL_SQL",
    "CAUSES_SQL",
    "CLASS_LABELS_SQL",
    "CLASS_LABEL_CATCH_UP_SQL",
    "EVALUATIONS_SQL",
    "EVALUATION_CATCH_UP_SQL",
    "EVALUATION_RELATIONS",
    "EXPOSURE_CATCH_UP_SQL",
    "HAS_CAUSAL_SQL",
    "HAS_CLASSES_SQL",
    "HAS_EVALUATIONS_SQL",
    "HAS_SCORES_SQL",
    "HISTORY_SQL",
    "LATEST_CLASS_SET_SQL",
    "LATEST_LABELS_SQL",
    "LATEST_MAP_SQL",
    "PUBLISHED_EXPOSURE_SQL",
    "SCORES_SQL",
    "SCORE_CATCH_UP_SQL",
    "SCORE_RELATIONS",
    "VIEWS",
    "View",
]


@dataclass(frozen=True)
class View:
    """A view of the session's schema.

    Attributes
    ----------
    name
        The view's name.
    select
        Its SELECT statement.
    tables
        The tables (and views) it reads: a file that lacks one cannot have the view.
    """

    name: str
    select: str
    tables: tuple[str, ...]

    def ddl(self, *, temporary: bool = False) -> str:
        """``CREATE OR REPLACE [TEMPORARY] VIEW``: the view as defined here."""
        kind = "TEMPORARY VIEW" if temporary else "VIEW"
        return f"CREATE OR REPLACE {kind} {self.name} AS {self.select}"


def _object(alias: str) -> str:
    # a joined row as a JSON object without its key; null when the join found none
    return (
        f"CASE WHEN {alias}.exposure_id IS NULL THEN NULL "
        f"ELSE json_remove(to_json({alias}), '$.exposure_id') END"
    )


_EXPOSURE_ROWS = f"""
SELECT e.*,
    {_object("m")} AS motion,
    {_object("c")} AS ctf,
    {_object("p")} AS picking,
    coalesce(fl.flags, '[]'::JSON) AS flags
FROM exposures AS e
LEFT JOIN (SELECT * EXCLUDE (shifts_px) FROM motion) AS m ON m.exposure_id = e.exposure_id
LEFT JOIN ctf AS c ON c.exposure_id = e.exposure_id
LEFT JOIN picking AS p ON p.exposure_id = e.exposure_id
LEFT JOIN (
    SELECT f.exposure_id,
        to_json(list(json_remove(json_remove(to_json(f), '$.exposure_id'), '$.position')
            ORDER BY f.position)) AS flags
    FROM flags AS f GROUP BY f.exposure_id
) AS fl ON fl.exposure_id = e.exposure_id
"""

_PUBLISHED_EXPOSURES = """
SELECT r.* REPLACE (
    CASE WHEN r.motion IS NULL THEN NULL
    ELSE json_merge_patch(r.motion, json_object('shifts_px', m.shifts_px)) END AS motion)
FROM exposure_rows AS r LEFT JOIN motion AS m ON m.exposure_id = r.exposure_id
"""

_ALERTS = "SELECT * FROM events WHERE kind = 'alert'"

_LATEST_CAUSES = """
SELECT cause, rank, mean_angstrom, sd_angstrom, p_top, weight_mean, weight_sd, tolerance,
    observed, converged, advice
FROM causal_ranking
WHERE model_index = (SELECT max(model_index) FROM causal_ranking)
"""

_CAUSAL_VERDICTS = """
SELECT c.exposure_id, c.model_index AS "index", c.regime, c.regime_change,
    c.observed_resolution_angstrom, c.best_resolution_angstrom, c.predicted_loss_angstrom,
    c.predicted_loss_sd_angstrom, c.unexplained_angstrom, c.dominant_cause, c.converged,
    coalesce(sh.shares, '[]'::JSON) AS shares
FROM causal AS c
LEFT JOIN (
    SELECT exposure_id, to_json(list({'cause': cause, 'share_angstrom': share_angstrom,
        'sd_angstrom': sd_angstrom} ORDER BY cause)) AS shares
    FROM causal_shares GROUP BY exposure_id
) AS sh ON sh.exposure_id = c.exposure_id
"""


def _without_version(alias: str) -> str:
    # a joined row as a JSON object without its version; null when the join found none
    return (
        f"CASE WHEN {alias}.version IS NULL THEN NULL "
        f"ELSE json_remove(to_json({alias}), '$.version') END"
    )


_EVALUATION_UPDATES = f"""
SELECT e.version, e.particles, e.exposures, e.seconds,
    CASE WHEN cs.version IS NULL THEN NULL
    ELSE json_merge_patch(json_remove(to_json(cs), '$.version'),
        json_object('classes', coalesce(cl.classes, '[]'::JSON))) END AS class_set,
    {_without_version("r")} AS map,
    {_without_version("f")} AS forecast
FROM evaluations AS e
LEFT JOIN class_sets AS cs ON cs.version = e.version
LEFT JOIN (
    SELECT c.version,
        to_json(list(json_remove(json_remove(to_json(c), '$.version'), '$.image')
            ORDER BY c.class_index)) AS classes
    FROM classes AS c GROUP BY c.version
) AS cl ON cl.version = e.version
LEFT JOIN reconstructions AS r ON r.version = e.version
LEFT JOIN forecasts AS f ON f.version = e.version
"""

_SCORE_ROWS = """
SELECT s.kind, s.subject, s.logic, s.novelty, s.impact, s.delta_repro, s.meta, s.v,
    s.v_without_meta, s.hyperscore, s.weakest, s.terms, s.weights, s.n_particles,
    s.weighted_particles, s.contribution_angstrom, s.recommendation,
    coalesce(s.reason, '') AS reason, coalesce(ob.obligations, '[]'::JSON) AS obligations
FROM scores AS s
LEFT JOIN (
    SELECT o.kind, o.subject,
        to_json(list(json_object(
            'name', o.name, 'subject', o.kind || ' ' || o.subject, 'statement', o.statement,
            'holds', o.holds, 'message', o.message,
            'counterexample', coalesce(o.counterexample, '{}'::JSON)) ORDER BY o.name))
            AS obligations
    FROM obligations AS o GROUP BY o.kind, o.subject
) AS ob ON ob.kind = s.kind AND ob.subject = s.subject
"""

#: The views, in the order they are created (a view after those it reads).
VIEWS: tuple[View, ...] = (
    View("exposure_rows", _EXPOSURE_ROWS, ("exposures", "motion", "ctf", "picking", "flags")),
    View("published_exposures", _PUBLISHED_EXPOSURES, ("exposure_rows", "motion")),
    View("alerts", _ALERTS, ("events",)),
    View("latest_causes", _LATEST_CAUSES, ("causal_ranking",)),
    View("causal_verdicts", _CAUSAL_VERDICTS, ("causal", "causal_shares")),
    View(
        "evaluation_updates",
        _EVALUATION_UPDATES,
        ("evaluations", "class_sets", "classes", "reconstructions", "forecasts"),
    ),
    View("score_rows", _SCORE_ROWS, ("scores", "obligations")),
)

#: One exposure as published after its commit (parameter ``$id``).
PUBLISHED_EXPOSURE_SQL = "SELECT * FROM published_exposures WHERE exposure_id = $id"
#: The whole history, in the order exposures were seen.
HISTORY_SQL = "SELECT * FROM exposure_rows ORDER BY seen_at, exposure_id"
#: What changed since a time (``$1``, ISO text): a commit can fall between history and subscribe.
EXPOSURE_CATCH_UP_SQL = (
    "SELECT * FROM exposure_rows WHERE done_at >= $1::TIMESTAMP OR seen_at >= $1::TIMESTAMP "
    "ORDER BY seen_at, exposure_id"
)
#: The daemon's alerts, oldest first.
ALERTS_SQL = "SELECT * FROM alerts ORDER BY id"
#: The causal model's latest ranking, most costly first.
CAUSES_SQL = "SELECT * FROM latest_causes ORDER BY rank"
#: The causal model's verdict on each exposure, in the order it learned them.
CAUSAL_SQL = 'SELECT * FROM causal_verdicts ORDER BY "index", exposure_id'
#: The verdicts on the exposures in ``$1`` (a list of ids), in the order they were learned.
CAUSAL_CATCH_UP_SQL = (
    "SELECT * FROM causal_verdicts WHERE list_contains($1::VARCHAR[], exposure_id) "
    'ORDER BY "index", exposure_id'
)
#: The causal model's views and the tables they read: a file written before the model has none.
CAUSAL_RELATIONS = ("latest_causes", "causal_verdicts", "causal", "causal_shares", "causal_ranking")
#: How many of :data:`CAUSAL_RELATIONS` the session has (all of them, or it has no causal model).
HAS_CAUSAL_SQL = (
    "SELECT count(DISTINCT table_name) FROM information_schema.tables "
    f"WHERE table_name IN {CAUSAL_RELATIONS}"
)

#: The running reconstructions' updates, oldest first, without the bulky lists (each class set's
#: ``classes``, each map's FSC curves): what the history plots and the verdict need.
EVALUATIONS_SQL = (
    "SELECT version, particles, exposures, seconds, "
    "json_remove(class_set, '$.classes') AS class_set, "
    "json_remove(json_remove(map, '$.fsc_masked'), '$.fsc_unmasked') AS map, forecast "
    "FROM evaluation_updates ORDER BY version"
)
#: The latest update that has a class set: ``version`` and ``class_set`` with its classes.
LATEST_CLASS_SET_SQL = (
    "SELECT version, class_set FROM evaluation_updates "
    "WHERE version = (SELECT max(version) FROM class_sets)"
)
#: The latest update that has a map: ``version`` and ``map`` with its FSC curves.
LATEST_MAP_SQL = (
    "SELECT version, map FROM evaluation_updates "
    "WHERE version = (SELECT max(version) FROM reconstructions)"
)
#: The operator's class labels, oldest first (the latest per class wins).
CLASS_LABELS_SQL = (
    "SELECT id, class_index, label, labelled_at, labelled_by FROM class_labels ORDER BY id"
)
#: The updates committed from a time (``$1``, ISO text) on, whole, as published.
EVALUATION_CATCH_UP_SQL = (
    "SELECT * FROM evaluation_updates WHERE version IN "
    "(SELECT version FROM evaluations WHERE committed_at >= $1::TIMESTAMP) ORDER BY version"
)
#: The class labels stored from a time (``$1``, ISO text) on, oldest first.
CLASS_LABEL_CATCH_UP_SQL = (
    "SELECT id, class_index, label, labelled_at, labelled_by FROM class_labels "
    "WHERE labelled_at >= $1::TIMESTAMP ORDER BY id"
)
#: The running reconstructions' view and tables: a file older than schema 3 has none.
EVALUATION_RELATIONS = (
    "evaluation_updates",
    "evaluations",
    "class_sets",
    "classes",
    "reconstructions",
    "forecasts",
    "class_labels",
)
#: Every exposure's score with its obligations, as published on ``score``, in scoring order.
SCORES_SQL = (
    "SELECT r.* FROM score_rows AS r JOIN scores AS s USING (kind, subject) "
    "WHERE r.kind = 'exposure' ORDER BY s.seq"
)
#: The scores stored from a time (``$1``, ISO text) on, as published.
SCORE_CATCH_UP_SQL = (
    "SELECT r.* FROM score_rows AS r JOIN scores AS s USING (kind, subject) "
    "WHERE s.scored_at >= $1::TIMESTAMP ORDER BY s.seq"
)
#: The scores' view and tables: a file older than schema 4 has none.
SCORE_RELATIONS = ("score_rows", "scores", "obligations")
#: How many of :data:`SCORE_RELATIONS` the session has.
#: Each labelled exposure's latest label (``exposure_id``, ``label``): a relation to join.
LATEST_LABELS_SQL = (
    "SELECT exposure_id, label FROM labels "
    "QUALIFY row_number() OVER (PARTITION BY exposure_id ORDER BY id DESC) = 1"
)
#: 1 when the session has classified particles in 2D (its ``class_sets`` table exists).
HAS_CLASSES_SQL = "SELECT count(*) FROM information_schema.tables WHERE table_name = 'class_sets'"
HAS_SCORES_SQL = (
    "SELECT count(DISTINCT table_name) FROM information_schema.tables "
    f"WHERE table_name IN {SCORE_RELATIONS}"
)
#: How many of :data:`EVALUATION_RELATIONS` the session has.
HAS_EVALUATIONS_SQL = (
    "SELECT count(DISTINCT table_name) FROM information_schema.tables "
    f"WHERE table_name IN {EVALUATION_RELATIONS}"
)
