"""The schema of a session database (``SESSION.duckdb``), version 10.

One DuckDB file per session; :class:`daemon.store.SessionStore` is its only writer. Times are
``TIMESTAMP`` in UTC (no time zone attached). Columns of type ``JSON`` hold text that DuckDB's
JSON functions read (``outputs->>'aligned_sum'``). Units are in the column names.

Each table is declared once below (:class:`~.tables.Table`: column, type, record attribute,
JSON or not); its DDL, its named INSERTs and its JSON columns come from that declaration. To
store a new field of a record: declare its column (at the table's end) with the attribute it is
read from, document it here and raise :data:`SCHEMA_VERSION`; an older file gets the column when
a store opens it (:mod:`.migrate`), and the views pass it on to the dashboard.
Version 10 added ``scores``' ``contribution_angstrom`` (an exposure's expected contribution
to the session's map). Version 9 added ``repro``'s ``defocus_noise_angstrom`` and
``z_noise`` (Delta-Repro's resampled-noise refit). Version 8 added ``picking``'s
``threshold`` (the learned picker's cut).
Version 7 added ``forecasts``' session-end columns. Version 6 added ``repro``'s
``drift_difference_angstrom`` and ``z_drift``. Version 5 added ``picking``'s
``excluded_fractions`` and ``picks_excluded``, the 2D classes' Novelty and recommendation
(``classes``' last seven columns) and the map's (``reconstructions``' ``novelty`` and
``nearest``). Version 4 added the scores' tables (``repro``, ``triage``, ``scores``,
``obligations``, ``score_weights``) and their view (``score_rows``), declared and documented in
:mod:`.scores`, and ``reconstructions``' ``symmetry_correlations``, ``initial_model`` and
``ab_initio``. Version 3 added the running reconstructions' tables (``evaluations``,
``class_sets``, ``classes``, ``class_labels``, ``reconstructions``, ``forecasts``) and their
view (``evaluation_updates``); an older file gets them when a store opens it. Version 2 added
the views of :mod:`causalscope.daemon.client.views` (``exposure_rows``, ``published_exposures``,
``alerts``, ``latest_causes``, ``causal_verdicts``): the shapes the session publishes and the
dashboard reads. A version-1 file is migrated when a store opens it (the views are created and
the version recorded); read-only it gets the views as temporary ones.

``schema_version``
    ``version`` (INTEGER): a schema version the file was written or migrated to (one row per
    version applied; the largest is the file's); ``applied_at``.

``session`` (one row)
    ``name``: the session's name (the file's stem); ``created_at``.

``runs`` (one row per start of the daemon on this session)
    ``run_id`` (INTEGER, primary key, 1, 2, ...); ``started_at``; ``version``: causalscope's
    version; ``command_line`` (JSON list of the arguments); ``settings_json`` (JSON, the resolved
    settings); ``params_hash``: hash of the settings that change results.

``exposures`` (one row per exposure seen)
    ``exposure_id`` (primary key: the movie's stem or the stream's id); ``movie_path``; ``source``
    ('watcher' | 'stream'; NULL when committed without having been recorded as seen);
    ``metadata_path`` (EPU XML or mdoc, or NULL); ``state`` ('seen': recorded, not yet committed |
    'done' | 'quarantined'); ``gate_status`` ('pass' | 'warn' | 'fail', NULL until done);
    ``seen_at``; ``done_at`` (last commit); ``latency_s`` (from the source's decision that the movie
    was complete to the commit); ``n_frames``; ``pixel_size_angstrom`` (of the micrographs);
    ``voltage_kv``; ``cs_mm`` (the spherical aberration); ``amplitude_contrast``; ``dose_e_per_a2``
    (total dose used for dose weighting); ``device`` (where it was processed); ``attempts``
    (processing attempts started; a crashed worker's exposure is retried); ``outputs`` (JSON object:
    written files by kind, e.g. ``aligned_sum``, ``dose_weighted_sum``, ``trajectory``);
    ``timings_s`` (JSON object: seconds per stage); ``problems`` (JSON list: irregularities the
    source saw); ``acquisition`` (JSON object: the EPU/mdoc metadata, or NULL).

``motion`` (one row per done exposure that was motion-corrected; the latest commit's)
    ``exposure_id`` (primary key); ``total_drift_px`` (path length of the global trajectory);
    ``max_frame_shift_px`` (largest shift between consecutive frames);
    ``accumulated_motion_total_angstrom``, ``accumulated_motion_early_angstrom``,
    ``accumulated_motion_late_angstrom`` (RELION's accumulated motion); ``local_motion_rms_px``
    (RMS of the local displacement, NULL without patches); ``patches_x``, ``patches_y``;
    ``measured_dose_e_per_a2`` (from the counts, NULL for integrating detectors);
    ``n_defect_pixels``; ``n_hot_pixels``; ``iterations``; ``shifts_px`` (JSON ``[[x, y], ...]``
    per frame, relative to frame 0).

``ctf`` (one row per done exposure with a CTF estimate; the latest commit's)
    ``exposure_id`` (primary key); ``defocus_u_angstrom``, ``defocus_v_angstrom`` (positive
    underfocus); ``defocus_angle_deg``; ``defocus_angstrom`` (mean of U and V);
    ``astigmatism_angstrom`` (U minus V); ``phase_shift_deg``; ``fit_resolution_angstrom``
    (resolution to which the rings support the fit, NULL where none does); ``figure_of_merit``;
    ``ice_thickness_nm``, ``ice_thickness_rings_nm``, ``ice_thickness_ice_ring_nm``;
    ``defocus_sigma_angstrom``, ``astigmatism_sigma_angstrom``, ``angle_sigma_deg``,
    ``phase_shift_sigma_deg``, ``ice_thickness_sigma_nm`` (1-sigma uncertainties);
    ``search_defocus_min_um``, ``search_defocus_max_um``; ``at_search_edge`` (BOOLEAN: the
    estimate sits at the edge of the search range); ``supported`` (BOOLEAN: the rings support the
    fit); ``warnings`` (JSON list).

``picking`` (one row per done exposure whose particles were picked; the latest commit's)
    ``exposure_id`` (primary key); ``n_particles``; ``particle_diameter_angstrom``; ``picker``
    ('blob' | 'template' | 'learned'); ``mean_score``; ``box_px`` (extraction box, NULL when not
    extracted); ``excluded_fractions`` (JSON: the area not picked in, per reason: ``dense`` carbon,
    contamination or aggregates, ``thin`` missing ice, ``border``; NULL with exclusion off or
    before schema 5); ``picks_excluded`` (picks dropped there); ``threshold`` (the learned
    picker's cut on the probability; NULL for blob and template picking and before schema 8).

``picks`` (one row per picked particle; the latest commit's)
    ``exposure_id``; ``position`` (from 0; with ``exposure_id`` the primary key); ``x_px``,
    ``y_px`` (the particle's centre in the micrograph); ``score``.

``flags`` (the sanity gate's findings for each done exposure; the latest commit's)
    ``exposure_id``; ``position`` (order within the exposure, from 0; with ``exposure_id`` the
    primary key); ``code`` (e.g. 'blank_frames'); ``severity`` ('fail' | 'warn'); ``message``;
    ``value`` (the offending value, or NULL); ``limit_value`` (the limit it was held against, or
    NULL).

``results`` (one row per committed result: the idempotency key)
    ``exposure_id``, ``stage`` (e.g. 'exposure'), ``params_hash``: primary key together; a
    commit whose key exists changes nothing. ``run_id`` (the run that committed it, or NULL);
    ``committed_at``; ``record_json`` (JSON: the full typed record).

``quarantine`` (one row per rejected input: bad files, bad messages, conflicts)
    ``id`` (primary key); ``exposure_id`` (NULL when the input named none); ``origin`` (file path
    or stream address); ``code`` (machine-readable reason, e.g. 'garbage_message'); ``reason``
    (human-readable, naming the file and value); ``run_id``; ``quarantined_at``.

``events`` (the session's log: starts, errors, retries)
    ``id`` (primary key); ``logged_at``; ``run_id``; ``kind`` (e.g. 'run_started', 'retry');
    ``message``; ``data`` (JSON object).

``labels`` (operators' verdicts on exposures, for the dashboard)
    ``id`` (primary key); ``exposure_id``; ``label`` ('accept' | 'reject'); ``labelled_at``;
    ``labelled_by`` (who gave it).

``causal_inputs`` (one row per done exposure the causal model can read; written with its commit)
    ``exposure_id`` (primary key); ``seq`` (commit order: the order the model learns in);
    ``ice_thickness_nm``; ``dose_e_per_a2``; ``total_drift_px``; ``defocus_um``;
    ``astigmatism_angstrom``; ``image_shift_um`` (from the metadata, or NULL);
    ``beam_tilt_mrad`` (estimated from the image shift); ``n_particles``;
    ``fit_resolution_angstrom`` (the outcome); ``ssnr_bfactor_angstrom2`` (the exposure's own
    spectral-SNR B, the envelope model's outcome, or NULL).

``causal`` (the causal model's verdict on each exposure, when it learned from it)
    ``exposure_id`` (primary key); ``model_index`` (exposures the model had seen, this one
    included); ``regime`` (regime changes declared so far); ``regime_change`` (BOOLEAN: declared
    at this exposure); ``observed_resolution_angstrom``; ``best_resolution_angstrom`` (predicted
    at the session's best factors); ``predicted_loss_angstrom`` and
    ``predicted_loss_sd_angstrom`` (the sum of the causes' shares); ``unexplained_angstrom``
    (observed loss minus predicted); ``dominant_cause`` (NULL when the exposure is as good as
    the best); ``converged`` (BOOLEAN: every observed weight within its tolerance).

``causal_shares`` (each cause's share of an exposure's lost resolution)
    ``exposure_id``, ``cause`` (primary key together); ``share_angstrom``; ``sd_angstrom``.

``causal_ranking`` (the session's causes after each update: the model's history)
    ``model_index``, ``cause`` (primary key together); ``rank`` (1 = costs the most);
    ``mean_angstrom``, ``sd_angstrom`` (mean share per exposure); ``p_top`` (posterior
    probability of being the largest); ``weight_mean``, ``weight_sd``, ``tolerance`` (the edge
    weight, A^2 of d^2 per unit factor); ``observed`` (BOOLEAN: the factor varied);
    ``converged`` (BOOLEAN); ``advice``; ``exposure_id`` (the update's exposure).

The running reconstructions' tables (``evaluations``, ``class_sets``, ``classes``,
``class_labels``, ``reconstructions``, ``forecasts``) are declared and documented in
:mod:`.evaluation`; the scores' in :mod:`.scores`.
"""

