"""``bench picking --topaz``: Topaz's command lines, its picks read back, the best cut and the
errors, on known answers. Topaz itself is never needed: a stand-in interpreter does what Topaz's
preprocess (bin by S) and extract (peaks, coordinates times -x) do with coordinates."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from causalscope.daemon.bench._cryoppp import RealMicrograph
from causalscope.daemon.bench.picking_topaz import (
    TopazPicks,
    best_cut,
    check_topaz,
    merge_topaz,
    read_topaz_picks,
    topaz_commands,
    topaz_on_set,
    topaz_scale,
)
from causalscope.models.errors import FormatError, InputError

# what Topaz does to coordinates: preprocess -s S bins (every S-th pixel here), extract finds
# the peaks of the binned image and writes them times -x (rounded), x along columns
FAKE_TOPAZ = """
import sys
from pathlib import Path

import mrcfile
import numpy as np

args = sys.argv[1:]
if args[0] == "-c":
    print("0.3.20-stand-in 2.13.0")
    sys.exit(0)
module, rest = args[1], args[2:]


def option(flag):
    return rest[rest.index(flag) + 1]


files = [Path(a) for a in rest if a.endswith(".mrc")]
if module == "topaz.commands.preprocess":
    scale, folder = int(option("-s")), Path(option("-o"))
    folder.mkdir(exist_ok=True)
    for path in files:
        with mrcfile.open(path) as mrc:
            binned = np.asarray(mrc.data)[::scale, ::scale].copy()
        with mrcfile.new(folder / path.name) as mrc:
            mrc.set_data(binned)
elif module == "topaz.commands.extract":
    if option("-m") != "resnet16":
        sys.exit("wrong model")
    up = float(option("-x"))
    with open(option("-o"), "w") as out:
        print("image_name\\tx_coord\\ty_coord\\tscore", file=out)
        for path in files:
            with mrcfile.open(path) as mrc:
                data = np.asarray(mrc.data)
            for row, col in zip(*np.nonzero(data != 0)):
                score = float(data[row, col])
                print(f"{path.stem}\\t{round(col * up)}\\t{round(row * up)}\\t{score}", file=out)
else:
    sys.exit(f"no module {module}")
