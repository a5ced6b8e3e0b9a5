"""A deterministic recorded session for the dashboard's tests: fixed times, fixed pictures, and
the causal model's verdicts learned from the exposures by the daemon's own model.

The CTF fit resolution follows ``d**2 = 12 + 0.3 (ice - 35) + 0.12 drift + 1.5 (defocus - 1.18)``
(A^2, nm, px, um) with a small deterministic wobble: ice varies from the start and two squares
at the end are thick (150 and 190 nm), so ice thickness is the cause that costs the most; dose,
astigmatism and beam tilt do not vary (not observed). The running reconstructions' five updates
and the operator's class labels come from :mod:`tests.tui._reconstruction`.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from causalscope.daemon.formats.png import write_png
from causalscope.daemon.store import SessionStore
from causalscope.models.causal import SessionCausalModel
from causalscope.models.records import CausalInputs
from causalscope.tui.source import RecordedSource, Snapshot
from tests.daemon.store._records import fail_flag, make_record, warn_flag
from tests.tui._reconstruction import store_evaluations

N_EXPOSURES = 24
START = dt.datetime(2024, 5, 1, 9, 0, 0)

STATUS: dict[str, Any] = {
    "session": "apoferritin",
    "elapsed_s": 1234.0,
    "seen": 25,
    "done": 24,
    "pass": 17,
    "warn": 4,
    "fail": 3,
    "quarantined": 0,
    "queue": 1,
    "in_flight": 2,
    "workers": "2 actors",
    "devices": "cuda:0 cuda:1",
    "paused": False,
    "acquisition_per_min": 1.2,
    "processing_per_min": 1.3,
    "keeping_up": True,
    "reconstruction": {"version": 5, "particles": 12_300, "backlog": 1, "update_every": 2_500},
    "thresholds": {
        "ctf_fit_resolution_angstrom": 6.0,
        "total_drift_px": 30.0,
        "ice_thickness_nm": 80.0,
    },
}

ALERTS: list[dict[str, Any]] = [
    {
        "id": 1,
        "logged_at": "2024-05-01T09:15:00",
        "kind": "alert",
        "message": "Ice thickening: 59 -> 190 nm over the last 3 exposures",
        "data": {
            "code": "ice_trend",
            "severity": "warn",
            "advice": "Move to a square with thinner ice (brighter in the atlas).",
            "exposure_id": "FoilHole_3001_Data_0024",
        },
    },
    {
        "id": 2,
        "logged_at": "2024-05-01T09:20:00",
        "kind": "alert",
        "message": "CTF fit resolution worse than 6 A on 2 of the last 5",
        "data": {
            "code": "fit_resolution_falling",
            "severity": "fail",
            "advice": "Check the ice and the objective aperture; re-tune coma-free alignment.",
            "exposure_id": "FoilHole_3001_Data_0023",
        },
    },
]


def exposure_id(i: int) -> str:
    """The id of the ``i``-th exposure (0-based)."""
    return f"FoilHole_3001_Data_{i + 1:04d}"


def picture(size: int, seed: int, rings: bool) -> np.ndarray:
    """A deterministic grey picture: blobs (a micrograph) or rings (a power spectrum)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) - size / 2
    if rings:
        r = np.hypot(x, y)
        image = 0.5 + 0.5 * np.cos(r**2 / (6.0 + seed))
    else:
        image = np.zeros((size, size))
        for k in range(6):
            cx, cy = (17 * (k + seed)) % size - size / 2, (29 * (k + 2 * seed)) % size - size / 2
            image += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 40.0)
    return (255 * (image - image.min()) / (np.ptp(image) or 1)).astype(np.uint8)


def causal_inputs(i: int) -> CausalInputs:
    """The ``i``-th exposure's factors and CTF fit resolution (see the module docstring)."""
    ice = 35.0 + 8.0 * ((3 * i) % 5)
    if i in (22, 23):
        ice = (150.0, 190.0)[i - 22]
    drift = 41.0 if i == 12 else 3.0 + (i % 5)
    defocus = 1.18 + 0.04 * (i % 6)
    d2 = 12.0 + 0.3 * (ice - 35.0) + 0.12 * drift + 1.5 * (defocus - 1.18) + 0.3 * math.sin(1.7 * i)
    return CausalInputs(
        ice_thickness_nm=ice,
        dose_e_per_a2=40.0,
        total_drift_px=drift,
        defocus_um=defocus,
        astigmatism_angstrom=400.0,
        beam_tilt_mrad=0.0,
        n_particles=150 + 10 * (i % 4),
        fit_resolution_angstrom=round(math.sqrt(d2), 2),
    )


