"""``causalscope pick`` and ``train-picker`` as a user meets them: coordinate files written and
read back, and a clear error naming the file and the value for each kind of bad input."""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import starfile

from causalscope.daemon.cli import main
from causalscope.daemon.formats.coordinates import (
    read_coordinates,
    read_micrograph,
    read_scored_coordinates,
    write_coordinates_csv,
    write_coordinates_star,
)
from causalscope.daemon.picker_training import TrainingItem, check_item
from causalscope.models.errors import FormatError, InputError


def test_coordinate_star_and_csv_round_trip(tmp_path: Path) -> None:
    xy = np.array([[10.25, 20.5], [300.0, 4.75], [7.0, 8.0]])
    scores = np.array([0.9, 0.75, 0.5])
    star = write_coordinates_star(tmp_path / "mic.star", xy, scores)
    text = star.read_text()
    assert "data_" in text and "loop_" in text and "_rlnCoordinateX" in text
    assert "_rlnAutopickFigureOfMerit" in text
    table = starfile.read(star)
    np.testing.assert_allclose(table["rlnAutopickFigureOfMerit"], scores)
    np.testing.assert_allclose(read_coordinates(star), xy)
    csv = write_coordinates_csv(tmp_path / "m.csv", xy, scores)
    np.testing.assert_allclose(read_coordinates(csv), xy)
    for path in (star, csv):  # the scores come back beside their positions
        back = read_scored_coordinates(path)
        np.testing.assert_allclose(back.xy_px, xy)
        assert back.scores is not None
        np.testing.assert_allclose(back.scores, scores)


def _png(path: Path, array: np.ndarray) -> Path:
    path.write_bytes(imagecodecs.png_encode(array))
    return path


