"""``bench pipeline --stages``: the exposure worker alone, stage by stage, on a small movie."""

from __future__ import annotations

from pathlib import Path

import pytest

from causalscope.daemon.bench.worker_stages import run_worker_stages_bench


def test_the_stage_bench_times_each_stage_and_checks_the_result_against_the_truth() -> None:
    report = run_worker_stages_bench(size=768, frames=10, n=1, device="cpu")
    summary = report["summary"]
    stages = summary["stages_s"]
    for stage in ("statistics", "motion", "motion.global", "motion.halves", "ctf", "write"):
        assert stages[stage] > 0.0, stage
    assert "upload" not in stages  # the host's frames are used where they are
    assert summary["upload_motion_ctf_s"] == pytest.approx(stages["motion"] + stages["ctf"])
    # the motion's parts are timed apart: Delta-Repro's half alignments are not "global"
    motion_parts = ("gain", "global", "halves", "local", "sums")
    assert sum(stages[f"motion.{k}"] for k in motion_parts) <= stages["motion"] + 0.01
    assert summary["upload_motion_ctf_without_halves_s"] == pytest.approx(
        summary["upload_motion_ctf_s"] - stages["motion.halves"], abs=2e-3
    )
    assert summary["movies_per_hour"] == round(3600 / summary["exposure_s"])
    # the stages run one after another, but for the files (written beside Delta-Repro)
    parts = sum(v for k, v in stages.items() if "." not in k and k != "write")
    assert summary["exposure_s"] >= 0.95 * parts
    # against the movie's truth (5-15 px of drift, 1.5 um defocus, 22 particles); measured
    # 0.09 px, 7 A and F1 1.0
    assert summary["global_error_px"] < 0.2
    assert abs(summary["defocus_error_angstrom"]) < 100
    assert summary["picks_f1"] >= 0.8
    assert all(run["status"] in ("pass", "warn") for run in report["runs"])


def test_the_stage_bench_runs_the_settings_of_a_file(tmp_path: Path) -> None:
    """``--config``: the worker writes float16 micrographs when the file says so, half the
    bytes of the default's."""
    config = tmp_path / "settings.toml"
    config.write_text("[processing]\nmicrographs_float16 = true\n", encoding="utf-8")
    default = run_worker_stages_bench(size=256, frames=4, n=1, device="cpu")
    halved = run_worker_stages_bench(size=256, frames=4, n=1, device="cpu", config=config)
    assert halved["settings"]["config"] == str(config)
    size = default["summary"]["micrographs_mib"]
    assert size >= 4 * 0.25  # the four sums at least, 0.25 MiB each as float32
    assert halved["summary"]["micrographs_mib"] == pytest.approx(size / 2, abs=0.05)


def test_the_stage_bench_needs_a_timed_run() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        run_worker_stages_bench(size=256, frames=4, n=0, device="cpu")
