"""EER: our 7-bit RLE + 2+2 sub-pixel encoder against imagecodecs' decoder, exact at 1x/2x/4x."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from causalscope.daemon.formats import check_complete, movie_info, read_movie, write_eer_movie
from causalscope.models.errors import FormatError

H, W = 40, 56


def _positions(rng: np.random.Generator, n_frames: int, per_frame: int) -> list[np.ndarray]:
    """Electron positions (x, y) on a quarter-pixel grid, at most one per pixel per frame."""
    frames = []
    for _ in range(n_frames):
        flat = rng.choice(H * W, size=per_frame, replace=False)
        y, x = np.divmod(flat, W)
        sub = rng.integers(0, 4, size=(per_frame, 2))
        frames.append(np.stack([x + sub[:, 0] / 4 + 0.1, y + sub[:, 1] / 4 + 0.1], axis=1))
    return frames


def _render(positions: list[np.ndarray], upsampling: int) -> np.ndarray:
    """The expected counts: each electron on its sub-pixel of the upsampled grid."""
    out = np.zeros((len(positions), H * upsampling, W * upsampling), dtype=np.int64)
    for i, xy in enumerate(positions):
        col = np.floor(xy[:, 0] * upsampling).astype(int)
        row = np.floor(xy[:, 1] * upsampling).astype(int)
        np.add.at(out[i], (row, col), 1)
    return out


@pytest.mark.parametrize("upsampling", [1, 2, 4])
@pytest.mark.parametrize("grouping", [1, 3])
def test_eer_round_trip_is_exact(tmp_path: Path, upsampling: int, grouping: int) -> None:
    rng = np.random.default_rng(7)
    positions = _positions(rng, n_frames=8, per_frame=150)
    path = write_eer_movie(tmp_path / "m.eer", positions, shape=(H, W))
    back = read_movie(path, eer_upsampling=upsampling, eer_grouping=grouping)
    n_fractions = 8 // grouping  # 8 frames, grouping 3: the last 2 frames are dropped
    expected = _render(positions[: n_fractions * grouping], upsampling)
    expected = expected.reshape(n_fractions, grouping, *expected.shape[1:]).sum(axis=1)
    assert back.dtype == np.uint16
    assert back.shape == (n_fractions, H * upsampling, W * upsampling)
    np.testing.assert_array_equal(back, expected)


def test_sub_pixel_of_one_electron_at_4x(tmp_path: Path) -> None:
    # One electron at x = 10.75, y = 3.25: pixel (3, 10), sub-pixel column 3, row 1.
    path = write_eer_movie(tmp_path / "one.eer", [np.array([[10.75, 3.25]])], shape=(H, W))
    render = read_movie(path, eer_upsampling=4)[0]
    assert np.argwhere(render).tolist() == [[3 * 4 + 1, 10 * 4 + 3]]
    assert np.argwhere(read_movie(path, eer_upsampling=2)[0]).tolist() == [[6, 21]]
    assert np.argwhere(read_movie(path)[0]).tolist() == [[3, 10]]


def test_counts_are_placed_on_seeded_sub_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    counts = (rng.random((5, H, W)) < 0.1).astype(np.uint8)
    a = write_eer_movie(tmp_path / "a.eer", counts, seed=11, pixel_size_angstrom=0.77)
    b = write_eer_movie(tmp_path / "b.eer", counts, seed=11)
    c = write_eer_movie(tmp_path / "c.eer", counts, seed=12)
    np.testing.assert_array_equal(read_movie(a), counts)
    four = read_movie(a, eer_upsampling=4)
    np.testing.assert_array_equal(four.reshape(5, H, 4, W, 4).sum(axis=(2, 4)), counts)
    np.testing.assert_array_equal(four, read_movie(b, eer_upsampling=4))
    assert not np.array_equal(four, read_movie(c, eer_upsampling=4))
    # all 16 sub-pixel positions occur
    assert np.all(four.reshape(5, H, 4, W, 4).sum(axis=(0, 1, 3)) > 0)


def test_long_runs_and_edges_are_encoded(tmp_path: Path) -> None:
    # Gaps of exactly 127 and 254 pixels, electrons on the first and the last pixel,
    # an empty frame, and a frame that is full.
    h, w = 16, 64
    first_last = np.zeros((h, w), dtype=np.uint8)
    first_last.flat[[0, 128, 128 + 128, 128 + 128 + 255, h * w - 1]] = 1
    frames = np.stack([first_last, np.zeros((h, w), np.uint8), np.ones((h, w), np.uint8)])
    path = write_eer_movie(tmp_path / "edges.eer", frames)
    np.testing.assert_array_equal(read_movie(path), frames)
    np.testing.assert_array_equal(
        read_movie(path, eer_upsampling=4).reshape(3, h, 4, w, 4).sum(axis=(2, 4)), frames
    )


def test_eer_file_is_what_tifffile_calls_eer(tmp_path: Path) -> None:
    counts = np.zeros((3, H, W), dtype=np.uint8)
    path = write_eer_movie(tmp_path / "m.eer", counts, pixel_size_angstrom=0.75, exposure_time_s=2)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff and tif.pages.first.is_eer
        assert {int(p.compression) for p in tif.pages} == {65001}
        assert tif.eer_metadata["numberOfFrames"] == 3
        assert tif.eer_metadata["exposureTime"] == 2
    info = movie_info(path)
    assert (info.format, info.n_frames, info.height_px, info.width_px) == ("eer", 3, H, W)
    assert info.pixel_size_angstrom == pytest.approx(0.75)


def test_fraction_selection(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    counts = (rng.random((6, H, W)) < 0.2).astype(np.uint8)
    path = write_eer_movie(tmp_path / "m.eer", counts)
    grouped = counts.reshape(3, 2, H, W).sum(axis=1)
    np.testing.assert_array_equal(read_movie(path, eer_grouping=2, frames=[2, 0]), grouped[[2, 0]])


def test_full_size_falcon_frame_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = (rng.random((1, 4096, 4096)) < 0.05).astype(np.uint8)
    path = write_eer_movie(tmp_path / "big.eer", frame)
    np.testing.assert_array_equal(read_movie(path), frame)


def test_writer_refuses_two_electrons_in_one_pixel(tmp_path: Path) -> None:
    counts = np.zeros((2, 4, 4), dtype=np.uint8)
    counts[1, 2, 2] = 2
    with pytest.raises(ValueError, match=r"frame 1 has counts 0\.\.2"):
        write_eer_movie(tmp_path / "x.eer", counts)
    with pytest.raises(ValueError, match="two electrons in one pixel"):
        write_eer_movie(tmp_path / "y.eer", [np.array([[1.1, 1.1], [1.9, 1.9]])], shape=(4, 4))


def test_bad_arguments(tmp_path: Path) -> None:
    path = write_eer_movie(tmp_path / "m.eer", np.zeros((2, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="upsampling must be 1, 2 or 4"):
        read_movie(path, eer_upsampling=3)
    with pytest.raises(FormatError, match="has 2 frames, fewer than one group of 5"):
        read_movie(path, eer_grouping=5)


def test_truncated_eer_is_detected(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    whole = write_eer_movie(tmp_path / "whole.eer", (rng.random((20, H, W)) < 0.3).astype(np.uint8))
    data = whole.read_bytes()
    half = tmp_path / "half.eer"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError) as err:
        check_complete(half)
    assert err.value.title == "Truncated EER movie" and "half.eer" in err.value.message


def test_a_plain_tiff_named_eer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.eer"
    tifffile.imwrite(path, np.zeros((2, 8, 8), dtype=np.uint8), metadata=None)
    with pytest.raises(FormatError) as err:
        read_movie(path)
    assert err.value.title == "Not an EER movie" and "plain.eer" in err.value.message


def test_corrupt_eer_strip_is_named(tmp_path: Path) -> None:
    path = write_eer_movie(tmp_path / "m.eer", np.ones((2, 8, 8), dtype=np.uint8))
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[1].dataoffsets[0], tif.pages[1].databytecounts[0]
    data[offset : offset + count] = b"\xff" * count  # runs past the last pixel
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError) as err:
        read_movie(path)
    assert err.value.title == "Corrupt EER movie" and "m.eer" in err.value.message