def _error(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("causalscope: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_pick_rejects_bad_input_with_file_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grey = _png(tmp_path / "grey.png", np.full((64, 80), 100, dtype=np.uint8))
    rgb = _png(tmp_path / "rgb.png", np.zeros((64, 64, 3), dtype=np.uint8))
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    out = str(tmp_path / "out")
    _error(
        capsys, ["pick", str(text), "--diameter-px", "20", "--out", out], "Not an image", str(text)
    )
    _error(capsys, ["pick", str(rgb), "--diameter-px", "20", "--out", out], "RGB image", str(rgb))
    _error(
        capsys, ["pick", str(grey), "--diameter-px", "3", "--out", out], str(grey), "diameter 3 px"
    )
    _error(
        capsys,
        ["pick", str(grey), "--diameter-px", "65", "--out", out],
        "diameter 65 px",
        "[4, 64]",
    )
    _error(
        capsys,
        ["pick", str(grey), "--diameter-angstrom", "150", "--out", out],
        "No pixel size",
        str(grey),
    )


def test_training_coordinates_outside_the_image_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grey = _png(tmp_path / "grey.png", np.full((64, 80), 100, dtype=np.uint8))
    coords = tmp_path / "picks.csv"
    coords.write_text("x,y\n10,10\n95.5,12\n")
    argv = ["train-picker", str(grey), "--coords", str(coords), "--diameter-px", "16"]
    _error(capsys, [*argv, "--out", str(tmp_path / "w.pt")], "outside", "x=95.5", str(grey))
    with pytest.raises(InputError, match="x=-1"):
        check_item(TrainingItem("m", np.zeros((32, 32), np.float32), np.array([[-1.0, 3.0]]), 8.0))


def test_read_micrograph_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"missing\.mrc"):
        read_micrograph(tmp_path / "missing.mrc")
    image, apix = read_micrograph(
        _png(tmp_path / "g.png", np.arange(400, dtype=np.uint8).reshape(20, 20))
    )
    assert image.dtype == np.float32 and apix is None and image[1, 0] == 20.0


def test_pick_with_the_shipped_model_on_mrc_and_png_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from causalscope.daemon import formats
    from causalscope.daemon.bench._common import still_micrograph
    from causalscope.models.picking import match_picks

    image, truth = still_micrograph(
        512, particles_per_1024=60, seed=5, dose_e_per_a2=40.0, ice_thickness_nm=30.0
    )
    formats.write_mrc_movie(tmp_path / "mic.mrc", image, pixel_size_angstrom=1.0)
    scaled = (image - image.min()) / (image.max() - image.min()) * 255
    _png(tmp_path / "mic8.png", np.round(scaled).astype(np.uint8))
    # 120 A particles at the MRC header's 1 A/px; the PNG has no header: its diameter in px
    files = [str(tmp_path / "mic.mrc"), str(tmp_path / "mic8.png")]
    common = ["--out", str(tmp_path / "picks"), "--threads", "1"]
    assert main(["pick", files[0], "--diameter-angstrom", "120", *common]) == 0
    assert main(["pick", files[1], "--diameter-px", "120", *common]) == 0
    capsys.readouterr()
    xy = np.asarray(truth["particles"])
    inner = np.all((xy > 60) & (xy < 451), axis=1)
    found = [read_coordinates(tmp_path / "picks" / f"{stem}.star") for stem in ("mic", "mic8")]
    for stem, picks in zip(("mic", "mic8"), found, strict=True):
        assert match_picks(picks, xy[inner], radius_px=60.0).f1 >= 0.8
        csv = read_coordinates(tmp_path / "picks" / f"{stem}.csv")
        np.testing.assert_allclose(csv, picks, atol=0.01)
    # the 8-bit export gives the same picks as the float MRC (a pick at p ~ 0.5 may differ)
    agree = match_picks(found[0], found[1], radius_px=3.0)
    assert agree.f1 >= 0.85 and agree.n_true_positive >= len(found[0]) - 1


def test_no_picks_warns_with_the_diameter_and_its_pixel_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from causalscope.daemon import formats
    from causalscope.daemon.bench._common import still_micrograph

    image, _ = still_micrograph(512, particles_per_1024=60, seed=5, dose_e_per_a2=40.0)
    formats.write_mrc_movie(tmp_path / "mic.mrc", image, pixel_size_angstrom=1.0)
    # a wrong pixel size makes the 120 A particles 480 px across: nothing fits
    args = ["pick", str(tmp_path / "mic.mrc"), "--diameter-angstrom", "120"]
    assert main([*args, "--pixel-size-angstrom", "0.25", "--out", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert f"warning: {tmp_path / 'mic.mrc'}: no particle picked at a diameter of 480.0 px" in err
    assert "(--pixel-size-angstrom 0.25)" in err
    assert main([*args, "--out", str(tmp_path / "q")]) == 0  # the header's 1 A/px: picks
    assert "warning" not in capsys.readouterr().err


def test_pick_with_exclude_leaves_carbon_and_cracks_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # simulated sums of counts (1024^2 at 2 A/px, 40 e/A^2, seed 0): without --exclude 22 of
    # 55 picks lay on the carbon film (41 % of the field) and 13 of 60 in the crack
    import json

    from causalscope.daemon import formats
    from causalscope.models.simulate.triage_scenes import simulate_triage_micrograph

    for detail, reason in (("carbon_edge", "dense"), ("crack", "thin")):
        at_2a = {"size_px": 1024, "pixel_size_angstrom": 2.0, "dose_e_per_a2": 40.0}
        scene = simulate_triage_micrograph("contaminated", seed=0, detail=detail, **at_2a)
        assert scene.transmission is not None
        affected = np.abs(scene.transmission - 1.0) > 0.03
        mic = tmp_path / f"{detail}.mrc"
        formats.write_mrc_movie(mic, scene.image.astype(np.float32), pixel_size_angstrom=2.0)
        on_it = []
        for flags in ([], ["--exclude"]):
            out = tmp_path / ("excluded" if flags else "plain")
            argv = ["pick", str(mic), "--diameter-angstrom", "120", "--out", str(out), *flags]
            assert main(argv) == 0
            summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
            xy = read_coordinates(out / f"{detail}.star")
            ij = np.clip(np.round(xy[:, ::-1]).astype(int), 0, 1023)
            on_it.append(int(affected[ij[:, 0], ij[:, 1]].sum()))
        assert on_it[0] >= 5 and on_it[1] == 0
        # the area stored per reason is the truly affected area, within 5 % of the field
        assert abs(summary["excluded_fractions"][reason] - affected.mean()) < 0.05
        assert summary["picks_excluded"] >= on_it[0] and summary["picks"] >= 30


def test_pick_with_exclude_refuses_what_it_cannot_judge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from causalscope.daemon import formats

    grey = _png(tmp_path / "grey.png", np.full((64, 80), 100, dtype=np.uint8))
    out = str(tmp_path / "out")
    args = ["--diameter-px", "20", "--out", out, "--exclude"]
    _error(capsys, ["pick", str(grey), *args, "--pixel-size-angstrom", "1"], "8-bit", str(grey))
    normalised = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    normalised -= normalised.mean()
    formats.write_mrc_movie(tmp_path / "norm.mrc", normalised, pixel_size_angstrom=1.0)
    _error(capsys, ["pick", str(tmp_path / "norm.mrc"), *args], "needs counts", "has mean")
    _error(capsys, ["pick", str(grey), *args], "No pixel size for --exclude", str(grey))
