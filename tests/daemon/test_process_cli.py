"""`causalscope process` and `causalscope ctf` as a user runs them: real files, real processes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import starfile

from causalscope.daemon.cli import main
from tests.daemon.cli_run import run_cli

_run = run_cli


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    args = ["simulate", "--out", str(out), "--n", "1", "--size", "1024", "--frames", "12"]
    assert main([*args, "--seed", "4", "--dose", "40"]) == 0
    return out


def _truth(out: Path) -> dict:
    return json.loads((out / "truth.jsonl").read_text().splitlines()[0])


def test_process_epu_movie_as_json(session: Path, tmp_path: Path) -> None:
    truth = _truth(session)
    movie = session / truth["file"]
    result = _run(
        "process",
        str(movie),
        "--out",
        str(tmp_path / "out"),
        "--json",
        cwd=tmp_path,
        env={
            "CAUSALSCOPE_DETECTOR__GAIN_REFERENCE": str(session / "gain_reference.mrc"),
            "CAUSALSCOPE_DETECTOR__DEFECTS_FILE": str(session / "defects.txt"),
        },
    )
    assert result.returncode in (0, 1), result.stderr
    record = json.loads(result.stdout)
    # field names follow the truth file's
    for key in ("pixel_size_angstrom", "dose_e_per_a2", "n_frames"):
        assert record[key] == pytest.approx(truth[key], rel=1e-3), key
    ctf = record["ctf"]
    mean = 0.5 * (ctf["defocus_u_angstrom"] + ctf["defocus_v_angstrom"])
    true_mean = 0.5 * (truth["defocus_u_angstrom"] + truth["defocus_v_angstrom"])
    assert abs(mean - true_mean) < 150
    shifts = np.asarray(record["motion"]["shifts_px"])
    assert np.sqrt(np.mean(np.sum((shifts - np.asarray(truth["shifts_px"])) ** 2, 1))) < 0.6
    assert record["motion"]["n_defect_pixels"] >= len(truth["dead_pixels"])
    assert record["metadata"]["source_format"] == "epu"
    assert record["timings_s"]["read"] > 0
    for path in record["outputs"].values():
        assert Path(path).is_file()
    assert record["status"] == ("fail" if result.returncode == 1 else record["status"])


def test_process_human_summary(session: Path, tmp_path: Path) -> None:
    movie = session / _truth(session)["file"]
    result = _run("process", str(movie), "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode in (0, 1), result.stderr
    text = result.stdout
    assert movie.name in text.splitlines()[0]
    assert "motion:" in text and "ctf: defocus" in text and "time:" in text


def test_truncated_movie_is_a_clear_error(session: Path, tmp_path: Path) -> None:
    movie = session / _truth(session)["file"]
    broken = tmp_path / "broken.tiff"
    broken.write_bytes(movie.read_bytes()[: movie.stat().st_size // 2])
    result = _run("process", str(broken), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("causalscope: error: ")
    assert "broken.tiff" in result.stderr


def test_several_movies_in_turn_a_broken_one_reported_and_the_rest_processed(
    session: Path, tmp_path: Path
) -> None:
    """A glob of a session's movies: one record per line for each readable movie (one worker),
    the truncated one named on stderr, exit status 2."""
    truth = _truth(session)
    movie = session / truth["file"]
    xml = next(movie.parent.glob("*.xml"))
    again = tmp_path / movie.name.replace("_fractions", "9_fractions")  # another exposure
    again.write_bytes(movie.read_bytes())
    (tmp_path / xml.name.replace(".xml", "9.xml")).write_bytes(xml.read_bytes())
    broken = tmp_path / "broken_fractions.tiff"
    broken.write_bytes(movie.read_bytes()[: movie.stat().st_size // 2])
    result = _run(
        "process",
        str(movie),
        str(broken),
        str(again),
        "--out",
        str(tmp_path / "out"),
        "--json",
        cwd=tmp_path,
        env={"CAUSALSCOPE_DETECTOR__GAIN_REFERENCE": str(session / "gain_reference.mrc")},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "broken_fractions.tiff" in result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["movie_path"] for r in records] == [str(movie), str(again)]
    for record in records:
        assert record["metadata"]["source_format"] == "epu"  # each found its own XML
        shifts = np.asarray(record["motion"]["shifts_px"])
        error = np.sqrt(np.mean(np.sum((shifts - np.asarray(truth["shifts_px"])) ** 2, 1)))
        assert error < 0.6
    # the same frames through the same worker: the same trajectory
    np.testing.assert_allclose(
        records[0]["motion"]["shifts_px"], records[1]["motion"]["shifts_px"], atol=1e-6
    )


def test_metadata_with_several_movies_is_refused(session: Path, tmp_path: Path) -> None:
    movie = session / _truth(session)["file"]
    xml = next(movie.parent.glob("*.xml"))
    result = _run("process", str(movie), str(movie), "--metadata", str(xml), cwd=tmp_path)
    assert result.returncode == 2 and "--metadata names one movie's metadata" in result.stderr


def test_missing_movie_is_a_clear_error(tmp_path: Path) -> None:
    result = _run("process", "nowhere.mrc", cwd=tmp_path)
    assert result.returncode == 2 and "nowhere.mrc does not exist" in result.stderr


def test_ctf_on_a_real_power_spectrum_matches_ctffind(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "relion_tutorial"
    table = starfile.read(folder / "ctffind4_reference.star")
    table = table if not isinstance(table, dict) else list(table.values())[-1]
    row = table.iloc[0]
    name = Path(str(row["rlnMicrographName"])).stem
    spectrum = folder / "power_spectra" / f"{name}_PS.mrc"
    result = _run(
        "ctf",
        str(spectrum),
        "--voltage-kv",
        "200",
        "--cs-mm",
        "1.4",
        "--amplitude-contrast",
        "0.1",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    fit = json.loads(result.stdout)
    assert fit["power_spectrum"] is True  # recognised from the data alone
    reference = 0.5 * (float(row["rlnDefocusU"]) + float(row["rlnDefocusV"]))
    mean = 0.5 * (fit["defocus_u_angstrom"] + fit["defocus_v_angstrom"])
    assert abs(mean / reference - 1) < 0.02


def _ctf_json(image: Path, cwd: Path, *extra: str) -> tuple[int, dict]:
    result = _run(
        "ctf",
        str(image),
        "--voltage-kv",
        "300",
        "--cs-mm",
        "2.7",
        "--amplitude-contrast",
        "0.07",
        "--json",
        *extra,
        cwd=cwd,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_ctf_on_a_micrograph(session: Path, tmp_path: Path) -> None:
    from causalscope.daemon import formats

    truth = _truth(session)
    frames = formats.read_movie(session / truth["file"])
    gain = formats.read_gain(session / "gain_reference.mrc")
    aligned = np.zeros(frames.shape[1:], dtype=np.float32)
    for frame, (x, y) in zip(frames, truth["shifts_px"], strict=True):
        aligned += np.roll(frame * gain, (-round(y), -round(x)), axis=(0, 1))
    micrograph = tmp_path / "aligned.mrc"
    formats.write_mrc_movie(micrograph, aligned[None], pixel_size_angstrom=1.0)
    status, fit = _ctf_json(micrograph, tmp_path, "--counts")
    assert status == 0 and fit["supported"] and fit["power_spectrum"] is False
    true_mean = 0.5 * (truth["defocus_u_angstrom"] + truth["defocus_v_angstrom"])
    mean = 0.5 * (fit["defocus_u_angstrom"] + fit["defocus_v_angstrom"])
    assert abs(mean - true_mean) < 100
    assert fit["ice_thickness_nm"] is not None  # --counts gives the noise floor


def test_ctf_of_a_drift_blurred_sum_is_refused_not_guessed(session: Path, tmp_path: Path) -> None:
    from causalscope.daemon import formats

    truth = _truth(session)
    assert np.hypot(*truth["shifts_px"][-1]) > 5  # the demo session drifts
    frames = formats.read_movie(session / truth["file"])
    raw = tmp_path / "raw.mrc"
    formats.write_mrc_movie(
        raw, frames.sum(axis=0, dtype=np.float32)[None], pixel_size_angstrom=1.0
    )
    status, fit = _ctf_json(raw, tmp_path)
    assert status == 1 and fit["supported"] is False
    assert any("figure of merit" in w for w in fit["warnings"])


def test_ctf_voltage_in_volts_gets_a_hint(tmp_path: Path) -> None:
    image = tmp_path / "x.mrc"
    image.write_bytes(b"")
    result = _run(
        "ctf",
        str(image),
        "--voltage-kv",
        "300000",
        "--cs-mm",
        "2.7",
        "--amplitude-contrast",
        "0.1",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "300000" in result.stderr and "was it given in V?" in result.stderr


def test_process_finds_the_gain_reference_beside_the_movie(session: Path, tmp_path: Path) -> None:
    """Without a configured gain, the simulated session's gain reference (three folders above
    the EPU movie) is found and used, and said: the trajectory is then within 0.3 px RMS of
    the truth (0.11 px measured; 0.83 px on this movie when the gain is missing)."""
    truth = _truth(session)
    result = _run(
        "process",
        str(session / truth["file"]),
        "--out",
        str(tmp_path / "out"),
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode in (0, 1), result.stderr
    assert f"gain: {session.resolve() / 'gain_reference.mrc'}, found beside the movie" in (
        result.stderr
    )
    shifts = np.asarray(json.loads(result.stdout)["motion"]["shifts_px"])
    error = shifts - np.asarray(truth["shifts_px"])
    error -= error.mean(axis=0)
    assert np.sqrt(np.mean(np.sum(error**2, axis=1))) < 0.3


def test_a_gain_beside_the_movie_that_does_not_fit_is_named_and_not_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mrcfile

    from causalscope.config import load_settings
    from causalscope.daemon.commands.process import _calibration_beside, gain_beside

    data = tmp_path / "Images-Disc1" / "GridSquare_1" / "Data"
    data.mkdir(parents=True)
    movie = data / "FoilHole_1_Data_2_fractions.tiff"
    settings = load_settings(None, None, {})
    assert gain_beside(movie, settings.watcher) is None
    with mrcfile.new(tmp_path / "Gain_Ref.MRC") as mrc:
        mrc.set_data(np.ones((64, 48), dtype=np.float32))
    found = gain_beside(movie, settings.watcher)
    assert found == (tmp_path / "Gain_Ref.MRC").resolve()
    assert gain_beside(movie, settings.watcher, levels=3) is None
    calibration = _calibration_beside(movie, settings, (128, 128), 1)
    assert calibration.gain is None
    said = capsys.readouterr().err
    assert "Gain_Ref.MRC found beside the movie is not used" in said and "48x64 px" in said
