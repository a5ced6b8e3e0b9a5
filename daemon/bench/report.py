"""The report's benchmark: a synthetic session of ``n`` exposures, its report's size and the
time to render it.

The session is written through the store's own writer (:class:`SessionStore`): each exposure's
record (motion, CTF, picks, EPU-like metadata with image shifts in a 3 x 3 multishot pattern),
the causal model's update (the real model, in this process) and the score (the real scorer).
Its quality is drawn from a known mix: ice thickness and drift vary, a third of the grid has
thick ice. Every ``n // 5`` exposures (at least 10) the running reconstructions update: 20 2D
classes (the 5 with the highest junk score rejected) and a map whose FSC falls as
``1 / (1 + exp((k - k_0) / 0.02))`` (``k`` in 1/A), ``k_0`` growing with the square root of the
particles, and its 0.143 resolution. Every record points to the same pair of 512 x 512
thumbnails, as big as the pipeline's, so the report embeds pictures of the real size without
writing ``n`` of them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["make_report_session", "run_report_bench"]


def _record(i: int, rng: np.random.Generator, thumbnails: dict[str, str]) -> Any:
    from causalscope.models.records import (
        AcquisitionMetadata,
        CtfRecord,
        ExposureRecord,
        GateFlag,
        MotionRecord,
        PickingRecord,
    )

    ice = float(rng.normal(90.0 if (i // 50) % 3 == 2 else 40.0, 8.0))
    drift = float(abs(rng.normal(4.0, 2.0)))
    defocus = float(rng.uniform(8_000.0, 20_000.0))
    fit = float(3.2 + 0.02 * max(ice - 30.0, 0.0) + 0.15 * drift + rng.normal(0.0, 0.2))
    status = "fail" if ice > 100.0 else "warn" if drift > 8.0 else "pass"
    flags = []
    if status == "fail":
        flags = [
            GateFlag(
                code="ice_thick",
                severity="fail",
                message=f"ice {ice:.0f} nm",
                value=ice,
                limit=100.0,
            )
        ]
    elif status == "warn":
        flags = [GateFlag(code="drift_high", severity="warn", message=f"drift {drift:.1f} px")]
    n_picks = int(rng.integers(20, 120))
    shift = ((i % 9) % 3 - 1.0 + rng.normal(0, 0.01), (i % 9) // 3 - 1.0 + rng.normal(0, 0.01))
    eid = f"FoilHole_{i // 9:06d}_Data_{i:06d}"
    return ExposureRecord(
        exposure_id=eid,
        movie_path=f"movies/{eid}.tiff",
        status=status,
        flags=flags,
        pixel_size_angstrom=0.83,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
        dose_e_per_a2=40.0,
        n_frames=40,
        metadata=AcquisitionMetadata(
            source_path=f"meta/{eid}.xml", source_format="epu", image_shift=shift, beam_shift=shift
        ),
        motion=MotionRecord(
            shifts_px=[[drift * k / 39, -0.5 * drift * k / 39] for k in range(40)],
            local_motion_rms_px=0.3,
            patches=(5, 4),
            accumulated_motion_total_angstrom=drift * 0.83,
            accumulated_motion_early_angstrom=0.6 * drift * 0.83,
            accumulated_motion_late_angstrom=0.4 * drift * 0.83,
            total_drift_px=drift,
            max_frame_shift_px=drift / 20,
            measured_dose_e_per_a2=40.0,
            n_hot_pixels=3,
            iterations=5,
        ),
        ctf=CtfRecord(
            defocus_u_angstrom=defocus + 150.0,
            defocus_v_angstrom=defocus - 150.0,
            defocus_angle_deg=float(rng.uniform(0, 180)),
            fit_resolution_angstrom=fit,
            figure_of_merit=0.25,
            ice_thickness_nm=max(ice, 5.0),
            defocus_sigma_angstrom=20.0,
            search_defocus_min_um=0.5,
            search_defocus_max_um=5.0,
        ),
        picking=PickingRecord(
            n_particles=n_picks,
            particle_diameter_angstrom=150.0,
            picks_xy_px=[[100.0 + 200 * (k % 19), 100.0 + 200 * (k // 19)] for k in range(n_picks)],
            scores=rng.uniform(0.2, 1.0, n_picks).tolist(),
        ),
        outputs={
            "dose_weighted_sum": f"micrographs/{eid}_DW.mrc",
            "thumbnail": thumbnails["thumbnail"],
            "power_spectrum_thumbnail": thumbnails["power_spectrum_thumbnail"],
        },
        timings_s={"motion": 0.5, "ctf": 0.25},
        device="cpu",
    )


def make_report_session(path: Path, n: int, *, seed: int = 0) -> dict[str, float]:
    """Write a finished session of ``n`` exposures to ``path`` (see the module docstring);
    seconds spent committing, by part."""
    from causalscope.actors.causal import CausalPriorWorker
    from causalscope.config import ScoringSettings, load_settings
    from causalscope.daemon.formats.png import write_png
    from causalscope.daemon.scoring import ScoreKeeper
    from causalscope.daemon.session import software_version
    from causalscope.daemon.store import SessionStore
    from causalscope.models.causal import causal_inputs

    rng = np.random.default_rng(seed)
    folder = path.parent / "thumbnails"
    thumbnails = {
        "thumbnail": str(
            write_png(folder / "micrograph.png", rng.integers(0, 256, (512, 512), dtype=np.uint8))
        ),
        "power_spectrum_thumbnail": str(
            write_png(folder / "spectrum.png", rng.integers(0, 256, (512, 512), dtype=np.uint8))
        ),
    }
    settings = load_settings()
    worker = CausalPriorWorker(discount=settings.processing.causal.discount)
    # a gallery of 20 noisy 64 px "averages", 10 to a row, as the classifier writes it
    write_png(folder / "classes.png", rng.integers(0, 256, (2 * 66, 10 * 66), dtype=np.uint8))
    particles, versions = 0, list[int]()
    times = {"commit_s": 0.0, "causal_s": 0.0, "score_s": 0.0}
    with SessionStore(path) as store:
        store.start_run(
            settings_json=settings.model_dump_json(),
            version=software_version(),
            command_line=["causalscope", "bench", "report", "--n", str(n)],
            params_hash="bench",
        )
        keeper = ScoreKeeper(ScoringSettings(), store, lambda alert: None)
        for i in range(n):
            record = _record(i, rng, thumbnails)
            t0 = time.perf_counter()
            store.commit_exposure(record, params_hash="bench")
            t1 = time.perf_counter()
            inputs = causal_inputs(
                ctf=record.ctf,
                motion=record.motion,
                dose_e_per_a2=record.dose_e_per_a2,
                metadata=record.metadata,
                n_particles=record.picking.n_particles if record.picking else None,
                ssnr_bfactor_angstrom2=None,
                beam_tilt_mrad_per_um=settings.processing.causal.beam_tilt_mrad_per_um,
            )
            if inputs is not None and record.status != "fail":
                store.commit_causal(worker.observe(record.exposure_id, inputs))
            t2 = time.perf_counter()
            keeper.exposure(record)
            t3 = time.perf_counter()
            times["commit_s"] += t1 - t0
            times["causal_s"] += t2 - t1
            times["score_s"] += t3 - t2
            if (i + 1) % max(n // 5, 10) == 0:
                particles += 60 * max(n // 5, 10)
                store.commit_evaluation(_evaluation(len(versions) + 1, particles, i + 1, folder))
                versions.append(particles)
    return times


def _evaluation(version: int, particles: int, exposures: int, folder: Path) -> Any:
    """A running-reconstruction update with known FSC (see the module docstring)."""
    from causalscope.actors._evaluation_results import (
        ClassRow,
        ClassSetUpdate,
        EvaluationUpdate,
        MapUpdate,
    )

    pixel, shells = 1.66, 60
    k = np.arange(shells) / (2 * (shells - 1)) / pixel  # shell i at i / (2 (n - 1)) cycles/px
    k0 = 0.05 * math.sqrt(particles / 1000.0)
    fsc = 1.0 / (1.0 + np.exp((k - k0) / 0.02))
    resolution = 1.0 / (k0 + 0.02 * math.log(1 / 0.143 - 1))
    junk = np.linspace(0.0, 0.95, 20)
    classes = tuple(
        ClassRow(
            class_index=c,
            particles=int(particles * (1 - junk[c]) / 12),
            effective_sample_size=float(particles / 40),
            resolution_angstrom=12.0 + 10 * float(junk[c]),
            junk_score=float(junk[c]),
            auto_selected=c < 15,
            selected=c < 15,
            label=None,
        )
        for c in range(20)
    )
    return EvaluationUpdate(
        version=version,
        particles=particles,
        exposures=exposures,
        seconds=1.0,
        class_set=ClassSetUpdate(
            n_classes=20,
            particles=particles,
            selected_particles=sum(c.particles for c in classes if c.selected),
            pixel_size_angstrom=pixel,
            averages_path=str(folder / "class_averages.mrcs"),
            gallery_path=str(folder / "classes.png"),
            model_star_path=str(folder / "model.star"),
            selected_star_path=str(folder / "selected.star"),
            classes=classes,
        ),
        map=MapUpdate(
            particles=particles,
            symmetry="C1",
            pixel_size_angstrom=pixel,
            resolution_angstrom=resolution,
            resolution_unmasked_angstrom=resolution * 1.1,
            resolution_fsc_05_angstrom=1.0 / k0,
            fsc_masked=tuple(float(v) for v in fsc),
            fsc_unmasked=tuple(float(v) for v in fsc * 0.9),
            half_map_1=str(folder / "half1.mrc"),
            half_map_2=str(folder / "half2.mrc"),
            map_path=str(folder / "map.mrc"),
            fsc_star_path=str(folder / "postprocess.star"),
            coverage=0.9,
            largest_gap_deg=12.0,
        ),
        forecast=None,
    )


def run_report_bench(*, n: int = 1000, folder: Path | None = None) -> dict[str, Any]:
    """Make the session, render its report; the report's size and the time to render it."""
    import tempfile

    from causalscope.daemon.report import render_report

    with tempfile.TemporaryDirectory() as tmp:
        where = Path(folder or tmp)
        session = where / "report_bench.duckdb"
        t0 = time.perf_counter()
        parts = make_report_session(session, n)
        made = time.perf_counter() - t0
        t1 = time.perf_counter()
        text = render_report(session)
        render = time.perf_counter() - t1
    size = len(text.encode("utf-8"))
    summary = {
        "exposures": n,
        "report_bytes": size,
        "render_s": round(render, 3),
        "session_s": round(made, 1),
    }
    return {"summary": summary, "session_parts_s": {k: round(v, 1) for k, v in parts.items()}}