from __future__ import annotations

from typing import Any

from causalscope.daemon.client.views import VIEWS
from causalscope.daemon.store.evaluation import (
    CLASS_LABELS_TABLE,
    CLASS_SETS_TABLE,
    CLASSES_TABLE,
    EVALUATIONS_TABLE,
    FORECASTS_TABLE,
    RECONSTRUCTIONS_TABLE,
)
from causalscope.daemon.store.scores import (
    OBLIGATIONS_TABLE,
    REPRO_TABLE,
    SCORE_WEIGHTS_TABLE,
    SCORES_TABLE,
    TRIAGE_TABLE,
)
from causalscope.daemon.store.tables import Column, Table, decode_map, field

__all__ = ["JSON_COLUMNS", "SCHEMA_VERSION", "TABLES", "TABLE_SPECS", "VIEW_NAMES", "table"]

#: Version of the schema below; stored in ``schema_version``.
SCHEMA_VERSION = 10


def _patches_x(motion: Any) -> int | None:
    return None if motion.patches is None else motion.patches[0]


def _patches_y(motion: Any) -> int | None:
    return None if motion.patches is None else motion.patches[1]


def _itself(record: Any) -> Any:
    return record


_KEY = Column("exposure_id", "VARCHAR PRIMARY KEY")
_EXPOSURE = Column("exposure_id", "VARCHAR NOT NULL")

