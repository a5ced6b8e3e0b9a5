"""EPU XML: values read from the real session folder, round trip of our writer, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from causalscope.daemon.formats import find_epu_metadata, read_epu_xml, write_epu_xml
from causalscope.models.errors import FormatError
from causalscope.models.records import AcquisitionMetadata

K3_DATA = (
    "metadata/epu/session_k3/Images-Disc1/GridSquare_8999138/Data/"
    "FoilHole_9015883_Data_9017347_6_20250108_154915.xml"
)


def test_every_real_epu_xml_parses(shared_data: Path) -> None:
    files = sorted((shared_data / "metadata" / "epu").rglob("*.xml"))
    assert len(files) == 11
    for path in files:
        md = read_epu_xml(path)
        assert md.source_format == "epu"
        assert md.voltage_kv in (200.0, 300.0)
        assert md.pixel_size_angstrom is not None and md.pixel_size_angstrom > 0.5
        assert md.timestamp is not None and md.timestamp.tzinfo is not None
        assert md.microscope is not None and md.camera is not None


def test_k3_exposure_values(shared_data: Path) -> None:
    md = read_epu_xml(shared_data / K3_DATA)
    assert md.pixel_size_angstrom == pytest.approx(1.0559, rel=1e-3)
    assert md.voltage_kv == 300
    assert md.dose_e_per_a2 == pytest.approx(16.07, abs=0.01)  # DoseOnCamera, per the README
    assert md.target_defocus_um == pytest.approx(2.7)  # AppliedDefocus -2.7e-6 m
    assert md.n_frames == 50
    assert md.exposure_time_s == pytest.approx(0.89)
    assert md.magnification == 165000
    assert md.spot_size == 5
    assert md.camera == "BioQuantum K3"
    assert md.microscope == "TITAN52336320"
    assert md.beam_shift == pytest.approx((0.060867246, -0.154228002))
    assert md.image_shift == (0.0, 0.0)
    assert md.stage_position_um == pytest.approx((-97.152028, -152.721848, 85.710844))
    assert md.stage_tilt_deg == pytest.approx(-0.0247221, rel=1e-5)  # A = -4.3148e-4 rad
    assert md.timestamp == datetime(2025, 1, 8, 15, 49, 18, 115828, tzinfo=UTC)
    assert md.grid_square == "8999138"
    assert md.foil_hole == "9015883"
    assert md.extra["Detectors[EF-CCD].ElectronCounted"] == "true"


def test_atlas_and_foil_hole_images_parse(shared_data: Path) -> None:
    square = read_epu_xml(
        shared_data / "metadata/epu/session_k3/Images-Disc1/GridSquare_8999186/"
        "GridSquare_20250108_152955.xml"
    )
    assert square.pixel_size_angstrom == pytest.approx(415.63, rel=1e-4)
    assert square.magnification == 470
    assert square.target_defocus_um == pytest.approx(50.0)
    assert square.grid_square == "8999186" and square.foil_hole is None
    assert square.n_frames is None


def test_falcon4_eer_values(shared_data: Path) -> None:
    md = read_epu_xml(shared_data / "metadata/epu/falcon4_eer_example.xml")
    assert md.pixel_size_angstrom == pytest.approx(0.74913, rel=1e-4)
    assert md.voltage_kv == 200
    assert md.dose_e_per_a2 == pytest.approx(23.581, rel=1e-4)
    assert md.target_defocus_um == pytest.approx(1.1)
    assert md.exposure_time_s == pytest.approx(3.52)
    assert md.n_frames is None  # EER fractionation is decided at processing time
    assert md.camera == "Falcon 4i"
    assert md.microscope == "GLACIOS-9960164"
    assert md.magnification == 190000 and md.spot_size == 3
    assert md.timestamp == datetime(
        2023, 10, 18, 12, 27, 6, 334225, tzinfo=timezone(timedelta(hours=-7))
    )
    assert md.extra["Detectors[BM-Falcon].FrameRate"] == "317.762948840165"


def _record(**changes: object) -> AcquisitionMetadata:
    values: dict[str, object] = {
        "source_path": "",
        "source_format": "epu",
        "pixel_size_angstrom": 0.83,
        "voltage_kv": 300.0,
        "dose_e_per_a2": 40.5,
        "n_frames": 48,
        "exposure_time_s": 2.5,
        "target_defocus_um": 1.25,
        "beam_shift": (0.01, -0.02),
        "image_shift": (0.3, 0.4),
        "stage_position_um": (120.5, -33.25, 10.0),
        "stage_tilt_deg": 15.0,
        "magnification": 105000.0,
        "spot_size": 7,
        "camera": "Falcon 4i",
        "microscope": "Krios G4 (simulated)",
        "timestamp": datetime(2025, 3, 1, 9, 30, 5, 123456, tzinfo=UTC),
        "extra": {"PhasePlateUsed": "false", "Odd <key> & value": "a&b"},
    }
    values.update(changes)
    return AcquisitionMetadata.model_validate(values)


def test_epu_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "Images-Disc1" / "GridSquare_42" / "Data"
    path = folder / "FoilHole_77_Data_5_3_20250301_093005.xml"
    original = _record()
    write_epu_xml(path, original)
    (folder / "FoilHole_77_Data_5_3_20250301_093005_EER.eer").touch()
    back = read_epu_xml(path)
    assert back.source_path == str(path)
    assert back.grid_square == "42" and back.foil_hole == "77"
    assert back.movie_name == "FoilHole_77_Data_5_3_20250301_093005_EER.eer"
    assert back.extra == original.extra
    exact = {"voltage_kv", "n_frames", "exposure_time_s", "beam_shift", "image_shift"}
    exact |= {"magnification", "spot_size", "camera", "microscope", "timestamp", "dose_e_per_a2"}
    for field in exact:
        assert getattr(back, field) == getattr(original, field), field
    # unit conversions (A <-> m, um <-> m, deg <-> rad) round to the last bit
    for field in ("pixel_size_angstrom", "target_defocus_um", "stage_tilt_deg"):
        assert getattr(back, field) == pytest.approx(getattr(original, field), rel=1e-12)
    assert back.stage_position_um == pytest.approx(original.stage_position_um, rel=1e-12)


def test_dose_falls_back_to_the_detector_total(tmp_path: Path) -> None:
    record = _record(dose_e_per_a2=None, extra={"Detectors[BM-Falcon].TotalDose": "33.5"})
    assert read_epu_xml(write_epu_xml(tmp_path / "d.xml", record)).dose_e_per_a2 == 33.5


def test_epu_round_trip_of_a_sparse_record(tmp_path: Path) -> None:
    sparse = AcquisitionMetadata(source_path="", source_format="epu", pixel_size_angstrom=1.1)
    back = read_epu_xml(write_epu_xml(tmp_path / "x.xml", sparse))
    assert back.model_dump(exclude={"source_path"}) == sparse.model_dump(exclude={"source_path"})


def test_find_epu_metadata(tmp_path: Path) -> None:
    stem = "FoilHole_1_Data_2_3_20250101_120000"
    xml = tmp_path / f"{stem}.xml"
    for movie in (f"{stem}_fractions.tiff", f"{stem}_Fractions.mrc", f"{stem}_EER.eer"):
        assert find_epu_metadata(tmp_path / movie) is None
        xml.write_text("<x/>")
        assert find_epu_metadata(tmp_path / movie) == xml
        xml.unlink()


def test_xml_that_is_not_epu_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.xml"
    path.write_text('<?xml version="1.0"?><Session><name>x</name></Session>')
    with pytest.raises(FormatError) as err:
        read_epu_xml(path)
    assert err.value.title == "Not an EPU XML file"
    assert "other.xml: root element is 'Session'" in err.value.message


def test_non_xml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.xml"
    path.write_text("Defocus = -2.5\n")
    with pytest.raises(FormatError) as err:
        read_epu_xml(path)
    assert err.value.title == "Not an XML file" and "notes.xml" in err.value.message


def test_bad_number_is_named(tmp_path: Path) -> None:
    path = write_epu_xml(tmp_path / "bad.xml", _record())
    path.write_text(path.read_text().replace("<SpotIndex>7<", "<SpotIndex>seven<"))
    with pytest.raises(FormatError, match=r"bad\.xml: SpotIndex = 'seven'"):
        read_epu_xml(path)