"""


def _interpreter(folder: Path, body: str) -> Path:
    path = folder / "python"
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _micrograph(name: str, truth: list[tuple[float, float]], diameter: float) -> RealMicrograph:
    return RealMicrograph(name, np.zeros((256, 256), np.float32), np.array(truth), diameter, 1.0)


def test_scale_and_command_lines_for_known_diameters(tmp_path: Path) -> None:
    # particles ~28 px across after binning: 56 px -> 2, 36 px -> 1 (not 0), 120 px -> 4
    assert [topaz_scale(d) for d in (56.0, 36.0, 120.0, 10.0)] == [2, 1, 4, 1]
    mrcs = [tmp_path / "a.mrc", tmp_path / "b.mrc"]
    preprocess, extract = topaz_commands(
        "/env/bin/python", mrcs, tmp_path, diameter_px=56.0, threads=1
    )
    pre = str(tmp_path / "preprocessed")
    assert preprocess == [
        "/env/bin/python", "-m", "topaz.commands.preprocess", "-s", "2", "-d", "-1", "-j", "1",
        "-o", pre, str(mrcs[0]), str(mrcs[1]),
    ]  # fmt: skip
    # radius in binned pixels (half of 56 / 2), coordinates scaled back up by the same S
    assert extract == [
        "/env/bin/python", "-m", "topaz.commands.extract", "-m", "resnet16", "-r", "14",
        "-x", "2", "-p", "512", "-d", "-1", "-j", "1", "-o", str(tmp_path / "picks.txt"),
        f"{pre}/a.mrc", f"{pre}/b.mrc",
    ]  # fmt: skip
    _, extract = topaz_commands("py", mrcs, tmp_path, diameter_px=36.0, threads=2)
    assert extract[extract.index("-r") + 1] == "18"
    assert extract[extract.index("-x") + 1] == "1"
    assert extract[extract.index("-j") + 1] == "2"


def test_topaz_picks_are_read_back_per_micrograph(tmp_path: Path) -> None:
    path = tmp_path / "picks.txt"
    path.write_text(
        "image_name\tx_coord\ty_coord\tscore\n"
        "mic_2\t40\t12\t-1.5\n"
        "mic_1\t100\t300\t5.25\n"
        "mic_1\t8\t16\t0.0\n"
        "mic_1\t640\t2\t-3.0\n"
    )
    picks = read_topaz_picks(path)
    assert sorted(picks) == ["mic_1", "mic_2"]
    np.testing.assert_array_equal(picks["mic_1"].xy_px, [[100, 300], [8, 16], [640, 2]])
    np.testing.assert_array_equal(picks["mic_1"].scores, [5.25, 0.0, -3.0])
    np.testing.assert_array_equal(picks["mic_2"].xy_px, [[40, 12]])
    # p >= 0.5 is score >= 0, the pick at exactly 0 included
    np.testing.assert_array_equal(picks["mic_1"].above(0.0), [[100, 300], [8, 16]])
    assert len(picks["mic_2"].above(0.0)) == 0


def test_a_file_without_topaz_columns_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "picks.txt"
    path.write_text("image_name\tx\ty\nmic\t1\t2\n")
    with pytest.raises(FormatError, match=r"picks\.txt has no score column"):
        read_topaz_picks(path)


def test_best_cut_on_a_known_case() -> None:
    # A: two particles, picked at scores 3 and 1, false picks at 2 and -1; B: one particle at
    # 2.5, a false pick at 0.5. Mean F1 by cut: -1: 0.667, 0.5: 0.733, 1: 0.9, 2: 0.75,
    # 2.5: 0.833, 3: 0.333
    micrographs = [
        _micrograph("A", [(50, 50), (150, 150)], 40.0),
        _micrograph("B", [(100, 100)], 40.0),
    ]
    picks = [
        TopazPicks(
            np.array([[52, 49], [150, 155], [30, 200], [220, 220]]), np.array([3, 1, 2, -1])
        ),
        TopazPicks(np.array([[100, 100], [200, 30]]), np.array([2.5, 0.5])),
    ]
    cut, f1 = best_cut(picks, micrographs)
    assert cut == 1.0
    assert f1 == pytest.approx(0.9)
    # a pick beyond half a diameter (20 px) from its particle does not count
    far = [TopazPicks(np.array([[100, 121]]), np.array([1.0]))]
    assert best_cut(far, micrographs[1:]) == (1.0, 0.0)
    # fewer candidates (quantiles of the scores) still include the best one here
    assert best_cut(picks, micrographs, max_cuts=3) == (1.0, pytest.approx(0.9))


def test_topaz_scores_a_set_end_to_end_with_a_stand_in(tmp_path: Path) -> None:
    """The MRCs written, the commands run, the picks read back on the unbinned grid, scored:
    with -x dropped or x/y swapped the particles would not be found."""
    python = _interpreter(tmp_path, FAKE_TOPAZ)
    truth = [(20.0, 30.0), (60.0, 180.0), (200.0, 40.0)]  # multiples of S = 2 survive binning
    micrographs = []
    for name in ("one.png", "two.png"):
        m = _micrograph(name, truth, 56.0)
        for x, y in truth:
            m.image[int(y), int(x)] = 2.0  # a particle: score 2
        m.image[100, 120] = -1.0  # a false pick below p = 0.5
        micrographs.append(m)
    micrographs[1].image[140, 220] = 0.5  # a false pick above it, on the second only
    result = topaz_on_set(str(python), micrographs, threads=1)
    first, second = result["rows"]
    assert first["micrograph"] == "one.png"
    assert first["n_kept_by_topaz"] == 4
    assert first["topaz_p05"] == {"n_picks": 3, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert second["topaz_p05"]["n_picks"] == 4
    assert second["topaz_p05"]["f1"] == pytest.approx(2 * 0.75 / 1.75, abs=1e-3)
    assert result["summary"]["topaz_best_cut_score"] == 2.0
    assert result["summary"]["topaz_best_cut_f1"] == 1.0
    assert result["summary"]["topaz_scale"] == 2
    assert result["coordinates"]["as_read_f1"] > result["coordinates"]["divided_by_scale_f1"]
    assert result["coordinates"]["mean_offset_xy_px"] == [0.0, 0.0]
    # beside the learned picker's row of the same split and micrograph
    learned = {"rows": [{"split": "s", "micrograph": "two.png"}], "summary": {"s": {"x": 1}}}
    rows = [{"split": "s", **row} for row in result["rows"]]
    merge_topaz(learned, {"rows": rows, "summary": {"s": result["summary"]}})
    assert learned["rows"][0]["topaz_p05"] == second["topaz_p05"]
    assert learned["summary"]["s"]["x"] == 1
    assert learned["summary"]["s"]["topaz_p05_f1"] == result["summary"]["topaz_p05_f1"]


def test_a_missing_interpreter_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-venv" / "bin" / "python"
    with pytest.raises(InputError, match=rf"--topaz {missing} does not exist"):
        check_topaz(str(missing))
    plain = tmp_path / "python"
    plain.write_text("not a program")
    with pytest.raises(InputError, match=rf"--topaz {plain} is not an executable file"):
        check_topaz(str(plain))


def test_an_interpreter_without_topaz_is_named_with_what_failed(tmp_path: Path) -> None:
    # the project's own interpreter: topaz is never installed there
    with pytest.raises(InputError, match=r"import topaz, torch` failed.*No module named 'topaz'"):
        check_topaz(sys.executable)
    python = _interpreter(tmp_path, FAKE_TOPAZ)
    assert check_topaz(str(python)) == "topaz-em 0.3.20-stand-in, torch 2.13.0"


def test_a_failing_topaz_command_is_named(tmp_path: Path) -> None:
    python = _interpreter(tmp_path, FAKE_TOPAZ.replace('"resnet16"', '"other"'))
    micrograph = _micrograph("one.png", [(20.0, 30.0)], 56.0)
    with pytest.raises(InputError, match=rf"{python} -m topaz.commands.extract exited with 1"):
        topaz_on_set(str(python), [micrograph], threads=1)


def test_the_bench_refuses_a_bad_interpreter_before_running(tmp_path: Path) -> None:
    from tests.daemon.cli_run import run_cli

    (tmp_path / "data" / "picking").mkdir(parents=True)
    missing = tmp_path / "nowhere" / "python"
    done = run_cli(
        "bench", "picking", "--topaz", str(missing), "--shared-data", str(tmp_path / "data"),
        cwd=tmp_path, env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode != 0
    assert "Topaz interpreter not found" in done.stderr
    assert f"--topaz {missing} does not exist" in done.stderr


def test_the_real_only_bench_names_missing_real_micrographs(tmp_path: Path) -> None:
    from causalscope.daemon.bench.picking import run_picking_bench
    from tests.daemon.cli_run import run_cli

    done = run_cli(
        "bench", "picking", "--real-only", "--shared-data", str(tmp_path / "data"),
        cwd=tmp_path, env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode != 0
    assert f"--real-only needs {tmp_path / 'data' / 'picking'}, which does not exist" in done.stderr
    with pytest.raises(InputError, match="--real-only picks on SHARED_DATA/picking"):
        run_picking_bench(
            cases=["typical"], size=256, seeds=[0], timing_size=None, device="cpu",
            shared_data=None, real_only=True,
        )  # fmt: skip