SCHEMA_VERSION_TABLE = Table(
    "schema_version",
    (Column("version", "INTEGER NOT NULL"), Column("applied_at", "TIMESTAMP NOT NULL")),
)
SESSION_TABLE = Table(
    "session", (Column("name", "VARCHAR NOT NULL"), Column("created_at", "TIMESTAMP NOT NULL"))
)
RUNS_TABLE = Table(
    "runs",
    (
        Column("run_id", "INTEGER PRIMARY KEY"),
        Column("started_at", "TIMESTAMP NOT NULL"),
        Column("version", "VARCHAR NOT NULL"),
        Column("command_line", "JSON NOT NULL", json=True),
        Column("settings_json", "JSON NOT NULL", json=True),
        Column("params_hash", "VARCHAR NOT NULL"),
    ),
)
# The record's columns are written at its commit; the others when a source sees the exposure.
EXPOSURES_TABLE = Table(
    "exposures",
    (
        _KEY,
        Column("movie_path", "VARCHAR NOT NULL"),
        Column("source", "VARCHAR CHECK (source IN ('watcher', 'stream'))"),
        Column("metadata_path", "VARCHAR"),
        Column("state", "VARCHAR NOT NULL CHECK (state IN ('seen', 'done', 'quarantined'))"),
        Column("gate_status", "VARCHAR CHECK (gate_status IN ('pass', 'warn', 'fail'))", "status"),
        Column("seen_at", "TIMESTAMP NOT NULL"),
        Column("done_at", "TIMESTAMP"),
        Column("latency_s", "DOUBLE"),
        field("n_frames", "INTEGER"),
        field("pixel_size_angstrom", "DOUBLE"),
        field("voltage_kv", "DOUBLE"),
        # the column keeps its first name: renaming it would break reading older files
        Column("cs_mm", "DOUBLE", "spherical_aberration_mm"),
        field("amplitude_contrast", "DOUBLE"),
        field("dose_e_per_a2", "DOUBLE"),
        field("device", "VARCHAR"),
        Column("attempts", "INTEGER NOT NULL DEFAULT 0"),
        field("outputs", "JSON", json=True),
        field("timings_s", "JSON", json=True),
        Column("problems", "JSON", json=True),
        Column("acquisition", "JSON", "metadata", json=True),
    ),
)
MOTION_TABLE = Table(
    "motion",
    (
        _KEY,
        field("total_drift_px", "DOUBLE NOT NULL"),
        field("max_frame_shift_px", "DOUBLE NOT NULL"),
        field("accumulated_motion_total_angstrom", "DOUBLE NOT NULL"),
        field("accumulated_motion_early_angstrom", "DOUBLE NOT NULL"),
        field("accumulated_motion_late_angstrom", "DOUBLE NOT NULL"),
        field("local_motion_rms_px", "DOUBLE"),
        Column("patches_x", "INTEGER", _patches_x),
        Column("patches_y", "INTEGER", _patches_y),
        field("measured_dose_e_per_a2", "DOUBLE"),
        field("n_defect_pixels", "INTEGER NOT NULL"),
        field("n_hot_pixels", "INTEGER NOT NULL"),
        field("iterations", "INTEGER NOT NULL"),
        field("shifts_px", "JSON NOT NULL", json=True),
    ),
)
CTF_TABLE = Table(
    "ctf",
    (
        _KEY,
        field("defocus_u_angstrom", "DOUBLE NOT NULL"),
        field("defocus_v_angstrom", "DOUBLE NOT NULL"),
        field("defocus_angle_deg", "DOUBLE NOT NULL"),
        field("defocus_angstrom", "DOUBLE NOT NULL"),
        field("astigmatism_angstrom", "DOUBLE NOT NULL"),
        field("phase_shift_deg", "DOUBLE NOT NULL"),
        field("fit_resolution_angstrom", "DOUBLE"),
        field("figure_of_merit", "DOUBLE NOT NULL"),
        field("ice_thickness_nm", "DOUBLE"),
        field("ice_thickness_rings_nm", "DOUBLE"),
        field("ice_thickness_ice_ring_nm", "DOUBLE"),
        field("defocus_sigma_angstrom", "DOUBLE"),
        field("astigmatism_sigma_angstrom", "DOUBLE"),
        field("angle_sigma_deg", "DOUBLE"),
        field("phase_shift_sigma_deg", "DOUBLE"),
        field("ice_thickness_sigma_nm", "DOUBLE"),
        field("search_defocus_min_um", "DOUBLE NOT NULL"),
        field("search_defocus_max_um", "DOUBLE NOT NULL"),
        field("at_search_edge", "BOOLEAN NOT NULL"),
        field("supported", "BOOLEAN NOT NULL"),
        field("warnings", "JSON NOT NULL", json=True),
    ),
)
PICKING_TABLE = Table(
    "picking",
    (
        _KEY,
        field("n_particles", "INTEGER NOT NULL"),
        field("particle_diameter_angstrom", "DOUBLE NOT NULL"),
        field("picker", "VARCHAR NOT NULL"),
        field("mean_score", "DOUBLE"),
        field("box_px", "INTEGER"),
        field("excluded_fractions", "JSON", json=True),
        field("picks_excluded", "INTEGER"),
        field("threshold", "DOUBLE"),
    ),
)
# One row per particle: the writer gives every value (a pick is not a record of its own).
PICKS_TABLE = Table(
    "picks",
    (
        _EXPOSURE,
        Column("position", "INTEGER NOT NULL"),
        Column("x_px", "DOUBLE NOT NULL"),
        Column("y_px", "DOUBLE NOT NULL"),
        Column("score", "DOUBLE NOT NULL"),
    ),
    primary_key=("exposure_id", "position"),
)
FLAGS_TABLE = Table(
    "flags",
    (
        _EXPOSURE,
        Column("position", "INTEGER NOT NULL"),
        field("code", "VARCHAR NOT NULL"),
        field("severity", "VARCHAR NOT NULL CHECK (severity IN ('fail', 'warn'))"),
        field("message", "VARCHAR NOT NULL"),
        field("value", "DOUBLE"),
        Column("limit_value", "DOUBLE", "limit"),
    ),
    primary_key=("exposure_id", "position"),
)
RESULTS_TABLE = Table(
    "results",
    (
        _EXPOSURE,
        Column("stage", "VARCHAR NOT NULL"),
        Column("params_hash", "VARCHAR NOT NULL"),
        Column("run_id", "INTEGER"),
        Column("committed_at", "TIMESTAMP NOT NULL"),
        Column("record_json", "JSON NOT NULL", _itself, json=True),
    ),
    primary_key=("exposure_id", "stage", "params_hash"),
)
QUARANTINE_TABLE = Table(
    "quarantine",
    (
        Column("id", "BIGINT PRIMARY KEY DEFAULT nextval('quarantine_id')"),
        Column("exposure_id", "VARCHAR"),
        Column("origin", "VARCHAR NOT NULL"),
        Column("code", "VARCHAR NOT NULL"),
        Column("reason", "VARCHAR NOT NULL"),
        Column("run_id", "INTEGER"),
        Column("quarantined_at", "TIMESTAMP NOT NULL"),
    ),
    sequence="quarantine_id",
)
EVENTS_TABLE = Table(
    "events",
    (
        Column("id", "BIGINT PRIMARY KEY DEFAULT nextval('event_id')"),
        Column("logged_at", "TIMESTAMP NOT NULL"),
        Column("run_id", "INTEGER"),
        Column("kind", "VARCHAR NOT NULL"),
        Column("message", "VARCHAR NOT NULL"),
        Column("data", "JSON NOT NULL", json=True),
    ),
    sequence="event_id",
)
LABELS_TABLE = Table(
    "labels",
    (
        Column("id", "BIGINT PRIMARY KEY DEFAULT nextval('label_id')"),
        _EXPOSURE,
        Column("label", "VARCHAR NOT NULL CHECK (label IN ('accept', 'reject'))"),
        Column("labelled_at", "TIMESTAMP NOT NULL"),
        Column("labelled_by", "VARCHAR NOT NULL"),
    ),
    sequence="label_id",
)
# Read from CausalInputs; ``seq`` numbers the rows in commit order.
CAUSAL_INPUTS_TABLE = Table(
    "causal_inputs",
    (
        _KEY,
        Column("seq", "BIGINT NOT NULL DEFAULT nextval('causal_seq')"),
        field("ice_thickness_nm", "DOUBLE NOT NULL"),
        field("dose_e_per_a2", "DOUBLE NOT NULL"),
        field("total_drift_px", "DOUBLE NOT NULL"),
        field("defocus_um", "DOUBLE NOT NULL"),
        field("astigmatism_angstrom", "DOUBLE NOT NULL"),
        field("image_shift_um", "DOUBLE"),
        field("beam_tilt_mrad", "DOUBLE NOT NULL"),
        field("n_particles", "INTEGER NOT NULL"),
        field("fit_resolution_angstrom", "DOUBLE NOT NULL"),
        field("ssnr_bfactor_angstrom2", "DOUBLE"),
    ),
    sequence="causal_seq",
)
# Read from a CausalUpdate (models.causal).
CAUSAL_TABLE = Table(
    "causal",
    (
        field("exposure_id", "VARCHAR PRIMARY KEY"),
        Column("model_index", "INTEGER NOT NULL", "index"),
        field("regime", "INTEGER NOT NULL"),
        field("regime_change", "BOOLEAN NOT NULL"),
        field("observed_resolution_angstrom", "DOUBLE NOT NULL"),
        field("best_resolution_angstrom", "DOUBLE NOT NULL"),
        field("predicted_loss_angstrom", "DOUBLE NOT NULL"),
        field("predicted_loss_sd_angstrom", "DOUBLE NOT NULL"),
        field("unexplained_angstrom", "DOUBLE NOT NULL"),
        field("dominant_cause", "VARCHAR"),
        field("converged", "BOOLEAN NOT NULL"),
    ),
)
# Read from a CauseShare.
CAUSAL_SHARES_TABLE = Table(
    "causal_shares",
    (
        _EXPOSURE,
        field("cause", "VARCHAR NOT NULL"),
        field("share_angstrom", "DOUBLE NOT NULL"),
        field("sd_angstrom", "DOUBLE NOT NULL"),
    ),
    primary_key=("exposure_id", "cause"),
)
# Read from a RankedCause.
CAUSAL_RANKING_TABLE = Table(
    "causal_ranking",
    (
        Column("model_index", "INTEGER NOT NULL"),
        field("cause", "VARCHAR NOT NULL"),
        field("rank", "INTEGER NOT NULL"),
        field("mean_angstrom", "DOUBLE NOT NULL"),
        field("sd_angstrom", "DOUBLE NOT NULL"),
        field("p_top", "DOUBLE NOT NULL"),
        field("weight_mean", "DOUBLE NOT NULL"),
        field("weight_sd", "DOUBLE NOT NULL"),
        field("tolerance", "DOUBLE NOT NULL"),
        field("observed", "BOOLEAN NOT NULL"),
        field("converged", "BOOLEAN NOT NULL"),
        field("advice", "VARCHAR NOT NULL"),
        _EXPOSURE,
    ),
    primary_key=("model_index", "cause"),
)


