"""MRC and TIFF movies: exact round trips, header info, completeness checks, bad input."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile

from causalscope.daemon.formats import (
    check_complete,
    movie_info,
    read_movie,
    write_micrograph,
    write_mrc_movie,
    write_tiff_movie,
)
from causalscope.models.errors import FormatError

RNG = np.random.default_rng(20240501)


def _counts(shape: tuple[int, ...], high: int) -> np.ndarray:
    return RNG.integers(0, high + 1, size=shape)


@pytest.mark.parametrize(
    ("mode", "frames"),
    [
        (0, _counts((5, 24, 40), 127).astype(np.int8)),
        (1, RNG.integers(-3000, 3000, size=(3, 16, 20)).astype(np.int16)),
        (2, RNG.normal(size=(4, 18, 22)).astype(np.float32)),
        (6, _counts((3, 20, 30), 60000).astype(np.uint16)),
        (12, RNG.normal(size=(3, 12, 14)).astype(np.float16)),
    ],
)
def test_mrc_round_trip_every_mode(tmp_path: Path, mode: int, frames: np.ndarray) -> None:
    path = write_mrc_movie(tmp_path / "m.mrcs", frames, pixel_size_angstrom=0.83, mode=mode)
    with mrcfile.open(path, header_only=True) as mrc:
        assert int(mrc.header.mode) == mode
    back = read_movie(path)
    assert back.dtype == frames.dtype
    np.testing.assert_array_equal(back, frames)
    info = movie_info(path)
    assert (info.n_frames, info.height_px, info.width_px) == frames.shape
    assert info.pixel_size_angstrom == pytest.approx(0.83, rel=1e-6)
    assert info.bytes_expected == info.bytes_on_disk == 1024 + frames.nbytes


def test_mrc_mode_is_chosen_from_the_values(tmp_path: Path) -> None:
    small = _counts((2, 8, 8), 127)
    large = small.copy()
    large[0, 0, 0] = 300
    write_mrc_movie(tmp_path / "small.mrc", small, pixel_size_angstrom=1.0)
    write_mrc_movie(tmp_path / "large.mrc", large, pixel_size_angstrom=1.0)
    assert movie_info(tmp_path / "small.mrc").dtype == "int8"
    assert movie_info(tmp_path / "large.mrc").dtype == "uint16"
    np.testing.assert_array_equal(read_movie(tmp_path / "large.mrc"), large)


def test_mrc_integer_mode_refuses_inexact_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not exactly representable"):
        write_mrc_movie(tmp_path / "x.mrc", np.full((1, 4, 4), 200), pixel_size_angstrom=1, mode=0)


def test_a_micrograph_is_stored_as_float16_only_where_its_rounding_is_negligible(
    tmp_path: Path,
) -> None:
    """A sum of about 40 counts per pixel goes to mode 12 at half the bytes, each value within
    half of float16's spacing (2^-11 of itself); a spread of 1e-3 around 1000 (rounding would add
    far over 1e-4 of its variance), a value past 65504 and a NaN stay float32, exactly; without
    ``float16`` nothing changes."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(40.0, size=(256, 256)).astype(np.float32) + rng.normal(
        0, 0.3, size=(256, 256)
    ).astype(np.float32)
    half = write_micrograph(tmp_path / "half.mrc", counts, pixel_size_angstrom=1.2, float16=True)
    whole = write_micrograph(tmp_path / "whole.mrc", counts, pixel_size_angstrom=1.2)
    with mrcfile.open(half) as mrc:
        assert int(mrc.header.mode) == 12
        assert float(mrc.voxel_size.x) == pytest.approx(1.2)
        stored = np.asarray(mrc.data, dtype=np.float32)
    assert (np.abs(stored - counts) <= 2.0**-11 * np.abs(counts)).all()  # half a spacing
    assert half.stat().st_size < 0.51 * whole.stat().st_size
    with mrcfile.open(whole) as mrc:
        assert int(mrc.header.mode) == 2 and np.array_equal(mrc.data, counts)
    flat = (1000.0 + rng.normal(0, 1e-3, size=(64, 64))).astype(np.float32)
    large = counts * 2000.0
    broken = counts.copy()
    broken[0, 0] = np.nan
    for name, image in {"flat": flat, "large": large, "nan": broken}.items():
        path = write_micrograph(
            tmp_path / f"{name}.mrc", image, pixel_size_angstrom=1.0, float16=True
        )
        with mrcfile.open(path, permissive=True) as mrc:
            assert int(mrc.header.mode) == 2, name
            assert np.array_equal(mrc.data, image, equal_nan=True), name


def test_single_image_becomes_one_frame(tmp_path: Path) -> None:
    image = RNG.normal(size=(10, 12)).astype(np.float32)
    write_mrc_movie(tmp_path / "one.mrc", image, pixel_size_angstrom=1.0)
    back = read_movie(tmp_path / "one.mrc")
    assert back.shape == (1, 10, 12)
    np.testing.assert_array_equal(back[0], image)


def test_frame_selection_reads_only_those_frames(tmp_path: Path) -> None:
    frames = _counts((6, 8, 9), 100)
    write_mrc_movie(tmp_path / "m.mrc", frames, pixel_size_angstrom=1.0)
    write_tiff_movie(tmp_path / "m.tif", frames)
    for name in ("m.mrc", "m.tif"):
        np.testing.assert_array_equal(read_movie(tmp_path / name, frames=[4, 1]), frames[[4, 1]])
        np.testing.assert_array_equal(read_movie(tmp_path / name, frames=slice(2, 4)), frames[2:4])
    with pytest.raises(FormatError, match="has 6 frames; frame 6"):
        read_movie(tmp_path / "m.mrc", frames=[6])


