"""SerialEM mdoc: values read from real files, round trip of our writer, bad input."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from causalscope.daemon.formats import find_mdoc, read_mdoc, write_mdoc
from causalscope.models.errors import FormatError
from causalscope.models.records import AcquisitionMetadata


def _read(shared_data: Path, name: str) -> list[AcquisitionMetadata]:
    return read_mdoc(shared_data / "metadata" / "mdoc" / name)


def test_every_real_mdoc_parses(shared_data: Path) -> None:
    counts = {
        path.name: len(read_mdoc(path))
        for path in sorted((shared_data / "metadata" / "mdoc").iterdir())
    }
    assert counts == {
        "de_apollo_frames.mrc.mdoc": 1,
        "frame_set_multiple.mdoc": 21,
        "frame_set_single.mdoc": 1,
        "montage_section.mdoc": 63,
        "test_1.mdoc": 11,
        "tilt_series.mdoc": 41,
    }


def test_k3_frame_set(shared_data: Path) -> None:
    (md,) = _read(shared_data, "frame_set_single.mdoc")
    assert md.movie_name == "s_mmm_00993_33.0_Oct08_07.39.05.tif"
    assert md.pixel_size_angstrom == 1.2827
    assert md.voltage_kv == 300
    assert md.dose_e_per_a2 == 7.65892
    assert md.dose_rate_e_per_px_per_s == 4.97858
    assert md.n_frames == 12
    assert md.exposure_time_s == 1.07856
    assert md.target_defocus_um == 4.5  # TargetDefocus = -4.5
    assert md.extra["Defocus"] == "-5.08286"  # the scope's readout, verbatim
    assert md.image_shift == (2.69654, -0.304661)
    assert md.stage_position_um == (-142.82, -457.442, -13.7196)
    assert md.stage_tilt_deg == 32.984
    assert md.magnification == 33000 and md.spot_size == 9
    assert md.camera == "GIF-K3"  # CameraIndex 1 in "Camera -> 0:Ceta 1:GIF-K3"
    assert md.microscope == "UMass_Krios"
    assert md.timestamp == datetime(2021, 10, 8, 7, 39, 8)


def test_frame_set_with_tilt_sub_sections(shared_data: Path) -> None:
    records = _read(shared_data, "frame_set_multiple.mdoc")
    movie, first = records[0], records[1]
    assert movie.n_frames == 243 and movie.dose_e_per_a2 == 291.302
    assert movie.exposure_time_s == 40.9854
    assert first.extra["ZValue"] == "0" and first.extra["FrameTSStartEndFrames"] == "0 12"
    assert first.stage_tilt_deg == 33 and first.dose_e_per_a2 == 7.66184
    # inherited from the [FrameSet] section
    assert first.pixel_size_angstrom == 1.2827 and first.camera == "GIF-K3"
    assert first.movie_name == movie.movie_name
    assert first.n_frames is None and first.timestamp is None


def test_tilt_series(shared_data: Path) -> None:
    records = _read(shared_data, "tilt_series.mdoc")
    first = records[0]
    assert first.movie_name == "TS_01_000_0.0.mrc"
    assert first.pixel_size_angstrom == 5.4
    assert first.voltage_kv is None  # this file has no Voltage line
    assert first.dose_e_per_a2 is None  # ExposureDose = 0: not calibrated
    assert first.target_defocus_um == 4.0
    assert first.extra["Defocus"] == "2.68083"
    assert first.n_frames == 8 and first.stage_tilt_deg == 0.000999877
    assert first.microscope == "Digitized on EMBL Krios"
    assert first.timestamp == datetime(2015, 11, 30, 15, 21, 38)
    assert [r.stage_tilt_deg for r in records[:3]] == [0.000999877, 3.00113, -2.99863]


def test_ebic_tilt_series(shared_data: Path) -> None:
    first = _read(shared_data, "test_1.mdoc")[0]
    assert first.movie_name == "chrom_07_ts_010_167_000_-0.0.mrc"
    assert first.pixel_size_angstrom == 1.94 and first.voltage_kv == 300
    assert first.target_defocus_um == 5.5 and first.extra["Defocus"] == "-0.734985"
    assert first.image_shift == (8.46078, 8.62732)
    assert first.n_frames == 10 and first.exposure_time_s == 1.49179
    assert first.microscope == "eBIC Krios 3"
    assert first.timestamp == datetime(2022, 8, 1, 18, 58, 35)  # four-digit year
    assert first.extra["CtfFind"] == "-5.54383515625"


def test_montage(shared_data: Path) -> None:
    records = _read(shared_data, "montage_section.mdoc")
    assert records[0].pixel_size_angstrom == 656.139 and records[0].magnification == 135
    assert records[0].movie_name == "LMM.mrc"  # ImageFile: no SubFramePath in a montage
    assert records[0].extra["PieceCoordinates"] == "0.0 0.0 0"
    assert records[0].microscope == "Titan Krios D3692 at Institut Pasteur"


def test_de_apollo_frame_set(shared_data: Path) -> None:
    (md,) = _read(shared_data, "de_apollo_frames.mrc.mdoc")
    assert md.movie_name == "20220605_75157_20220605-aav2spr_1-1_counted_frames.mrc"
    assert md.pixel_size_angstrom == 2.48521 and md.voltage_kv == 300
    assert md.n_frames == 46 and md.dose_e_per_a2 is None
    assert md.target_defocus_um == 2.0
    assert md.microscope == "Titan Krios" and md.camera is None
    assert md.extra["DE12-FramesPerSecond"] == "60.1"
    assert md.timestamp == datetime(2022, 6, 5, 23, 45, 28)


def _records() -> list[AcquisitionMetadata]:
    common = {
        "source_path": "",
        "source_format": "mdoc",
        "pixel_size_angstrom": 0.834,
        "voltage_kv": 300.0,
        "camera": "K3",
        "microscope": "Krios (simulated)",
        "dose_rate_e_per_px_per_s": 15.5,
        "exposure_time_s": 2.25,
        "n_frames": 40,
        "magnification": 105000.0,
        "spot_size": 8,
        "image_shift": (0.5, -1.25),
    }
    return [
        AcquisitionMetadata.model_validate(
            {
                **common,
                "movie_name": f"movie_{i:03d}.tif",
                "dose_e_per_a2": 50.0 + i,
                "target_defocus_um": 1.5 + 0.25 * i,
                "stage_position_um": (10.5 * i, -3.25, 7.0),
                "stage_tilt_deg": -3.0 * i,
                "timestamp": datetime(2025, 2, 3, 4, 5, 6 + i),
                "extra": {"Binning": "1.0", "NavigatorLabel": f"A{i}"},
            }
        )
        for i in range(3)
    ]


def test_mdoc_round_trip(tmp_path: Path) -> None:
    records = _records()
    path = write_mdoc(tmp_path / "session.mdoc", records)
    back = read_mdoc(path)
    assert len(back) == 3
    for original, read in zip(records, back, strict=True):
        assert read.source_path == str(path)
        mine = original.model_dump(exclude={"source_path", "extra"})
        theirs = read.model_dump(exclude={"source_path", "extra"})
        assert theirs == mine
        assert original.extra.items() <= read.extra.items()


def test_find_mdoc(tmp_path: Path) -> None:
    movie = tmp_path / "movie.tif"
    assert find_mdoc(movie) is None
    (tmp_path / "movie.mdoc").write_text("x")
    assert find_mdoc(movie) == tmp_path / "movie.mdoc"
    (tmp_path / "movie.tif.mdoc").write_text("x")
    assert find_mdoc(movie) == tmp_path / "movie.tif.mdoc"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just some notes\nnothing else\n", "not enough values to unpack"),
        ("PixelSpacing = 1.0\nVoltage = 300\n", "has no [ZValue = n]"),
    ],
)
def test_text_that_is_not_an_mdoc_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "notes.mdoc"
    path.write_text(text)
    with pytest.raises(FormatError) as err:
        read_mdoc(path)
    assert err.value.title == "Not a SerialEM mdoc file"
    assert "notes.mdoc" in err.value.message and message in err.value.message


def test_bad_value_is_named(tmp_path: Path) -> None:
    path = tmp_path / "steep.mdoc"
    path.write_text("[ZValue = 0]\nTiltAngle = steep\n")
    with pytest.raises(FormatError) as err:
        read_mdoc(path)
    assert err.value.title == "Bad value in mdoc"
    assert "steep.mdoc: TiltAngle = 'steep'" in err.value.message


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "binary.mdoc"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(FormatError, match=r"binary\.mdoc"):
        read_mdoc(path)