#: The tables' declarations, in the order they are created.
TABLE_SPECS: tuple[Table, ...] = (
    SCHEMA_VERSION_TABLE,
    SESSION_TABLE,
    RUNS_TABLE,
    EXPOSURES_TABLE,
    MOTION_TABLE,
    CTF_TABLE,
    PICKING_TABLE,
    PICKS_TABLE,
    FLAGS_TABLE,
    RESULTS_TABLE,
    QUARANTINE_TABLE,
    EVENTS_TABLE,
    LABELS_TABLE,
    CAUSAL_INPUTS_TABLE,
    CAUSAL_TABLE,
    CAUSAL_SHARES_TABLE,
    CAUSAL_RANKING_TABLE,
    EVALUATIONS_TABLE,
    CLASS_SETS_TABLE,
    CLASSES_TABLE,
    CLASS_LABELS_TABLE,
    RECONSTRUCTIONS_TABLE,
    FORECASTS_TABLE,
    REPRO_TABLE,
    TRIAGE_TABLE,
    SCORES_TABLE,
    OBLIGATIONS_TABLE,
    SCORE_WEIGHTS_TABLE,
)
_BY_NAME = {t.name: t for t in TABLE_SPECS}

#: The tables, in the order they are created.
TABLES: tuple[str, ...] = tuple(_BY_NAME)
#: The views (:mod:`causalscope.daemon.client.views`), created after the tables.
VIEW_NAMES: tuple[str, ...] = tuple(v.name for v in VIEWS)

#: Columns of type JSON per table: decoded when rows are published.
JSON_COLUMNS = decode_map(TABLE_SPECS)


def table(name: str) -> Table:
    """The declaration of table ``name``."""
    return _BY_NAME[name]
