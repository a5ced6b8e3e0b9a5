"""What a running session publishes and what its views return, typed once.

Each model is one message's (or one view row's) shape as JSON carries it: times are ISO text,
a number that is NaN or missing is null. The store publishes ``[topic, json]`` messages on its
PUB socket (:data:`TOPICS` names the model of each topic's payload); the dashboard's history
comes from the schema's views (:mod:`causalscope.daemon.client.views`), whose rows have the
same shapes. Models accept fields they do not know (a dashboard older than the daemon still
reads its rows) and refuse rows that lack a field they need.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "TOPICS",
    "Alert",
    "AlertData",
    "CausalUpdate",
    "CausalVerdict",
    "Cause",
    "CauseShare",
    "ClassLabel",
    "ClassRow",
    "ClassSet",
    "CtfRow",
    "EvaluationUpdate",
    "Event",
    "ExposureRow",
    "FlagRow",
    "Forecast",
    "Label",
    "MapRow",
    "MotionRow",
    "Obligation",
    "PickingRow",
    "QuarantineRow",
    "ReconstructionStatus",
    "Score",
    "Status",
    "WorkerHealth",
    "parse_payload",
]

#: A measured number: null where it is NaN or was not measured.
Number = float | None


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class MotionRow(_Wire):
    """An exposure's ``motion`` row (see the schema), without its ``exposure_id``.

    ``shifts_px`` (per frame) is published with a commit and left out of the history.
    """

    total_drift_px: Number
    max_frame_shift_px: Number
    accumulated_motion_total_angstrom: Number
    accumulated_motion_early_angstrom: Number
    accumulated_motion_late_angstrom: Number
    local_motion_rms_px: Number
    patches_x: int | None
    patches_y: int | None
    measured_dose_e_per_a2: Number
    n_defect_pixels: int
    n_hot_pixels: int
    iterations: int
    shifts_px: list[list[Number]] | None = None


class CtfRow(_Wire):
    """An exposure's ``ctf`` row (see the schema), without its ``exposure_id``."""

    defocus_u_angstrom: Number
    defocus_v_angstrom: Number
    defocus_angle_deg: Number
    defocus_angstrom: Number
    astigmatism_angstrom: Number
    phase_shift_deg: Number
    fit_resolution_angstrom: Number
    figure_of_merit: Number
    ice_thickness_nm: Number
    ice_thickness_rings_nm: Number
    ice_thickness_ice_ring_nm: Number
    defocus_sigma_angstrom: Number
    astigmatism_sigma_angstrom: Number
    angle_sigma_deg: Number
    phase_shift_sigma_deg: Number
    ice_thickness_sigma_nm: Number
    search_defocus_min_um: Number
    search_defocus_max_um: Number
    at_search_edge: bool
    supported: bool
    warnings: list[str]


class PickingRow(_Wire):
    """An exposure's ``picking`` row (see the schema), without its ``exposure_id``."""

    n_particles: int
    particle_diameter_angstrom: Number
    picker: str
    mean_score: Number
    box_px: int | None
    excluded_fractions: dict[str, float] | None = None
    picks_excluded: int | None = None
    threshold: Number = None


class FlagRow(_Wire):
    """One of the sanity gate's findings (a ``flags`` row without its key)."""

    code: str
    severity: Literal["fail", "warn"]
    message: str
    value: Number
    limit_value: Number


class ExposureRow(_Wire):
    """One exposure as the dashboard shows it: its ``exposures`` row with its ``motion``,
    ``ctf`` and ``picking`` rows (null when it has none) and its gate ``flags`` (a list).

    Published on ``exposure`` after each commit; the view ``exposure_rows`` holds every one.
    """

    exposure_id: str
    movie_path: str
    source: Literal["watcher", "stream"] | None
    metadata_path: str | None
    state: Literal["seen", "done", "quarantined"]
    gate_status: Literal["pass", "warn", "fail"] | None
    seen_at: str
    done_at: str | None
    latency_s: Number
    n_frames: int | None
    pixel_size_angstrom: Number
    voltage_kv: Number
    cs_mm: Number
    amplitude_contrast: Number
    dose_e_per_a2: Number
    device: str | None
    attempts: int
    outputs: dict[str, Any] | None
    timings_s: dict[str, Number] | None
    problems: list[str] | None
    acquisition: dict[str, Any] | None
    motion: MotionRow | None
    ctf: CtfRow | None
    picking: PickingRow | None
    flags: list[FlagRow]


