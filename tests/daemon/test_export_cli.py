"""`causalscope export --selected`: only the accepted exposures (the operator's label first,
else the score's recommendation), their micrographs and particles, read back by starfile."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

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


def test_export_selected_writes_only_the_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
    # every exposure's recommendation and why, lowest HyperScore first; labels decide
    assert main(["summary", str(session), "--recommendations"]) == 0
    text = capsys.readouterr().out
    listed = text[text.index("exposures   4 scored") :].splitlines()[1:5]
    verdicts = {line.split()[0]: line.split(None, 2)[2] for line in listed}
    assert verdicts["a"].startswith("accept ")
    assert verdicts["b"].startswith("reject ") and "fit_within_nyquist" in verdicts["b"]
    assert verdicts["c"].startswith("reject (your label)")
    assert verdicts["d"].startswith("accept (your label)")
    scores = [float(line.split()[1]) for line in listed]
    assert scores == sorted(scores)  # lowest first


def test_export_refuses_a_missing_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["export", str(tmp_path / "nope.duckdb"), "--selected", "--relion", "x"])
    assert code != 0
    assert "nope.duckdb" in capsys.readouterr().err


#: Real RELION files in ../shared/data: particle files (RELION 5 and 3.1, six optics groups) and
#: micrograph files (the RELION 3.1 tutorial's CtfFind and MotionCorr outputs).
_PARTICLE_FILES = ("star/relion5.star", "star/relion31.6opticsgroups.star")
_MICROGRAPH_FILES = (
    "relion_tutorial/ctffind4_reference.star",
    "relion_tutorial/motion/corrected_micrographs.star",
)
#: RELION labels in blocks that no real file in ../shared/data holds, as RELION 5 writes them
#: (names from its ``src/metadata_label.h``): CtfFind's ice-ring density and phase-plate shift
#: in ``data_micrographs``; AutoPick's list of coordinate files (``data_coordinate_files``)
#: and its per-micrograph coordinate files (one unnamed ``data_`` block); a 2D
#: classification's ``data_model_classes`` (``run_itNNN_model.star``), where
#: ``rlnClassNumber`` (a particle label in the real files) names the class.
_RELION_WRITES = {
    "micrographs": {"rlnCtfIceRingDensity", "rlnPhaseShift"},
    "coordinate_files": {"rlnMicrographName", "rlnMicrographCoordinates"},
    "autopick": {
        "rlnCoordinateX",
        "rlnCoordinateY",
        "rlnClassNumber",
        "rlnAutopickFigureOfMerit",
        "rlnAnglePsi",
    },
    "model_classes": {
        "rlnReferenceImage",
        "rlnClassNumber",
        "rlnClassDistribution",
        "rlnAccuracyRotations",
        "rlnAccuracyTranslationsAngst",
        "rlnEstimatedResolution",
        "rlnOverallFourierCompleteness",
        "rlnClassPriorOffsetX",
        "rlnClassPriorOffsetY",
    },
}


def _columns_of(shared_data: Path, names: tuple[str, ...]) -> dict[str, set[str]]:
    """Block name -> the columns RELION itself wrote in the real files ``names``."""
    out: dict[str, set[str]] = {}
    for name in names:
        for block, table in starfile.read(shared_data / name, always_dict=True).items():
            out.setdefault(block, set()).update(table.columns)
    return out


def _relion_blocks(shared_data: Path) -> dict[str, dict[str, set[str]]]:
    """Each STAR file the RELION export writes (``coordinates/*`` for the per-micrograph
    files) -> its blocks -> the columns RELION knows there."""
    particle = _columns_of(shared_data, _PARTICLE_FILES)
    micrograph = _columns_of(shared_data, _MICROGRAPH_FILES)
    particles = {"optics": particle["optics"], "particles": particle["particles"]}
    autopick = _RELION_WRITES["autopick"]
    assert autopick <= particle["particles"]  # the labels themselves are in the real files
    return {
        "micrographs_ctf.star": {
            "optics": micrograph["optics"],
            "micrographs": micrograph["micrographs"] | _RELION_WRITES["micrographs"],
        },
        "coordinates.star": {"coordinate_files": _RELION_WRITES["coordinate_files"]},
        "coordinates/*": {"": autopick},
        "particles.star": particles,
        "class_averages.star": {"model_classes": _RELION_WRITES["model_classes"]},
        "particles_selected_classes.star": particles,
    }


def _check_relion_star_files(folder: Path, shared_data: Path) -> None:
    """Every STAR file in ``folder`` is one the export writes, with RELION's block names and
    only columns RELION knows in those blocks; every file the export writes is there."""
    expected = _relion_blocks(shared_data)
    written = sorted(folder.rglob("*.star"))
    kinds = set()
    for path in written:
        relative = path.relative_to(folder)
        kind = "coordinates/*" if relative.parent.name == "coordinates" else str(relative)
        assert kind in expected, f"{relative}: not a file the RELION export should write"
        kinds.add(kind)
        blocks = starfile.read(path, always_dict=True)
        assert set(blocks) == set(expected[kind]), (relative, set(blocks))
        for block, table in blocks.items():
            unknown = set(table.columns) - expected[kind][block]
            assert not unknown, f"{relative} data_{block}: columns RELION does not know {unknown}"
            assert len(table), f"{relative} data_{block} is empty"
    assert kinds == set(expected), f"not written: {set(expected) - kinds}"


def _classify(store: SessionStore, folder: Path, exposure_ids: list[str]) -> list[int]:
    """Commit a 2D classification whose selected particles are those of ``exposure_ids``
    (their STARs in ``folder``); the indices of the selected classes."""
    from tests.tui._reconstruction import make_update

    update = make_update(1, folder, {})
    assert update.class_set is not None
    tables = [starfile.read(folder / f"{e}.star", always_dict=True) for e in exposure_ids]
    particles = pd.concat([t["particles"] for t in tables], ignore_index=True)
    particles["rlnClassNumber"] = [1 + i % 3 for i in range(len(particles))]
    starfile.write(
        {"optics": tables[0]["optics"], "particles": particles},
        update.class_set.selected_star_path,
        overwrite=True,
    )
    assert store.commit_evaluation(update)
    return [c.class_index for c in update.class_set.classes if c.selected]


#: The fields of cryoSPARC's particle ``location`` slot, as its pickers and Extract write them
#: (cryosparc-tools' models name only the centre fractions; the others are the micrograph's).
_LOCATION_FIELDS = {
    "micrograph_uid",
    "exp_group_id",
    "micrograph_path",
    "micrograph_shape",
    "micrograph_psize_A",
    "center_x_frac",
    "center_y_frac",
}


def _check_cryosparc_particles(particles: Any, real_types: dict[str, tuple[Any, ...]]) -> None:
    """``blob/*`` and ``ctf/*`` fields with the real particles' names and dtypes; the
    location slot's fields cryoSPARC's own."""
    from cryosparc.models.exposure import PickerLocations

    assert set(PickerLocations.model_fields) <= _LOCATION_FIELDS
    ours = {f[0]: f[1:] for f in particles.descr()}
    for name, dtype in ours.items():
        slot, _, field = name.partition("/")
        if slot in ("blob", "ctf"):
            assert real_types.get(name) == dtype, (name, dtype, real_types.get(name))
        else:
            assert name == "uid" or (slot == "location" and field in _LOCATION_FIELDS), name


def _check_cryosparc_exposures(exposures: Any, real_types: dict[str, tuple[Any, ...]]) -> None:
    """Every exposure field is one of the slots cryoSPARC's exposures carry, named as in
    cryosparc-tools' exposure models (``micrograph_blob``, ``ctf``, ``mscope_params``), with
    the real particles' dtype where the field is shared (``ctf/*``; ``blob/*`` for
    ``micrograph_blob/*``); the fields cryoSPARC needs to use a micrograph are there."""
    from cryosparc.models.exposure import CTF, MicrographBlob, MScopeParams

    known = {
        "micrograph_blob": set(MicrographBlob.model_fields),
        "ctf": set(CTF.model_fields) | {n[4:] for n in real_types if n.startswith("ctf/")},
        "mscope_params": set(MScopeParams.model_fields),
    }
    ours = {f[0]: f[1:] for f in exposures.descr()}
    for name, dtype in ours.items():
        if name == "uid":
            continue
        slot, _, field = name.partition("/")
        assert field in known.get(slot, set()), f"{name}: not a field of cryoSPARC's exposures"
        like = "blob/" + field if slot == "micrograph_blob" else name
        if like in real_types:
            assert dtype == real_types[like], (name, dtype, real_types[like])
    needed = {
        "micrograph_blob/path",
        "micrograph_blob/shape",
        "micrograph_blob/psize_A",
        "ctf/type",
        "ctf/exp_group_id",
        "ctf/accel_kv",
        "ctf/cs_mm",
        "ctf/amp_contrast",
        "ctf/df1_A",
        "ctf/df2_A",
        "ctf/df_angle_rad",
        "ctf/phase_shift_rad",
        "mscope_params/accel_kv",
        "mscope_params/cs_mm",
        "mscope_params/exp_group_id",
        "mscope_params/total_dose_e_per_A2",
    }
    assert needed <= set(ours), f"missing: {needed - set(ours)}"


def test_export_whole_session_for_relion_and_cryosparc(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
        # a 2D classification: twelve classes (nine selected) over the particles of e00-e02
        selected = _classify(store, tmp_path, ["e00", "e01", "e02"])
    relion, cryosparc = tmp_path / "relion", tmp_path / "cryosparc"
    argv = ["export", str(session), "--relion", str(relion), "--cryosparc", str(cryosparc)]
    assert main(argv) == 0
    assert "12 exported exposures in 4 beam/image-shift group(s)" in capsys.readouterr().out

    # RELION: every file's blocks and columns as RELION's own files name them
    _check_relion_star_files(relion, shared_data)
    mics = starfile.read(relion / "micrographs_ctf.star", always_dict=True)
    parts = starfile.read(relion / "particles.star", always_dict=True)
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
    # the selected classes, numbered from 1, and their particles in the exported groups
    classes = starfile.read(relion / "class_averages.star", always_dict=True)["model_classes"]
    assert classes["rlnClassNumber"].tolist() == [k + 1 for k in selected]
    assert classes["rlnClassDistribution"].sum() == pytest.approx(1.0)
    chosen = starfile.read(relion / "particles_selected_classes.star", always_dict=True)
    assert chosen["optics"].equals(parts["optics"])
    assert len(chosen["particles"]) == 3 * 5
    for name, group in zip(
        chosen["particles"]["rlnMicrographName"], chosen["particles"]["rlnOpticsGroup"], strict=True
    ):
        assert group == group_of[Path(name).name.removesuffix("_DW.mrc")]

    # cryoSPARC: cryosparc-tools reads both files; field names and types as cryoSPARC's own
    real = Dataset.load(shared_data / "star" / "cryosparc_P12_J24_001_particles.cs")
    exposures = Dataset.load(cryosparc / "exposures.cs")
    particles = Dataset.load(cryosparc / "particles.cs")
    assert len(exposures) == 12 and len(particles) == 60
    real_types = {f[0]: f[1:] for f in real.descr()}
    _check_cryosparc_particles(particles, real_types)
    _check_cryosparc_exposures(exposures, real_types)
    # the record's CTF and optics (make_record's), in cryoSPARC's units
    assert exposures["ctf/df2_A"].tolist() == pytest.approx([14_000.0] * 12)
    assert exposures["ctf/df_angle_rad"].tolist() == pytest.approx([math.radians(33.0)] * 12)
    assert exposures["mscope_params/accel_kv"].tolist() == pytest.approx([300.0] * 12)
    assert exposures["mscope_params/cs_mm"].tolist() == pytest.approx([2.7] * 12)
    assert exposures["micrograph_blob/psize_A"].tolist() == pytest.approx([0.83] * 12)
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


def test_export_selected_keeps_only_the_particles_of_accepted_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a 2D classification, `--selected` writes the accepted exposures' particles that
    sit in accepted classes: class 1 recommended, class 2 selected by the classifier but
    recommended against (its nearest neighbour in the index is junk), class 3 to look at;
    the operator's label on class 4's particles is what counts for it. RELION's two particle
    files and cryoSPARC's agree."""
    import dataclasses

    import mrcfile
    import numpy as np
    from cryosparc.dataset import Dataset

    from tests.tui._reconstruction import make_update

    session = tmp_path / "S.duckdb"
    picks = [[30.0 + 40 * k, 20.0] for k in range(8)]
    picking = PickingRecord(
        n_particles=8, particle_diameter_angstrom=100.0, picks_xy_px=picks, scores=[1.0] * 8
    )
    settings = ScoringSettings(accept_above=100.0)
    with SessionStore(session) as store:
        keeper = ScoreKeeper(settings, store, lambda alert: None)
        for eid in ("a", "b"):
            micrograph = tmp_path / f"{eid}_DW.mrc"
            with mrcfile.new(micrograph) as mrc:
                mrc.set_data(np.zeros((300, 400), dtype=np.float32))
            star = _particles_star(tmp_path / f"{eid}.star", eid, 8, 1.0)
            outputs = {"dose_weighted_sum": str(micrograph), "particles_star": str(star)}
            record = make_record(eid, fit_resolution_angstrom=3.5, outputs=outputs)
            store.commit_exposure(record.model_copy(update={"picking": picking}), params_hash="p")
            keeper.exposure(record)
        store.add_label("b", "reject")  # b's particles go, whatever their class
        update = make_update(1, tmp_path, {3: "select"})
        assert update.class_set is not None
        verdicts = {0: "accept", 1: "reject", 2: "look", 3: "accept"}
        classes = tuple(
            dataclasses.replace(
                c, selected=True, recommendation=verdicts.get(c.class_index, "reject")
            )
            for c in update.class_set.classes
        )
        class_set = dataclasses.replace(update.class_set, classes=classes)
        update = dataclasses.replace(update, class_set=class_set)
        tables = [starfile.read(tmp_path / f"{e}.star", always_dict=True) for e in "ab"]
        particles = pd.concat([t["particles"] for t in tables], ignore_index=True)
        particles["rlnClassNumber"] = [1 + i % 4 for i in range(len(particles))]
        starfile.write(
            {"optics": tables[0]["optics"], "particles": particles},
            class_set.selected_star_path,
            overwrite=True,
        )
        assert store.commit_evaluation(update)
    relion, cryosparc = tmp_path / "relion", tmp_path / "cryosparc"
    argv = ["export", str(session), "--selected", "--relion", str(relion)]
    assert main([*argv, "--cryosparc", str(cryosparc)]) == 0
    assert "1 accepted exposures" in capsys.readouterr().out
    # a's particles 1-8 in classes 1, 2, 3, 4, 1, 2, 3, 4: classes 1 and 4 are accepted
    expected = ["1@a.mrcs", "4@a.mrcs", "5@a.mrcs", "8@a.mrcs"]
    written = starfile.read(relion / "particles.star", always_dict=True)["particles"]
    assert sorted(written["rlnImageName"]) == expected
    chosen = starfile.read(relion / "particles_selected_classes.star", always_dict=True)
    assert sorted(chosen["particles"]["rlnImageName"]) == expected
    listed = starfile.read(relion / "class_averages.star", always_dict=True)["model_classes"]
    assert listed["rlnClassNumber"].tolist() == [1, 4]
    cs = Dataset.load(cryosparc / "particles.cs")
    assert sorted(int(i) + 1 for i in cs["blob/idx"]) == [1, 4, 5, 8]
    assert main(["summary", str(session), "--recommendations", "--json"]) == 0
    found = __import__("json").loads(capsys.readouterr().out)["recommendations"]
    verdicts = {c["class_number"]: c["recommendation"] for c in found["classes"]}
    assert (verdicts[1], verdicts[2], verdicts[3], verdicts[4]) == (
        "accept", "reject", "look", "accept"
    )  # fmt: skip
    assert [e["label"] for e in found["exposures"] if e["exposure_id"] == "b"] == ["reject"]
    # without --selected: every particle, and the classifier's selection (all twelve here)
    everything = tmp_path / "everything"
    assert main(["export", str(session), "--relion", str(everything)]) == 0
    assert len(starfile.read(everything / "particles.star", always_dict=True)["particles"]) == 16
