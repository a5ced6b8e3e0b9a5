"""The store keeps micrographs_ctf.star valid and current after every commit."""

from __future__ import annotations

from pathlib import Path

import starfile

from causalscope.daemon.store import SessionStore
from tests.daemon.store._records import fail_flag, make_record


def test_star_file_after_every_commit(tmp_path: Path) -> None:
    star = tmp_path / "micrographs_ctf.star"
    commits = [
        # (record, params hash, micrographs expected in the file afterwards)
        (make_record("a"), "p", ["a"]),
        (make_record("b", status="warn"), "p", ["a", "b"]),
        (make_record("c", status="fail", flags=[fail_flag("drift")]), "p", ["a", "b"]),
        (make_record("d", with_ctf=False), "p", ["a", "b"]),
        (make_record("e", outputs={"aligned_sum": "out/e.mrc"}), "p", ["a", "b", "e"]),
        # Reprocessed under new parameters, "a" now fails the gate: it leaves the file.
        (make_record("a", status="fail", flags=[fail_flag("drift")]), "q", ["b", "e"]),
    ]
    with SessionStore(tmp_path / "S.duckdb", ctf_star_path=star) as store:
        assert not star.exists()
        for record, params_hash, expected in commits:
            store.commit_exposure(record, params_hash=params_hash)
            table = starfile.read(star)["micrographs"]
            names = [Path(n).name for n in table["rlnMicrographName"]]
            assert len(table) == len(expected), record.exposure_id
            dw = {"a": "a_DW.mrc", "b": "b_DW.mrc", "e": "e.mrc"}
            assert names == [dw[e] for e in expected]
        optics = starfile.read(star)["optics"]
        assert optics["rlnMicrographPixelSize"].tolist() == [0.83]
        assert optics["rlnAmplitudeContrast"].tolist() == [0.07]
        assert "rlnMicrographMetadata" not in table  # "e" has no trajectory


def test_two_pixel_sizes_make_two_optics_groups(tmp_path: Path) -> None:
    star = tmp_path / "micrographs_ctf.star"
    other = make_record("b").model_copy(update={"pixel_size_angstrom": 1.1})
    with SessionStore(tmp_path / "S.duckdb", ctf_star_path=star) as store:
        store.commit_exposure(make_record("a", defocus_u_angstrom=15_200.0), params_hash="p")
        store.commit_exposure(other, params_hash="p")
    data = starfile.read(star)
    assert data["optics"]["rlnMicrographPixelSize"].tolist() == [0.83, 1.1]
    table = data["micrographs"]
    assert table["rlnOpticsGroup"].tolist() == [1, 2]
    assert table["rlnMicrographMetadata"].tolist() == ["out/motion/a.star", "out/motion/b.star"]
    assert table["rlnDefocusU"].tolist() == [15_200.0, 15_000.0]
    assert table["rlnCtfAstigmatism"].tolist() == [1_200.0, 1_000.0]
