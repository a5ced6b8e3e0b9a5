"""PNG writer: round trip, atomic, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from causalscope.daemon.formats.png import read_png, write_png


def test_round_trip(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(37, 53), dtype=np.uint8)
    path = write_png(tmp_path / "sub" / "x.png", image)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(read_png(path), image)
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]  # no temporary left


def test_rejects_non_uint8(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "x.png", np.zeros((4, 4), dtype=np.float32))
