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


def _reference_columns(shared_data: Path) -> dict[str, set[str]]:
    """Block name -> the columns RELION itself wrote in the real files of ../shared/data."""
    out: dict[str, set[str]] = {}
    for name in ("relion5.star", "relion31.6opticsgroups.star"):
        for block, table in starfile.read(shared_data / "star" / name, always_dict=True).items():
            out.setdefault(block, set()).update(table.columns)
    return out


def test_export_whole_session_for_relion_and_cryosparc(
    tmp_path: Path, shared_data: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    import mrcfile
    import numpy as np
    from cryosparc.dataset import Dataset

    from causalscope.models.records import AcquisitionMetadata

    # 12 exposures at the 4 positions of a 2 x 2 multishot pattern (EPU's image shift, a little
    # jitter), in an order that mixes them; each with a micrograph, picks and particles
    rng = np.random.default_rng(0)
    positions = {0: (-1.0, -1.0), 1: (1.0, -1.0), 2: (-1.0, 1.0), 3: (1.0, 1.0)}
    truth, picks_of = {}, {}
    session = tmp_path / "S.duckdb"
    with SessionStore(session) as store:
        for i in range(12):
            eid, where = f"e{i:02d}", (i * 7) % 4
            truth[eid] = where
            shift = tuple(v + rng.normal(0, 0.02) for v in positions[where])
            micrograph = tmp_path / f"{eid}_DW.mrc"
            with mrcfile.new(micrograph) as mrc:
                mrc.set_data(np.zeros((300, 400), dtype=np.float32))
            picks = [[30.0 + 40 * k, 20.0 + 25 * k] for k in range(5)]
            picks_of[eid] = picks
            star = _particles_star(tmp_path / f"{eid}.star", eid, 5, 1.0)
            table = starfile.read(star, always_dict=True)
            table["particles"]["rlnCoordinateX"] = [p[0] for p in picks]
            table["particles"]["rlnCoordinateY"] = [p[1] for p in picks]
            table["particles"]["rlnMicrographName"] = str(micrograph)
            starfile.write(table, star, overwrite=True)
            outputs = {"dose_weighted_sum": str(micrograph), "particles_star": str(star)}
            record = make_record(
                eid, outputs=outputs, defocus_u_angstrom=10_000.0 + 100 * i
            ).model_copy(
                update={
                    "picking": PickingRecord(
                        n_particles=5,
                        particle_diameter_angstrom=100.0,
                        picks_xy_px=picks,
                        scores=[0.5] * 5,
                    ),
                    "metadata": AcquisitionMetadata(
                        source_path=f"{eid}.xml", source_format="epu", image_shift=shift
                    ),
                }
            )
            store.commit_exposure(record, params_hash="p")
    relion, cryosparc = tmp_path / "relion", tmp_path / "cryosparc"
    argv = ["export", str(session), "--relion", str(relion), "--cryosparc", str(cryosparc)]
    assert main(argv) == 0
    assert "12 exported exposures in 4 beam/image-shift group(s)" in capsys.readouterr().out

    reference = _reference_columns(shared_data)
    # RELION: blocks and columns as RELION's own files name them; RELION's micrograph-only
    # labels (absent from particle files) are the astigmatism and the motion STAR
    micrographs_only = {"rlnCtfAstigmatism", "rlnMicrographMetadata"}
    mics = starfile.read(relion / "micrographs_ctf.star", always_dict=True)
    assert set(mics) == {"optics", "micrographs"}
    assert set(mics["optics"].columns) <= reference["optics"]
    all_columns = reference["optics"] | reference["particles"] | micrographs_only
    assert set(mics["micrographs"].columns) <= all_columns
    parts = starfile.read(relion / "particles.star", always_dict=True)
    assert set(parts) == {"optics", "particles"} <= set(reference)
    assert set(parts["optics"].columns) <= reference["optics"]
    assert set(parts["particles"].columns) <= reference["particles"]
    # one optics group per shift position, holding exactly that position's micrographs
    assert len(mics["optics"]) == 4
    group_of = {
        Path(n).name.removesuffix("_DW.mrc"): g
        for n, g in zip(
            mics["micrographs"]["rlnMicrographName"],
            mics["micrographs"]["rlnOpticsGroup"],
            strict=True,
        )
    }
    assert len(set(zip(group_of.values(), (truth[e] for e in group_of), strict=True))) == 4
    # the particles are in their micrograph's group (numbered the same way: first seen first)
    particle_groups = {
        Path(n).name.removesuffix("_DW.mrc"): g
        for n, g in zip(
            parts["particles"]["rlnMicrographName"],
            parts["particles"]["rlnOpticsGroup"],
            strict=True,
        )
    }
    assert particle_groups == group_of
    assert len(parts["particles"]) == 12 * 5
    # coordinates: one file per micrograph with its picks, listed for RELION's import
    listed = starfile.read(relion / "coordinates.star")
    assert len(listed) == 12
    for name, coords in zip(
        listed["rlnMicrographName"], listed["rlnMicrographCoordinates"], strict=True
    ):
        eid = Path(name).name.removesuffix("_DW.mrc")
        xy = starfile.read(relion / coords)[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy()
        assert xy.tolist() == picks_of[eid]

    # cryoSPARC: cryosparc-tools reads both files; field names and types as cryoSPARC's own
    real = Dataset.load(shared_data / "star" / "cryosparc_P12_J24_001_particles.cs")
    exposures = Dataset.load(cryosparc / "exposures.cs")
    particles = Dataset.load(cryosparc / "particles.cs")
    assert len(exposures) == 12 and len(particles) == 60
    real_types = dict((f[0], f[1:]) for f in real.descr())
    ours = dict((f[0], f[1:]) for f in particles.descr())
    shared = [k for k in ours if k.startswith(("blob/", "ctf/"))]
    assert shared and all(k in real_types and ours[k] == real_types[k] for k in shared)
    paths = [Path(p).name.removesuffix("_DW.mrc") for p in exposures["micrograph_blob/path"]]
    groups = dict(zip(paths, exposures["mscope_params/exp_group_id"].tolist(), strict=True))
    assert groups == group_of
    assert exposures["micrograph_blob/shape"].tolist() == [[300, 400]] * 12
    u = {p: 10_000.0 + 100 * int(p[1:]) for p in paths}
    assert exposures["ctf/df1_A"].tolist() == pytest.approx([u[p] for p in paths])
    x = particles["location/center_x_frac"] * 400
    y = particles["location/center_y_frac"] * 300
    expected = [xy for p in paths for xy in picks_of[p]]
    assert np.column_stack([x, y]) == pytest.approx(np.array(expected), abs=1e-3)
    assert set(particles["location/micrograph_uid"]) == set(exposures["uid"])
