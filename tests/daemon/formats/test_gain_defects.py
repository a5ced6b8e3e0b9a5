"""Gain references (RELION's rotation/flip conventions) and SerialEM/IMOD defect lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from causalscope.daemon.formats import (
    read_defects,
    read_gain,
    transform_gain,
    write_defects,
    write_gain,
)
from causalscope.models.errors import FormatError

# A small asymmetric gain, 2 rows x 3 columns.
G = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)


def _relion_rotate(src: np.ndarray, turns: int) -> np.ndarray:
    """RELION's ImageOp::rotate90/180/270 loops (src/jaz/image_op.h), written out literally."""
    h, w = src.shape
    if turns == 0:
        return src.copy()
    dest = np.zeros((w, h) if turns % 2 else (h, w), dtype=src.dtype)
    for y in range(h):
        for x in range(w):
            if turns == 1:
                dest[x, h - 1 - y] = src[y, x]
            elif turns == 2:
                dest[h - 1 - y, w - 1 - x] = src[y, x]
            else:
                dest[w - 1 - x, y] = src[y, x]
    return dest


def _relion_flip(src: np.ndarray, flip: int) -> np.ndarray:
    """RELION's ImageOp::flipY (1) and flipX (2): dest[y, x] = src[h-1-y, x] / src[y, w-1-x]."""
    h, w = src.shape
    dest = np.empty_like(src)
    for y in range(h):
        for x in range(w):
            if flip == 0:
                dest[y, x] = src[y, x]
            elif flip == 1:
                dest[y, x] = src[h - 1 - y, x]
            else:
                dest[y, x] = src[y, w - 1 - x]
    return dest


