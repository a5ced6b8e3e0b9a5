"""The schema of a session database (``SESSION.duckdb``), version 1.

One DuckDB file per session; :class:`daemon.store.SessionStore` is its only writer. Times are
``TIMESTAMP`` in UTC (no time zone attached). Columns of type ``JSON`` hold text that DuckDB's
JSON functions read (``outputs->>'aligned_sum'``). Units are in the column names.

``schema_version``
    ``version`` (INTEGER): the schema version the file was written with; ``applied_at``.

``session`` (one row)
    ``name``: the session's name (the file's stem); ``created_at``.

``runs`` (one row per start of the daemon on this session)
    ``run_id`` (INTEGER, primary key, 1, 2, ...); ``started_at``; ``version``: causalscope's
    version; ``command_line`` (JSON list of the arguments); ``settings_json`` (JSON, the resolved
    settings); ``params_hash``: hash of the settings that change results.

``exposures`` (one row per exposure seen)
    ``exposure_id`` (primary key: the movie's stem or the stream's id); ``movie_path``;
    ``source`` ('watcher' | 'stream'; NULL when committed without having been recorded as
    seen); ``metadata_path`` (EPU XML or mdoc, or NULL); ``state`` ('seen': recorded, not yet
    committed | 'done' | 'quarantined'); ``gate_status`` ('pass' | 'warn' | 'fail', NULL until
    done); ``seen_at``; ``done_at`` (last commit); ``latency_s`` (from the source's decision that
    the movie was complete to the commit); ``n_frames``; ``pixel_size_angstrom`` (of the
    micrographs); ``voltage_kv``; ``cs_mm``; ``amplitude_contrast``; ``dose_e_per_a2`` (total
    dose used for dose weighting); ``device`` (where it was processed); ``attempts`` (processing
    attempts started; a crashed worker's exposure is retried); ``outputs`` (JSON object: written
    files by kind, e.g. ``aligned_sum``, ``dose_weighted_sum``, ``trajectory``); ``timings_s``
    (JSON object: seconds per stage); ``problems`` (JSON list: irregularities the source saw);
    ``acquisition`` (JSON object: the EPU/mdoc metadata, or NULL).

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
    ('blob' | 'template'); ``mean_score``; ``box_px`` (extraction box, NULL when not extracted).

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
"""

from __future__ import annotations

__all__ = ["SCHEMA_SQL", "SCHEMA_VERSION", "TABLES"]

#: Version of the schema below; stored in ``schema_version``.
SCHEMA_VERSION = 1

SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL,
    applied_at TIMESTAMP NOT NULL
)"""

SESSION_TABLE = """
CREATE TABLE IF NOT EXISTS session (
    name VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
)"""

RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY,
    started_at TIMESTAMP NOT NULL,
    version VARCHAR NOT NULL,
    command_line JSON NOT NULL,
    settings_json JSON NOT NULL,
    params_hash VARCHAR NOT NULL
)"""

EXPOSURES_TABLE = """
CREATE TABLE IF NOT EXISTS exposures (
    exposure_id VARCHAR PRIMARY KEY,
    movie_path VARCHAR NOT NULL,
    source VARCHAR CHECK (source IN ('watcher', 'stream')),
    metadata_path VARCHAR,
    state VARCHAR NOT NULL CHECK (state IN ('seen', 'done', 'quarantined')),
    gate_status VARCHAR CHECK (gate_status IN ('pass', 'warn', 'fail')),
    seen_at TIMESTAMP NOT NULL,
    done_at TIMESTAMP,
    latency_s DOUBLE,
    n_frames INTEGER,
    pixel_size_angstrom DOUBLE,
    voltage_kv DOUBLE,
    cs_mm DOUBLE,
    amplitude_contrast DOUBLE,
    dose_e_per_a2 DOUBLE,
    device VARCHAR,
    attempts INTEGER NOT NULL DEFAULT 0,
    outputs JSON,
    timings_s JSON,
    problems JSON,
    acquisition JSON
)"""