class Event(_Wire):
    """One entry of the session's log (an ``events`` row), published on ``event``.

    Alerts are the events of kind ``alert``; their ``data`` holds ``code``, ``severity``
    (``warn`` or ``fail``), ``advice`` and ``exposure_id``.
    """

    id: int
    logged_at: str
    run_id: int | None = None
    kind: str
    message: str
    data: dict[str, Any]


class AlertData(_Wire):
    """What an alert says beyond its message: its code, severity, advice and exposure."""

    code: str
    severity: Literal["warn", "fail"]
    advice: str
    exposure_id: str | None = None


class Alert(_Wire):
    """An event of kind ``alert`` (a row of the view ``alerts``), with its data typed."""

    id: int
    logged_at: str
    run_id: int | None = None
    kind: Literal["alert"]
    message: str
    data: AlertData


class Label(_Wire):
    """An operator's verdict (a ``labels`` row), published on ``label``."""

    id: int
    exposure_id: str
    label: Literal["accept", "reject"]
    labelled_at: str
    labelled_by: str


class QuarantineRow(_Wire):
    """A rejected input (a ``quarantine`` row), published on ``quarantine``."""

    id: int
    exposure_id: str | None
    origin: str
    code: str
    reason: str
    run_id: int | None
    quarantined_at: str


class ReconstructionStatus(_Wire):
    """The running reconstructions in the session's status: the latest update's ``version``
    (None before the first) and ``particles``, the exposures handed to the evaluator and not
    yet taken (``backlog``), and the new particles that trigger the next update
    (``update_every``, raised when updates take long)."""

    version: int | None
    particles: int
    backlog: int
    update_every: int


class WorkerHealth(_Wire):
    """The exposure actors in a running session's status: the number the pool keeps
    (``configured``, 0 before the first movie makes the pool) and of those ``alive`` (started,
    and no call to them failed since); the actors replaced in this run after Ray failed them
    (``replaced_after_failure``) and between exposures for their memory
    (``recycled_for_memory``); the exposure attempts Ray failed in this run by failure code
    (``failures``: ``out_of_memory``, ``actor_died``, ``node_died``, ``object_lost``, ...); and
    each slot's resident memory after its latest exposure (``memory_bytes``, null where not
    measured)."""

    configured: int
    alive: int
    replaced_after_failure: int
    recycled_for_memory: int
    failures: dict[str, int]
    memory_bytes: list[int | None]


class Status(_Wire):
    """The session's status: published every second on ``status``, answered by the control
    action ``status``, and made from the counts for a finished session (``finished``, with no
    ``worker_health``)."""

    session: str
    elapsed_s: float
    seen: int
    done: int
    passed: int = Field(alias="pass")
    warn: int
    fail: int
    quarantined: int
    queue: int
    in_flight: int
    workers: str
    devices: str
    paused: bool
    acquisition_per_min: Number
    processing_per_min: Number
    keeping_up: bool | None
    thresholds: dict[str, float] | None = None
    finished: bool = False
    reconstruction: ReconstructionStatus | None = None
    worker_health: WorkerHealth | None = None
    picker: str | None = None  # with picker labels: which picker picks, and the last round


class Cause(_Wire):
    """One cause in the causal model's ranking (the view ``latest_causes``)."""

    cause: str
    rank: int
    mean_angstrom: Number
    sd_angstrom: Number
    p_top: Number
    weight_mean: Number
    weight_sd: Number
    tolerance: Number
    observed: bool
    converged: bool
    advice: str


class CauseShare(_Wire):
    """One cause's share of an exposure's lost resolution."""

    cause: str
    share_angstrom: Number
    sd_angstrom: Number


class CausalVerdict(_Wire):
    """The causal model's verdict on one exposure (the view ``causal_verdicts``)."""

    exposure_id: str
    index: int
    regime: int
    regime_change: bool
    observed_resolution_angstrom: Number
    best_resolution_angstrom: Number
    predicted_loss_angstrom: Number
    predicted_loss_sd_angstrom: Number
    unexplained_angstrom: Number
    dominant_cause: str | None
    converged: bool
    shares: list[CauseShare]


class CausalUpdate(CausalVerdict):
    """A verdict with the session's ranking as it stands, published on ``causal``."""

    ranking: list[Cause]


class ClassRow(_Wire):
    """One 2D class of an update (a ``classes`` row without ``version`` and ``image``).

    ``selected`` is ``auto_selected`` unless the operator's ``label`` (``select`` or
    ``reject``, as it stood at the update) overrides it.
    """

    class_index: int
    particles: int
    effective_sample_size: float
    resolution_angstrom: Number
    junk_score: float
    auto_selected: bool
    selected: bool
    label: Literal["select", "reject"] | None
    #: against the novelty index (null without one, and in files before schema 5)
    novelty: Number = None
    nearest: str | None = None
    nearest_kind: Literal["structure", "junk"] | None = None
    structure_distance: Number = None
    junk_distance: Number = None
    recommendation: Literal["accept", "reject", "look"] | None = None
    reason: str | None = None


