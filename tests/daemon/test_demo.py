"""`causalscope demo`, the README's first command, as a user runs it (a real process)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from tests.daemon.cli_run import run_cli


def test_demo_processes_every_simulated_exposure_live(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_cli(
        "demo",
        "--n",
        "3",
        "--size",
        "1024",
        "--frames",
        "10",
        "--rate",
        "2",
        "--out",
        str(out),
        cwd=Path(__file__).resolve().parents[2],
        # one exposure per grid square: each new square folder appears while the watcher runs
        env={
            "CAUSALSCOPE_PROCESSING__DEVICE": "cpu",
            "CAUSALSCOPE_SIMULATION__HOLES_PER_SQUARE": "1",
            "CAUSALSCOPE_SIMULATION__EXPOSURES_PER_HOLE": "1",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 of 3 exposures processed" in result.stdout
    assert "RuntimeWarning" not in result.stderr, result.stderr  # nothing but our own lines
    assert "median |defocus error|" in result.stdout
    # the live learned picker against the simulated particles (measured: F1 0.97, 3.8 px on
    # the full demo; blob picking 0.92, 7.1 px)
    picking = re.search(
        r"picks \(learned\) against the simulated particles: .*F1 ([0-9.]+); "
        r"median distance to the centre ([0-9.]+) px",
        result.stdout,
    )
    assert picking is not None, result.stdout
    assert float(picking[1]) >= 0.9 and float(picking[2]) <= 8.0, picking[0]
    database = out / "sessions" / "demo" / "demo.duckdb"
    with duckdb.connect(str(database), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM exposures WHERE state = 'done'").fetchone() == (3,)
        assert db.execute("SELECT count(*) FROM ctf").fetchone() == (3,)
        # the running reconstructions' last update holds every exposure's particles once
        (picked,) = db.execute("SELECT sum(n_particles) FROM picking").fetchone()
        latest = "SELECT particles, exposures FROM evaluations ORDER BY version DESC LIMIT 1"
        assert picked > 0 and db.execute(latest).fetchone() == (picked, 3)
        # every exposure says what area it did not pick in: the border at least, no carbon
        excluded = db.execute(
            "SELECT excluded_fractions->>'border', excluded_fractions->>'dense' FROM picking"
        ).fetchall()
        assert len(excluded) == 3 and all(float(b) > 0 and float(d) < 0.05 for b, d in excluded)
        assert db.execute("SELECT count(*) FROM reconstructions").fetchone()[0] >= 1
    # the session's summary and a read-only query work on what the demo left
    summary = run_cli("summary", str(database), cwd=tmp_path)
    assert summary.returncode == 0 and "done 3" in summary.stdout, summary.stdout + summary.stderr
    assert f"{picked} particles from 3 exposures" in summary.stdout
    refused = run_cli("query", str(database), "DELETE FROM exposures", cwd=tmp_path)
    assert refused.returncode == 2 and "SELECT" in refused.stderr
    # the session folder copied elsewhere (to storage, a laptop) and the original gone: the
    # report and the exports read its files where they are now
    moved = tmp_path / "elsewhere" / "demo"
    moved.parent.mkdir()
    (out / "sessions" / "demo").rename(moved)
    _report_and_exports(moved / "demo.duckdb", tmp_path, picked)


def _report_and_exports(database: Path, tmp_path: Path, picked: int) -> None:
    """`causalscope report` and `export` on the session the demo left (a real one)."""
    import starfile
    from cryosparc.dataset import Dataset

    report = tmp_path / "report.html"
    made = run_cli("report", str(database), "-o", str(report), cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    page = report.read_text()
    with duckdb.connect(str(database), read_only=True) as db:
        (usable,) = db.execute(
            "SELECT count(*) FROM exposures WHERE gate_status IS DISTINCT FROM 'fail'"
        ).fetchone()
        (low,) = db.execute(
            "SELECT count(*) FROM scores WHERE kind = 'exposure' AND hyperscore IS NOT NULL "
            "AND recommendation IS DISTINCT FROM 'accept'"
        ).fetchone()
    assert f"{usable} of 3 exposures usable" in page
    # the demo classifies and refines: its classes' gallery and its FSC are in the page
    assert 'alt="2D class averages"' in page and "FSC of update" in page
    # each exposure not recommended is shown with the pipeline's own thumbnails
    assert page.count('alt="micrograph of ') == page.count('alt="power spectrum of ') == low
    relion, cryosparc = tmp_path / "relion", tmp_path / "cryosparc"
    args = ["export", str(database), "--relion", str(relion), "--cryosparc", str(cryosparc)]
    exported = run_cli(*args, cwd=tmp_path)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    micrographs = starfile.read(relion / "micrographs_ctf.star", always_dict=True)["micrographs"]
    particles = starfile.read(relion / "particles.star", always_dict=True)["particles"]
    coordinates = starfile.read(relion / "coordinates.star")
    assert len(micrographs) == len(coordinates) == 3
    assert 0 < len(particles) <= picked
    assert len(Dataset.load(cryosparc / "exposures.cs")) == 3
    assert len(Dataset.load(cryosparc / "particles.cs")) == len(particles)
    # every file the exports name is where they say
    named = [
        *micrographs["rlnMicrographName"],
        *micrographs["rlnMicrographMetadata"],
        *(name.split("@", 1)[1] for name in particles["rlnImageName"]),
        *particles["rlnMicrographName"],
        *Dataset.load(cryosparc / "particles.cs")["blob/path"],
        *Dataset.load(cryosparc / "exposures.cs")["micrograph_blob/path"],
    ]
    missing = sorted({str(name) for name in named if not Path(str(name)).is_file()})
    assert not missing, missing[:3]
    _selected_classes_read_back(database, relion, picked)


def _selected_classes_read_back(database: Path, relion: Path, picked: int) -> None:
    """The export's selected 2D classes: RELION's ``model_classes`` block naming each class
    average in its stack, and the particles of the selected classes."""
    import mrcfile
    import pytest
    import starfile

    with duckdb.connect(str(database), read_only=True) as db:
        selected = db.execute(
            "SELECT class_index + 1, particles FROM classes "
            "WHERE version = (SELECT max(version) FROM class_sets) AND selected "
            "ORDER BY class_index"
        ).fetchall()
    assert selected, "the demo's classification selected no class"
    classes = starfile.read(relion / "class_averages.star", always_dict=True)["model_classes"]
    assert classes["rlnClassNumber"].tolist() == [number for number, _ in selected]
    total = sum(n for _, n in selected)
    shares = [n / total for _, n in selected]
    assert classes["rlnClassDistribution"].tolist() == pytest.approx(shares, abs=1e-6)  # 6 digits
    for reference in classes["rlnReferenceImage"]:
        index, stack = reference.split("@", 1)
        with mrcfile.open(stack, permissive=True) as mrc:
            assert 1 <= int(index) <= mrc.data.shape[0], reference
    chosen = starfile.read(relion / "particles_selected_classes.star", always_dict=True)
    exported = starfile.read(relion / "particles.star", always_dict=True)
    assert set(chosen) == {"optics", "particles"}
    assert chosen["optics"].equals(exported["optics"])
    selected_particles = chosen["particles"]
    assert 0 < len(selected_particles) <= picked
    assert set(selected_particles["rlnClassNumber"]) <= {number for number, _ in selected}
    # each particle in the optics group the export gave it
    group_of = dict(
        zip(
            exported["particles"]["rlnImageName"],
            exported["particles"]["rlnOpticsGroup"],
            strict=True,
        )
    )
    assert [group_of[name] for name in selected_particles["rlnImageName"]] == list(
        selected_particles["rlnOpticsGroup"]
    )


def test_ice_outside_the_tolerance_is_a_miss_only_outside_its_own_two_sigma() -> None:
    """The demo holds ice to 10 nm; an estimate further off is a miss unless it said it could
    not tell (the truth within twice its own sigma): 14.4 nm off with a sigma of 6 nm is a
    miss, with 40 nm it is not; 9 nm off is within whatever the sigma."""
    from causalscope.daemon.commands.demo import ICE_TOLERANCE_NM, ice_within_tolerance

    assert ICE_TOLERANCE_NM == 10.0
    assert ice_within_tolerance(-14.4, 6.0) is False
    assert ice_within_tolerance(-14.4, 40.0) is None
    assert ice_within_tolerance(-14.4, None) is False
    assert ice_within_tolerance(9.0, 0.5) is True
    assert ice_within_tolerance(None, 5.0) is None