def _store_rows(folder: Path) -> list[dict[str, Any]]:
    """Rows committed through a real SessionStore (the published shape), in order seen; each
    done exposure's causal update is stored too."""
    rows = []
    # a ranking after every exposure, so that the last one covers them all
    model = SessionCausalModel(ranking_every=1)
    with SessionStore(folder / "recorded.duckdb") as store:
        for i in range(N_EXPOSURES):
            eid = exposure_id(i)
            flags = []
            status = "pass"
            inputs = causal_inputs(i)
            ice = inputs.ice_thickness_nm
            drift = inputs.total_drift_px
            resolution = inputs.fit_resolution_angstrom
            if i in (6, 19):
                status = "warn"
                flags = [warn_flag("drift_early")]
            if i in (9, 21):
                status = "warn"
                flags = [warn_flag("astigmatism_high")]
            if i == 12:
                status = "fail"
                flags = [fail_flag("drift_high", drift, 30.0)]
            if i in (22, 23):
                status = "fail"
                flags = [fail_flag("ice_thick", ice, 80.0), warn_flag("fit_resolution_low")]
            outputs = {
                "aligned_sum": f"out/micrographs/{eid}.mrc",
                "thumbnail": str(folder / f"{eid}.png"),
                "power_spectrum_thumbnail": str(folder / f"{eid}_ps.png"),
            }
            record = make_record(
                eid,
                status=status,  # type: ignore[arg-type]
                defocus_u_angstrom=12_000.0 + 400.0 * (i % 6),
                defocus_v_angstrom=11_600.0 + 400.0 * (i % 6),
                fit_resolution_angstrom=resolution,
                ice_thickness_nm=ice,
                total_drift_px=drift,
                flags=flags,
                outputs=outputs,
            ).model_copy(update={"causal": inputs})
            store.commit_exposure(record, params_hash="h")
            store.commit_causal(model.observe(eid, inputs))
            row = store.exposure_row(eid)
            assert row is not None
            rows.append(row)
        store_evaluations(store, folder)
        store.record_seen(exposure_id(N_EXPOSURES), movie_path="movies/next.tiff", source="watcher")
        row = store.exposure_row(exposure_id(N_EXPOSURES))
        assert row is not None
        rows.append(row)
    for i, row in enumerate(rows):
        seen = START + dt.timedelta(seconds=50 * i)
        row["seen_at"] = seen.isoformat()
        done = seen + dt.timedelta(seconds=40)
        row["done_at"] = None if row["state"] == "seen" else done.isoformat()
        row["latency_s"] = None if row["state"] == "seen" else 12.5
        if row["motion"]:
            row["motion"].pop("shifts_px", None)
    for i in (N_EXPOSURES - 2, N_EXPOSURES - 1):
        eid = exposure_id(i)
        write_png(folder / f"{eid}.png", picture(96, i, rings=False))
        write_png(folder / f"{eid}_ps.png", picture(96, i, rings=True))
    return rows


def live_causal_update(drift_px: float = 45.0) -> dict[str, Any]:
    """The ``causal`` message the daemon would publish next: the model replayed over the
    recorded exposures, then the pending one (``exposure_id(N_EXPOSURES)``) learned with
    ``drift_px`` of drift; JSON round-tripped as on the wire."""
    model = SessionCausalModel(ranking_every=1)
    for i in range(N_EXPOSURES):
        model.observe(exposure_id(i), causal_inputs(i))
    base = causal_inputs(N_EXPOSURES)
    d2 = base.fit_resolution_angstrom**2 + 0.12 * (drift_px - base.total_drift_px)
    inputs = base.model_copy(
        update={"total_drift_px": drift_px, "fit_resolution_angstrom": round(math.sqrt(d2), 2)}
    )
    update = model.observe(exposure_id(N_EXPOSURES), inputs)
    return dict(json.loads(json.dumps(update.to_dict())))


def recorded_snapshot(folder: Path) -> Snapshot:
    """The recorded session (24 done, 1 seen; 2 alerts; 2 labels; 24 causal verdicts; 5
    updates of the running reconstructions, 2 class labels)."""
    rows = _store_rows(folder)
    # the causal model's rows as the dashboard reads them from the file
    recorded = RecordedSource.open(folder / "recorded.duckdb").history()
    labels = {exposure_id(3): "accept", exposure_id(12): "reject"}
    return Snapshot(
        rows=rows,
        alerts=copy.deepcopy(ALERTS),
        labels=labels,
        status=copy.deepcopy(STATUS),
        causes=recorded.causes,
        causal=recorded.causal,
        evaluations=recorded.evaluations,
        class_set=recorded.class_set,
        reconstruction=recorded.reconstruction,
        class_labels=recorded.class_labels,
    )


class ActionLog:
    """A fake action sink that records the actions and answers like the daemon."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((action, dict(params)))
        return {"ok": True}


def recorded_source(snapshot: Snapshot, sink: ActionLog | None = None) -> RecordedSource:
    """A source on a copy of ``snapshot`` that looks live (actions go to ``sink``)."""
    return RecordedSource(copy.deepcopy(snapshot), name="apoferritin", action_sink=sink, live=True)