class ClassSet(_Wire):
    """The 2D classes of an update (a ``class_sets`` row with its ``classes``).

    ``gallery_path`` is a PNG of the averages ten to a row (see
    :func:`~.gallery.gallery_tiles`); ``classes`` may be left out where only the counts are
    wanted (the history).
    """

    n_classes: int
    particles: int
    selected_particles: int
    pixel_size_angstrom: float
    averages_path: str
    gallery_path: str
    model_star_path: str
    selected_star_path: str
    classes: list[ClassRow] | None = None


class MapRow(_Wire):
    """The 3D map of an update (a ``reconstructions`` row without ``version``).

    ``fsc_masked`` and ``fsc_unmasked``: shell ``i`` at ``i / (2 (n - 1))`` cycles per pixel;
    left out where only the resolutions are wanted (the history). ``symmetry_correlations``:
    the reference's self-correlations under the symmetry (empty for C1 or without a
    reference; null in files written before schema 4).
    """

    particles: int
    symmetry: str
    pixel_size_angstrom: float
    resolution_angstrom: Number
    resolution_unmasked_angstrom: Number
    resolution_fsc_05_angstrom: Number
    fsc_masked: list[Number] | None = None
    fsc_unmasked: list[Number] | None = None
    half_map_1: str
    half_map_2: str
    map_path: str
    fsc_star_path: str
    coverage: float
    largest_gap_deg: float
    symmetry_correlations: list[float] | None = None
    initial_model: str | None = None
    ab_initio: bool | None = None
    novelty: Number = None
    nearest: str | None = None


class Forecast(_Wire):
    """Resolution against particles at an update (a ``forecasts`` row without ``version``)."""

    particles: int
    bfactor_angstrom2: Number
    bfactor_sd_angstrom2: Number
    ssnr_bfactor_angstrom2: Number
    target_resolution_angstrom: float
    particles_needed: Number
    resolution_at_double_angstrom: Number
    particles_per_hour: Number
    hours_to_target: Number
    hours_left: Number = None
    particles_at_end: Number = None
    resolution_at_end_angstrom: Number = None
    p_reach_target: Number = None


class EvaluationUpdate(_Wire):
    """One update of the running reconstructions, published on ``evaluation`` (a row of the
    view ``evaluation_updates``): its classes, map and forecast, each null when it has none."""

    version: int
    particles: int
    exposures: int
    seconds: float
    class_set: ClassSet | None
    map: MapRow | None
    forecast: Forecast | None


class ClassLabel(_Wire):
    """An operator's select or reject of a 2D class (a ``class_labels`` row), published on
    ``class_label``; the evaluator applies it at its next update."""

    id: int
    class_index: int
    label: Literal["select", "reject"]
    labelled_at: str
    labelled_by: str


class Obligation(_Wire):
    """One physical-consistency obligation of a scored subject (an ``obligations`` row)."""

    name: str
    subject: str
    statement: str
    holds: bool
    message: str
    counterexample: dict[str, float]


class Score(_Wire):
    """The score of an exposure or a reconstruction update, published on ``score`` (a
    ``scores`` row with its obligations): the components of V (null where not measured),
    V, HyperScore and the term that held it down most."""

    kind: Literal["exposure", "reconstruction"]
    subject: str
    logic: Number
    novelty: Number
    impact: Number
    delta_repro: Number
    meta: Number
    v: Number
    v_without_meta: Number
    hyperscore: Number
    weakest: str | None
    terms: dict[str, float]
    weights: dict[str, float]
    n_particles: int
    weighted_particles: float
    contribution_angstrom: Number = None
    recommendation: Literal["accept", "reject", "look"] | None
    reason: str
    obligations: list[Obligation]


#: The model of each published topic's payload.
TOPICS: dict[str, type[_Wire]] = {
    "exposure": ExposureRow,
    "event": Event,
    "label": Label,
    "quarantine": QuarantineRow,
    "causal": CausalUpdate,
    "status": Status,
    "evaluation": EvaluationUpdate,
    "class_label": ClassLabel,
    "score": Score,
}


def parse_payload(topic: str, payload: dict[str, Any]) -> BaseModel | None:
    """``payload`` as its topic's model; None when it does not fit (or the topic is unknown)."""
    model = TOPICS.get(topic)
    if model is None:
        return None
    try:
        return model.model_validate(payload)
    except ValidationError:
        return None