def test_gain_rotation_by_hand() -> None:
    # One quarter turn: the top row 1 2 3 becomes the right column (clockwise with row 0 at
    # the top, as relion_display shows it).
    np.testing.assert_array_equal(transform_gain(G, rotation=1), [[4, 1], [5, 2], [6, 3]])
    np.testing.assert_array_equal(transform_gain(G, rotation=2), [[6, 5, 4], [3, 2, 1]])
    np.testing.assert_array_equal(transform_gain(G, rotation=3), [[3, 6], [2, 5], [1, 4]])
    # Flips come after the rotation.
    np.testing.assert_array_equal(transform_gain(G, rotation=1, flip="y"), [[6, 3], [5, 2], [4, 1]])
    np.testing.assert_array_equal(transform_gain(G, rotation=1, flip="x"), [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(transform_gain(G, flip=1), [[4, 5, 6], [1, 2, 3]])
    np.testing.assert_array_equal(transform_gain(G, flip=2), [[3, 2, 1], [6, 5, 4]])


@pytest.mark.parametrize("rotation", [0, 1, 2, 3])
@pytest.mark.parametrize("flip", [0, 1, 2])
def test_gain_transform_matches_relion_loops(rotation: int, flip: int) -> None:
    gain = np.arange(4 * 7, dtype=np.float32).reshape(4, 7)
    expected = _relion_flip(_relion_rotate(gain, rotation), flip)
    np.testing.assert_array_equal(transform_gain(gain, rotation=rotation, flip=flip), expected)
    # the same in NumPy: quarter turns clockwise (k = -rotation), then flip rows or columns
    numpy_form = np.rot90(gain, k=-rotation)
    if flip:
        numpy_form = np.flip(numpy_form, axis=flip - 1)
    name = {0: "none", 1: "y", 2: "x"}[flip]
    np.testing.assert_array_equal(transform_gain(gain, rotation=rotation, flip=name), numpy_form)


def test_gain_transform_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rotation must be 0, 1, 2 or 3"):
        transform_gain(G, rotation=4)
    with pytest.raises(ValueError, match="flip must be 0, 1 or 2"):
        transform_gain(G, flip=3)


def test_gain_round_trip(tmp_path: Path) -> None:
    gain = np.random.default_rng(2).uniform(0.8, 1.2, size=(30, 41)).astype(np.float32)
    path = write_gain(tmp_path / "gain.mrc", gain, pixel_size_angstrom=0.5)
    back = read_gain(path)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, gain)
    tifffile.imwrite(tmp_path / "gain.tiff", gain)
    np.testing.assert_array_equal(read_gain(tmp_path / "gain.tiff"), gain)


def test_gain_with_nan_is_refused(tmp_path: Path) -> None:
    gain = np.ones((4, 4), dtype=np.float32)
    gain[1, 2] = np.nan
    tifffile.imwrite(tmp_path / "bad.tif", gain)
    with pytest.raises(FormatError, match=r"bad\.tif: 1 pixels are NaN or infinite"):
        read_gain(tmp_path / "bad.tif")


def test_defects_round_trip(tmp_path: Path) -> None:
    path = write_defects(
        tmp_path / "defects.txt",
        columns=[3, 4, 10],
        rows=[7],
        pixels=[(1, 2), (20, 0)],
        shape=(12, 24),
    )
    text = path.read_text()
    assert text.splitlines()[:2] == ["CameraSizeX 24", "CameraSizeY 12"]
    assert "BadColumns 3 4 10" in text and "BadRows 7" in text and "BadPixels 1 2 20 0" in text
    expected = np.zeros((12, 24), dtype=bool)
    expected[:, [3, 4, 10]] = True
    expected[7, :] = True
    expected[2, 1] = expected[0, 20] = True
    np.testing.assert_array_equal(read_defects(path, (12, 24)), expected)


def test_imod_defect_file_with_every_keyword(tmp_path: Path) -> None:
    path = tmp_path / "defects_K3.txt"
    path.write_text(
        "# a comment\n"
        "CameraSizeX 16\r\n"
        "CameraSizeY 8\n"
        "RotationAndFlip 0\n"
        "WasScaled 0\n"
        "K2Type 1\n"
        "SomeFutureKeyword 1 2 3\n"
        "UsableArea 0 1 0 15\n"
        "PartialBadColumn 5 2 1 3\n"
        "PartialBadRow 6 1 2 4\n"
        "BadPixels 9 0 12 7\n"
        "BadColumns 8\n"
    )
    expected = np.zeros((8, 16), dtype=bool)
    expected[:, 0] = expected[:, 15] = True  # outside UsableArea columns 1..14
    expected[1:4, 5:7] = True
    expected[6, 2:5] = True
    expected[0, 9] = expected[7, 12] = True
    expected[:, 8] = True
    mask = read_defects(path, (8, 16))
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(read_defects(path, (8, 16), flip_y=True), expected[::-1])
    # super-resolution images: each chip defect covers 2x2 pixels
    np.testing.assert_array_equal(
        read_defects(path, (16, 32)), np.repeat(np.repeat(expected, 2, 0), 2, 1)
    )
    # binned by 2: a binned pixel is bad when any of its chip pixels is
    np.testing.assert_array_equal(
        read_defects(path, (4, 8)), expected.reshape(4, 2, 8, 2).any(axis=(1, 3))
    )


def test_plain_pixel_list(tmp_path: Path) -> None:
    path = tmp_path / "pixels.txt"
    path.write_text("0 0\n5 3\n\n2 1\n")
    mask = read_defects(path, (4, 6))
    assert sorted(map(tuple, np.argwhere(mask).tolist())) == [(0, 0), (1, 2), (3, 5)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("RotationAndFlip 3\nBadColumns 1\n", "RotationAndFlip 3"),
        ("CameraSizeX 10\nCameraSizeY 10\nBadColumns 1\n", "camera size 10x10"),
        ("BadPixels 1 2 3\n", "BadPixels needs 2 (pairs) values"),
        ("BadColumns 99\n", "BadColumns 99 lies outside the 6x4 camera"),
        ("hello world\n", "line 1: 'hello world'"),
        ("# only a comment\n", "lists no defects"),
    ],
)
def test_bad_defect_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad_defects.txt"
    path.write_text(text)
    with pytest.raises(FormatError) as err:
        read_defects(path, (4, 6))
    assert message in err.value.message and "bad_defects.txt" in err.value.message
