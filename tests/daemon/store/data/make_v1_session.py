"""How ``v1_session.duckdb`` was made: by the code before the store was driven by table specs.

The file is a session database of schema version 1, written by causalscope as of commit 17142f6
(the last one before the ``causalscope`` package, when the folders imported as ``daemon``,
``models``, ...). It is kept so that the migration test opens a file that this code did not
write. To make it again, in a checkout of that commit::

    python -m daemon.cli simulate --out sim --n 4 --size 512 --frames 8 --seed 5
    for m in sim/Images-Disc1/GridSquare_1000/Data/*_fractions.tiff; do
        CAUSALSCOPE_DETECTOR__GAIN_REFERENCE=sim/gain_reference.mrc \\
            python -m daemon.cli process "$m" --out out --device cpu --json \\
            > "records/$(basename "$m" .tiff).json"
    done
    python make_v1_session.py records v1_session.duckdb
    python -m daemon.cli summary --json v1_session.duckdb > v1_session.summary.json
    python -m daemon.cli summary v1_session.duckdb > v1_session.summary.txt
    gzip -9 v1_session.duckdb

and ``v1_session.history.json`` is ``dataclasses.asdict`` of that code's
``tui.source.RecordedSource.open(...).history()`` (JSON, sorted keys). All of it ran with
``PYTHONPATH`` set to that checkout. The four records are real processing results (all four
fail the gate at this size: too few Thon rings); the causal inputs are made from each record's
own CTF and motion, and the causal model learns from them as the daemon would. One more exposure
is seen and left pending, one input is quarantined, and the session's log holds an alert.
This script imports the old top-level names, so it runs only in that checkout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from daemon.store import SessionStore  # type: ignore[import-not-found]
from models.causal import SessionCausalModel  # type: ignore[import-not-found]
from models.records import CausalInputs, ExposureRecord  # type: ignore[import-not-found]


def main(records: Path, out: Path) -> None:
    """Write the session ``out`` from the ``process --json`` outputs in ``records``."""
    model = SessionCausalModel(ranking_every=1)
    with SessionStore(out) as store:
        store.start_run(
            settings_json=json.dumps({"fixture": True}),
            version="0.1.0",
            command_line=["causalscope", "watch", "microscope"],
            params_hash="v1",
        )
        for path in sorted(records.glob("*.json")):
            data = json.loads(path.read_text())
            fields = {k: v for k, v in data.items() if k in ExposureRecord.model_fields}
            record = ExposureRecord.model_validate(fields)
            store.record_seen(record.exposure_id, movie_path=record.movie_path, source="watcher")
            ctf, motion = record.ctf, record.motion
            inputs = CausalInputs(
                ice_thickness_nm=ctf.ice_thickness_nm or 30.0,
                dose_e_per_a2=record.dose_e_per_a2 or 40.0,
                total_drift_px=motion.total_drift_px,
                defocus_um=ctf.defocus_angstrom / 1e4,
                astigmatism_angstrom=ctf.astigmatism_angstrom,
                fit_resolution_angstrom=ctf.fit_resolution_angstrom,
            )
            record = record.model_copy(update={"causal": inputs})
            store.commit_exposure(record, params_hash="v1", latency_s=2.5)
            store.commit_causal(model.observe(record.exposure_id, inputs))
        store.record_seen("pending_movie", movie_path="movies/pending.tiff", source="watcher")
        store.quarantine(
            exposure_id=None,
            origin="movies/broken.tiff",
            code="unreadable",
            reason="movies/broken.tiff: not a TIFF file",
        )
        store.log_event(
            "alert",
            "CTF fit resolution worse than 6 A on 4 of the last 5",
            code="fit_resolution_falling",
            severity="fail",
            advice="Check the ice and the objective aperture.",
            exposure_id=record.exposure_id,
        )
        store.add_label(record.exposure_id, "reject")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
