"""`causalscope index`: build an index (the phantom and the junk), add a map under a label,
skip a file that cannot be read (saying why), list the labels; the evaluator's classes then
find the added structure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from causalscope.actors.novelty import NoveltyIndex
from causalscope.daemon.cli import main
from causalscope.daemon.formats.maps import write_mrc_map
from causalscope.models.novelty import map_views
from causalscope.models.simulate.density import specimen_map
from causalscope.models.simulate.specimen import elongated_phantom_specimen


def test_build_add_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "index"
    assert main(["index", "add", str(tmp_path / "x.mrc"), "--index", str(folder)]) == 2
    assert "run `causalscope index build` first" in capsys.readouterr().err
    args = ["--index", str(folder), "--views", "20", "--json"]
    assert main(["index", "build", *args, "--junk", "4"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert [(x["name"], x["kind"], x["entries"]) for x in built["labels"]] == [
        ("ice", "junk", 44),
        ("carbon", "junk", 44),
        ("aggregate", "junk", 44),
        ("empty", "junk", 44),
        ("phantom", "structure", 220),
    ]  # fmt: skip  (4 prototypes or 20 views, each under 11 mask radii)
    volume = specimen_map(elongated_phantom_specimen(), box_px=40, pixel_size_angstrom=3.0)
    write_mrc_map(tmp_path / "lobes.mrc", volume.numpy(), pixel_size_angstrom=3.0)
    (tmp_path / "broken.pdb").write_text("not a model\n")
    status = main(
        ["index", "add", str(tmp_path / "lobes.mrc"), str(tmp_path / "broken.pdb"),
         "--label", "lobes", *args]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 1 and "skipped" in captured.err and "broken.pdb" in captured.err
    shown = json.loads(captured.out)
    assert shown["labels"][-1]["name"] == "lobes" and shown["labels"][-1]["entries"] == 220
    assert main(["index", "show", "--index", str(folder)]) == 0
    assert "440 structure and 176 junk entries" in capsys.readouterr().out
    # a view of the added map, at another sampling, finds it
    views = map_views(
        specimen_map(elongated_phantom_specimen(), box_px=32, pixel_size_angstrom=4.0), views=7
    )
    found = NoveltyIndex(folder).classify(views, pixel_size_angstrom=4.0, scale=0.8)
    assert [f.nearest for f in found] == ["lobes"] * 7
    assert np.max([f.novelty for f in found]) < 0.3
