"""``causalscope score`` as a user meets it: a verdict per file, JSON that reads back, and a
clear error naming the file for unreadable input or a missing pixel size."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from causalscope.daemon.cli import main


def _mrc(path: Path, image: np.ndarray, apix: float) -> Path:
    with mrcfile.new(path) as mrc:
        mrc.set_data(image.astype(np.float32))
        mrc.voxel_size = apix
    return path


def test_score_mrc_files_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # an empty hole (Poisson counts of a uniform beam) and a ball of ice 150 nm thick at its
    # centre, 480 A across, darkening the counts by mass thickness (exp(-t / 300 nm))
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:256] - 128.0
    chord_a = 2 * np.sqrt(np.clip(60.0**2 - x**2 - y**2, 0, None)) * 5.0
    ball = rng.poisson(1000.0 * np.exp(-chord_a / 3000.0)).astype(np.float32)
    a = _mrc(tmp_path / "a.mrc", rng.poisson(640.0, (256, 256)).astype(np.float32), 4.0)
    b = _mrc(tmp_path / "b.mrc", ball, 5.0)
    assert main(["score", str(a), str(b), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["label"] for line in lines] == ["empty", "contaminated"]
    assert "dark dense bodies" in lines[1]["reason"]
    assert lines[1]["pixel_size_angstrom"] == pytest.approx(5.0)  # from the header
    assert sum(lines[0]["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    assert lines[0]["reason"]


def test_png_needs_pixel_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import imagecodecs

    rng = np.random.default_rng(0)
    png = tmp_path / "thumb.png"
    png.write_bytes(imagecodecs.png_encode(rng.integers(90, 110, (128, 128), dtype=np.uint8)))
    assert main(["score", str(png)]) != 0
    err = capsys.readouterr().err
    assert "thumb.png" in err and "--pixel-size" in err
    assert main(["score", str(png), "--pixel-size", "4"]) == 0
    assert "empty" in capsys.readouterr().out  # uniform noise: no structure


def test_unreadable_file_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.mrc"
    bad.write_bytes(b"not an mrc file at all" * 10)
    assert main(["score", str(bad), "--pixel-size", "4"]) != 0
    assert "broken.mrc" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "missing.png"), "--pixel-size", "4"]) != 0
    assert "missing.png" in capsys.readouterr().err
