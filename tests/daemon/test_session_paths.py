"""A session folder copied or moved after it ran: its stored absolute paths are read where the
folder lies now (the exports' STAR files name files that exist), and left alone otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePath

import duckdb
import pandas as pd
import pytest
import starfile

from causalscope.daemon.cli import main
from causalscope.daemon.client.paths import (
    Relocation,
    old_folder,
    relocate_particles,
    relocation,
    session_file,
)
from causalscope.daemon.store import SessionStore
from causalscope.models.records import PickingRecord
from tests.daemon.store._records import make_record


def test_paths_under_the_old_folder_move_and_no_other() -> None:
    moved = Relocation(PurePath("/data/old/S"), PurePath("/home/me/S"))
    assert moved.path("/data/old/S/micrographs/a_DW.mrc") == "/home/me/S/micrographs/a_DW.mrc"
    assert moved.image_name("12@/data/old/S/particles/a.mrcs") == "12@/home/me/S/particles/a.mrcs"
    # a sibling whose name only starts the same, another folder, a relative name: unchanged
    for stored in ("/data/old/S2/a.mrc", "/data/other/a.mrc", "particles/a.mrcs", "/data/old"):
        assert moved.path(stored) == stored
    assert moved.outputs({"thumbnail": "/data/old/S/t/a.png", "n": 3}) == {
        "thumbnail": "/home/me/S/t/a.png",
        "n": 3,
    }
    assert not Relocation().moved and Relocation().path("/data/old/S/a") == "/data/old/S/a"
    table = pd.DataFrame(
        {"rlnImageName": ["1@/data/old/S/p/a.mrcs"], "rlnMicrographName": ["/data/old/S/m.mrc"]}
    )
    moved_table = relocate_particles(table, moved)
    assert moved_table["rlnImageName"].tolist() == ["1@/home/me/S/p/a.mrcs"]
    assert moved_table["rlnMicrographName"].tolist() == ["/home/me/S/m.mrc"]


def test_the_old_folder_is_read_from_the_longest_tail_that_exists(tmp_path: Path) -> None:
    now = tmp_path / "now"
    (now / "thumbnails").mkdir(parents=True)
    (now / "thumbnails" / "a.png").write_bytes(b"x")
    stored = "/gone/sessions/S/thumbnails/a.png"
    assert old_folder(stored, now) == PurePath("/gone/sessions/S")
    assert session_file(stored, now) == now / "thumbnails" / "a.png"
    assert session_file("thumbnails/a.png", now) == now / "thumbnails" / "a.png"
    assert old_folder("/gone/sessions/S/thumbnails/b.png", now) is None  # nothing there
    here = now / "thumbnails" / "a.png"
    assert old_folder(str(here), now) is None and session_file(str(here), now) == here


def _session(folder: Path) -> Path:
    """A session file in ``folder`` whose exposure wrote a micrograph, a thumbnail and a
    particles STAR (naming its stack by absolute path), all inside ``folder``."""
    (folder / "particles").mkdir(parents=True)
    (folder / "micrographs").mkdir()
    micrograph = folder / "micrographs" / "a_DW.mrc"
    micrograph.write_bytes(b"mrc")
    stack = folder / "particles" / "a.mrcs"
    stack.write_bytes(b"mrcs")
    optics = pd.DataFrame(
        {
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnOpticsGroup": [1],
            "rlnImagePixelSize": [1.0],
            "rlnVoltage": [300.0],
            "rlnImageSize": [64],
        }
    )
    particles = pd.DataFrame(
        {
            "rlnCoordinateX": [10.0, 20.0],
            "rlnCoordinateY": [5.0, 5.0],
            "rlnImageName": [f"{i}@{stack}" for i in (1, 2)],
            "rlnMicrographName": [str(micrograph)] * 2,
            "rlnOpticsGroup": [1, 1],
        }
    )
    star = folder / "particles" / "a.star"
    starfile.write({"optics": optics, "particles": particles}, star)
    picking = PickingRecord(
        n_particles=2,
        particle_diameter_angstrom=120.0,
        picks_xy_px=[[10.0, 5.0], [20.0, 5.0]],
        scores=[1.0, 1.0],
    )
    outputs = {"dose_weighted_sum": str(micrograph), "particles_star": str(star)}
    database = folder / "S.duckdb"
    with SessionStore(database) as store:
        record = make_record("a", outputs=outputs).model_copy(update={"picking": picking})
        store.commit_exposure(record, params_hash="p")
    return database


def test_an_export_of_a_moved_session_names_the_files_where_they_are_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = _session(tmp_path / "scope" / "S")
    with duckdb.connect(str(written), read_only=True) as connection:
        assert not relocation(connection).moved  # where it was written
    moved = tmp_path / "laptop" / "S"
    shutil.copytree(written.parent, moved)
    with duckdb.connect(str(moved / "S.duckdb"), read_only=True) as connection:
        assert not relocation(connection).moved  # copied: the original files still serve
    shutil.rmtree(tmp_path / "scope")
    with duckdb.connect(str(moved / "S.duckdb"), read_only=True) as connection:
        found = relocation(connection)
    assert (found.then, found.now) == (PurePath(written.parent), PurePath(moved.resolve()))
    out = tmp_path / "relion"
    assert main(["export", str(moved / "S.duckdb"), "--relion", str(out)]) == 0
    capsys.readouterr()
    micrographs = starfile.read(out / "micrographs_ctf.star", always_dict=True)["micrographs"]
    particles = starfile.read(out / "particles.star", always_dict=True)["particles"]
    coordinates = starfile.read(out / "coordinates.star")
    assert micrographs["rlnMicrographName"].tolist() == [
        str(moved.resolve() / "micrographs/a_DW.mrc")
    ]
    assert coordinates["rlnMicrographName"].tolist() == micrographs["rlnMicrographName"].tolist()
    stack = moved.resolve() / "particles" / "a.mrcs"
    assert particles["rlnImageName"].tolist() == [f"1@{stack}", f"2@{stack}"]
    assert set(particles["rlnMicrographName"]) == set(micrographs["rlnMicrographName"])
    # the dashboard's view of the finished session finds its pictures there too
    from causalscope.daemon.client.history import read_recorded

    _, snapshot = read_recorded(moved / "S.duckdb")
    (row,) = snapshot.rows
    assert row["outputs"]["dose_weighted_sum"] == str(moved.resolve() / "micrographs/a_DW.mrc")