@pytest.mark.parametrize("compression", ["lzw", "none"])
def test_tiff_round_trip(tmp_path: Path, compression: str) -> None:
    frames = _counts((7, 33, 45), 255).astype(np.uint8)
    path = write_tiff_movie(tmp_path / "m.tiff", frames, compression=compression)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 7
        assert tif.pages.first.compression == (5 if compression == "lzw" else 1)
    back = read_movie(path)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, frames)
    info = check_complete(path)
    assert (info.format, info.n_frames, info.height_px, info.width_px) == ("tiff", 7, 33, 45)
    assert info.pixel_size_angstrom is None
    assert info.bytes_expected <= info.bytes_on_disk


def test_tiff_writer_refuses_values_over_255(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"0\.\.255"):
        write_tiff_movie(tmp_path / "x.tif", np.full((1, 4, 4), 256))


def test_atomic_write_leaves_no_temporary(tmp_path: Path) -> None:
    write_mrc_movie(tmp_path / "a.mrc", np.zeros((1, 4, 4)), pixel_size_angstrom=1.0)
    write_tiff_movie(tmp_path / "a.tif", np.zeros((1, 4, 4)), atomic=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mrc", "a.tif"]


def _half_written(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def test_check_complete_detects_an_mrc_mid_write(tmp_path: Path) -> None:
    frames = _counts((8, 32, 32), 100)
    whole = write_mrc_movie(tmp_path / "whole.mrc", frames, pixel_size_angstrom=1.0)
    assert check_complete(whole).n_frames == 8
    half = _half_written(whole, tmp_path / "half.mrc")
    info = movie_info(half)  # the header alone still reads
    assert info.bytes_on_disk < info.bytes_expected
    with pytest.raises(FormatError) as err:
        check_complete(half)
    assert err.value.title == "Truncated MRC movie"
    assert "half.mrc" in err.value.message
    assert f"promises {1024 + frames.size} bytes" in err.value.message
    with pytest.raises(FormatError, match="Truncated MRC movie"):
        read_movie(half)


def test_check_complete_detects_a_tiff_mid_write(tmp_path: Path) -> None:
    whole = write_tiff_movie(tmp_path / "whole.tif", _counts((10, 40, 40), 3))
    assert check_complete(whole).n_frames == 10
    half = _half_written(whole, tmp_path / "half.tif")
    with pytest.raises(FormatError) as err:
        check_complete(half)
    assert err.value.title == "Truncated TIFF movie"
    assert "half.tif" in err.value.message
    with pytest.raises(FormatError, match="Truncated TIFF movie"):
        read_movie(half)


def test_check_complete_detects_a_tiff_cut_between_pages(tmp_path: Path) -> None:
    whole = write_tiff_movie(tmp_path / "whole.tif", _counts((10, 40, 40), 3))
    with tifffile.TiffFile(whole) as tif:
        next_ifd = tif.pages[6].offset  # every strip of pages 0-5 is before this byte
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[:next_ifd])
    with pytest.raises(FormatError) as err:
        check_complete(cut)
    assert err.value.title == "Truncated TIFF movie"
    assert "chain of pages is broken after 6 frames" in err.value.message


def test_check_complete_compares_with_the_expected_frame_count(tmp_path: Path) -> None:
    path = write_tiff_movie(tmp_path / "m.tif", _counts((4, 8, 8), 3))
    assert check_complete(path, expected_frames=4).n_frames == 4
    with pytest.raises(FormatError, match="holds 4 frames; its metadata expects 5"):
        check_complete(path, expected_frames=5)


def test_zero_byte_movies_are_refused(tmp_path: Path) -> None:
    for name in ("empty.mrc", "empty.tif", "empty.eer"):
        (tmp_path / name).touch()
        with pytest.raises(FormatError) as err:
            check_complete(tmp_path / name)
        assert "is 0 bytes long" in err.value.message and name in err.value.message


def test_a_text_file_named_mrc_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fake.mrc"
    path.write_text("this is not an MRC file\n" * 100)
    with pytest.raises(FormatError) as err:
        read_movie(path)
    assert err.value.title == "Not a readable MRC file"
    assert "fake.mrc" in err.value.message and "Map ID string not found" in err.value.message


def test_a_tiff_without_frames_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "noframes.tif"
    path.write_bytes(b"II*\x00" + (0).to_bytes(4, "little") + bytes(8))  # header, no IFD
    with pytest.raises(FormatError) as err:
        check_complete(path)
    assert err.value.title == "TIFF movie has no frames"
    assert "noframes.tif holds no image pages" in err.value.message


def test_a_text_file_named_tiff_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fake.tiff"
    path.write_text("not a tiff\n")
    with pytest.raises(FormatError, match=r"Unreadable TIFF movie: .*fake\.tiff"):
        read_movie(path)


def test_unknown_suffix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "movie.dm4"
    path.write_bytes(b"x")
    with pytest.raises(FormatError, match=r"suffix '\.dm4'"):
        read_movie(path)


def test_mrc_with_unsupported_mode_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "complex.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((2, 4, 4), dtype=np.complex64))
    with pytest.raises(FormatError, match=r"mode 4; supported modes are \[0, 1, 2, 6, 12\]"):
        read_movie(path)


def test_corrupt_lzw_strip_is_named(tmp_path: Path) -> None:
    path = write_tiff_movie(tmp_path / "m.tif", _counts((2, 64, 64), 3))
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[1].dataoffsets[0]
    data[offset : offset + 2] = b"\x00\x00"  # no LZW clear code
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError) as err:
        read_movie(path)
    assert err.value.title == "Corrupt TIFF movie" and "m.tif" in err.value.message
