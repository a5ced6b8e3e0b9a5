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
    "CtfRow",
    "Event",
    "ExposureRow",
    "FlagRow",
    "Label",
    "MotionRow",
    "PickingRow",
    "QuarantineRow",
    "Status",
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


class Status(_Wire):
    """The session's status: published every second on ``status``, answered by the control
    action ``status``, and made from the counts for a finished session (``finished``)."""

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


#: The model of each published topic's payload.
TOPICS: dict[str, type[_Wire]] = {
    "exposure": ExposureRow,
    "event": Event,
    "label": Label,
    "quarantine": QuarantineRow,
    "causal": CausalUpdate,
    "status": Status,
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