MOTION_TABLE = """
CREATE TABLE IF NOT EXISTS motion (
    exposure_id VARCHAR PRIMARY KEY,
    total_drift_px DOUBLE NOT NULL,
    max_frame_shift_px DOUBLE NOT NULL,
    accumulated_motion_total_angstrom DOUBLE NOT NULL,
    accumulated_motion_early_angstrom DOUBLE NOT NULL,
    accumulated_motion_late_angstrom DOUBLE NOT NULL,
    local_motion_rms_px DOUBLE,
    patches_x INTEGER,
    patches_y INTEGER,
    measured_dose_e_per_a2 DOUBLE,
    n_defect_pixels INTEGER NOT NULL,
    n_hot_pixels INTEGER NOT NULL,
    iterations INTEGER NOT NULL,
    shifts_px JSON NOT NULL
)"""

PICKING_TABLE = """
CREATE TABLE IF NOT EXISTS picking (
    exposure_id VARCHAR PRIMARY KEY,
    n_particles INTEGER NOT NULL,
    particle_diameter_angstrom DOUBLE NOT NULL,
    picker VARCHAR NOT NULL,
    mean_score DOUBLE,
    box_px INTEGER
)"""

PICKS_TABLE = """
CREATE TABLE IF NOT EXISTS picks (
    exposure_id VARCHAR NOT NULL,
    position INTEGER NOT NULL,
    x_px DOUBLE NOT NULL,
    y_px DOUBLE NOT NULL,
    score DOUBLE NOT NULL,
    PRIMARY KEY (exposure_id, position)
)"""

CTF_TABLE = """
CREATE TABLE IF NOT EXISTS ctf (
    exposure_id VARCHAR PRIMARY KEY,
    defocus_u_angstrom DOUBLE NOT NULL,
    defocus_v_angstrom DOUBLE NOT NULL,
    defocus_angle_deg DOUBLE NOT NULL,
    defocus_angstrom DOUBLE NOT NULL,
    astigmatism_angstrom DOUBLE NOT NULL,
    phase_shift_deg DOUBLE NOT NULL,
    fit_resolution_angstrom DOUBLE,
    figure_of_merit DOUBLE NOT NULL,
    ice_thickness_nm DOUBLE,
    ice_thickness_rings_nm DOUBLE,
    ice_thickness_ice_ring_nm DOUBLE,
    defocus_sigma_angstrom DOUBLE,
    astigmatism_sigma_angstrom DOUBLE,
    angle_sigma_deg DOUBLE,
    phase_shift_sigma_deg DOUBLE,
    ice_thickness_sigma_nm DOUBLE,
    search_defocus_min_um DOUBLE NOT NULL,
    search_defocus_max_um DOUBLE NOT NULL,
    at_search_edge BOOLEAN NOT NULL,
    supported BOOLEAN NOT NULL,
    warnings JSON NOT NULL
)"""

FLAGS_TABLE = """
CREATE TABLE IF NOT EXISTS flags (
    exposure_id VARCHAR NOT NULL,
    position INTEGER NOT NULL,
    code VARCHAR NOT NULL,
    severity VARCHAR NOT NULL CHECK (severity IN ('fail', 'warn')),
    message VARCHAR NOT NULL,
    value DOUBLE,
    limit_value DOUBLE,
    PRIMARY KEY (exposure_id, position)
)"""

RESULTS_TABLE = """
CREATE TABLE IF NOT EXISTS results (
    exposure_id VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    params_hash VARCHAR NOT NULL,
    run_id INTEGER,
    committed_at TIMESTAMP NOT NULL,
    record_json JSON NOT NULL,
    PRIMARY KEY (exposure_id, stage, params_hash)
)"""

QUARANTINE_TABLE = """
CREATE TABLE IF NOT EXISTS quarantine (
    id BIGINT PRIMARY KEY DEFAULT nextval('quarantine_id'),
    exposure_id VARCHAR,
    origin VARCHAR NOT NULL,
    code VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    run_id INTEGER,
    quarantined_at TIMESTAMP NOT NULL
)"""

EVENTS_TABLE = """
CREATE TABLE IF NOT EXISTS events (
    id BIGINT PRIMARY KEY DEFAULT nextval('event_id'),
    logged_at TIMESTAMP NOT NULL,
    run_id INTEGER,
    kind VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    data JSON NOT NULL
)"""

LABELS_TABLE = """
CREATE TABLE IF NOT EXISTS labels (
    id BIGINT PRIMARY KEY DEFAULT nextval('label_id'),
    exposure_id VARCHAR NOT NULL,
    label VARCHAR NOT NULL CHECK (label IN ('accept', 'reject')),
    labelled_at TIMESTAMP NOT NULL,
    labelled_by VARCHAR NOT NULL
)"""


