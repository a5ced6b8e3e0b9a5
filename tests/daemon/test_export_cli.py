"""`causalscope export --selected`: only the accepted exposures (the operator's label first,
else the score's recommendation), their micrographs and particles, read back by starfile."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import starfile

from causalscope.config import ScoringSettings
from causalscope.daemon.cli import main
from causalscope.daemon.scoring import ScoreKeeper
from causalscope.daemon.store import SessionStore
from causalscope.models.records import PickingRecord
from tests.daemon.store._records import make_record


def _particles_star(path: Path, exposure_id: str, n: int, pixel: float) -> Path:
    optics = pd.DataFrame(
        {
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnOpticsGroup": [1],
            "rlnImagePixelSize": [pixel],
            "rlnVoltage": [300.0],
            "rlnImageSize": [64],
        }
    )
    particles = pd.DataFrame(
        {
            "rlnCoordinateX": [10.0 * i for i in range(n)],
            "rlnCoordinateY": [5.0] * n,
            "rlnImageName": [f"{i + 1}@{exposure_id}.mrcs" for i in range(n)],
            "rlnMicrographName": [f"{exposure_id}_DW.mrc"] * n,
            "rlnOpticsGroup": [1] * n,
        }
    )
    starfile.write({"optics": optics, "particles": particles}, path)
    return path


def test_export_selected_writes_only_the_accepted(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    session = tmp_path / "S.duckdb"
    # a: accepted by its score; b: broke an obligation (rejected); c: rejected by the operator
    # despite its score; d: broke an obligation but the operator accepted it (0.9 A/px optics)
    cases = {"a": (3.5, None, 1.0), "b": (1.2, None, 1.0), "c": (3.5, "reject", 1.0)}
    cases["d"] = (1.2, "accept", 0.9)
    picks = [[100.0 + 200.0 * i, 300.0] for i in range(6)]
    picking = PickingRecord(
        n_particles=6, particle_diameter_angstrom=120.0, picks_xy_px=picks, scores=[1.0] * 6
    )
    settings = ScoringSettings(accept_above=100.0)  # every score that breaks nothing accepts
    with SessionStore(session) as store:
        keeper = ScoreKeeper(settings, store, lambda alert: None)
        for eid, (fit, label, pixel) in cases.items():
            star = _particles_star(tmp_path / f"{eid}.star", eid, 6 if eid != "d" else 4, pixel)
            outputs = {"dose_weighted_sum": f"{eid}_DW.mrc", "particles_star": str(star)}
            record = make_record(eid, fit_resolution_angstrom=fit, outputs=outputs)
            record = record.model_copy(update={"picking": picking})
            store.commit_exposure(record, params_hash="p")
            keeper.exposure(record)
            if label:
                store.add_label(eid, label)
    out = tmp_path / "selected"
    assert main(["export", str(session), "--selected", "--relion", str(out)]) == 0
    assert "2 accepted exposures" in capsys.readouterr().out
    micrographs = starfile.read(out / "micrographs_ctf.star", always_dict=True)["micrographs"]
    assert sorted(micrographs["rlnMicrographName"]) == ["a_DW.mrc", "d_DW.mrc"]
    blocks = starfile.read(out / "particles.star", always_dict=True)
    particles, optics = blocks["particles"], blocks["optics"]
    assert len(particles) == 6 + 4
    assert sorted(set(particles["rlnMicrographName"])) == ["a_DW.mrc", "d_DW.mrc"]
    # two pixel sizes: two optics groups, each particle pointing at its own
    assert sorted(optics["rlnImagePixelSize"]) == pytest.approx([0.9, 1.0])
    group_of = dict(zip(optics["rlnImagePixelSize"], optics["rlnOpticsGroup"], strict=True))
    d_groups = set(particles[particles["rlnMicrographName"] == "d_DW.mrc"]["rlnOpticsGroup"])
    assert d_groups == {group_of[0.9]}


def test_export_refuses_a_missing_session(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(["export", str(tmp_path / "nope.duckdb"), "--selected", "--relion", "x"])
    assert code != 0
    assert "nope.duckdb" in capsys.readouterr().err