CAUSAL_INPUTS_TABLE = """
CREATE TABLE IF NOT EXISTS causal_inputs (
    exposure_id VARCHAR PRIMARY KEY,
    seq BIGINT NOT NULL DEFAULT nextval('causal_seq'),
    ice_thickness_nm DOUBLE NOT NULL,
    dose_e_per_a2 DOUBLE NOT NULL,
    total_drift_px DOUBLE NOT NULL,
    defocus_um DOUBLE NOT NULL,
    astigmatism_angstrom DOUBLE NOT NULL,
    image_shift_um DOUBLE,
    beam_tilt_mrad DOUBLE NOT NULL,
    n_particles INTEGER NOT NULL,
    fit_resolution_angstrom DOUBLE NOT NULL,
    ssnr_bfactor_angstrom2 DOUBLE
)"""

CAUSAL_TABLE = """
CREATE TABLE IF NOT EXISTS causal (
    exposure_id VARCHAR PRIMARY KEY,
    model_index INTEGER NOT NULL,
    regime INTEGER NOT NULL,
    regime_change BOOLEAN NOT NULL,
    observed_resolution_angstrom DOUBLE NOT NULL,
    best_resolution_angstrom DOUBLE NOT NULL,
    predicted_loss_angstrom DOUBLE NOT NULL,
    predicted_loss_sd_angstrom DOUBLE NOT NULL,
    unexplained_angstrom DOUBLE NOT NULL,
    dominant_cause VARCHAR,
    converged BOOLEAN NOT NULL
)"""

CAUSAL_SHARES_TABLE = """
CREATE TABLE IF NOT EXISTS causal_shares (
    exposure_id VARCHAR NOT NULL,
    cause VARCHAR NOT NULL,
    share_angstrom DOUBLE NOT NULL,
    sd_angstrom DOUBLE NOT NULL,
    PRIMARY KEY (exposure_id, cause)
)"""

CAUSAL_RANKING_TABLE = """
CREATE TABLE IF NOT EXISTS causal_ranking (
    model_index INTEGER NOT NULL,
    cause VARCHAR NOT NULL,
    rank INTEGER NOT NULL,
    mean_angstrom DOUBLE NOT NULL,
    sd_angstrom DOUBLE NOT NULL,
    p_top DOUBLE NOT NULL,
    weight_mean DOUBLE NOT NULL,
    weight_sd DOUBLE NOT NULL,
    tolerance DOUBLE NOT NULL,
    observed BOOLEAN NOT NULL,
    converged BOOLEAN NOT NULL,
    advice VARCHAR NOT NULL,
    exposure_id VARCHAR NOT NULL,
    PRIMARY KEY (model_index, cause)
)"""

#: Statements that create the schema; each is idempotent (``IF NOT EXISTS``).
SCHEMA_SQL: tuple[str, ...] = (
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
    "CREATE SEQUENCE IF NOT EXISTS quarantine_id START 1",
    QUARANTINE_TABLE,
    "CREATE SEQUENCE IF NOT EXISTS event_id START 1",
    EVENTS_TABLE,
    "CREATE SEQUENCE IF NOT EXISTS label_id START 1",
    LABELS_TABLE,
    "CREATE SEQUENCE IF NOT EXISTS causal_seq START 1",
    CAUSAL_INPUTS_TABLE,
    CAUSAL_TABLE,
    CAUSAL_SHARES_TABLE,
    CAUSAL_RANKING_TABLE,
)

#: The tables, in the order they are created.
TABLES: tuple[str, ...] = (
    "schema_version",
    "session",
    "runs",
    "exposures",
    "motion",
    "ctf",
    "picking",
    "picks",
    "flags",
    "results",
    "quarantine",
    "events",
    "labels",
    "causal_inputs",
    "causal",
    "causal_shares",
    "causal_ranking",
)

#: Columns of type JSON per table: decoded when rows are published.
JSON_COLUMNS: dict[str, frozenset[str]] = {
    "runs": frozenset({"command_line", "settings_json"}),
    "exposures": frozenset({"outputs", "timings_s", "problems", "acquisition"}),
    "motion": frozenset({"shifts_px"}),
    "ctf": frozenset({"warnings"}),
    "results": frozenset({"record_json"}),
    "events": frozenset({"data"}),
}
