"""The physical value objects: which optics an exposure gets, and values out of range named."""

from __future__ import annotations

import numpy as np
import pytest

from causalscope.models.ctf import ctf_at
from causalscope.models.optics import DetectorCalibration, Optics
from causalscope.models.records import AcquisitionMetadata

CONFIGURED = Optics(
    pixel_size_angstrom=0.83, voltage_kv=300.0, spherical_aberration_mm=2.7, amplitude_contrast=0.1
)


def _metadata(**values: float | None) -> AcquisitionMetadata:
    return AcquisitionMetadata(source_path="m.xml", source_format="epu", **values)  # type: ignore[arg-type]


def test_the_frames_pixel_size_then_the_metadata_then_the_configured_optics() -> None:
    md = _metadata(pixel_size_angstrom=1.06, voltage_kv=200.0, spherical_aberration_mm=1.4)
    assert Optics.resolve(CONFIGURED, metadata=md) == Optics(1.06, 200.0, 1.4, 0.1)
    assert (
        Optics.resolve(CONFIGURED, metadata=md, pixel_size_angstrom=0.53).pixel_size_angstrom
        == 0.53
    )
    # values the metadata lack (None) or wrote as 0 fall back to the configured microscope's
    silent = _metadata(pixel_size_angstrom=0.0, voltage_kv=None)
    assert Optics.resolve(CONFIGURED, metadata=silent) == CONFIGURED
    assert Optics.resolve(CONFIGURED) == CONFIGURED


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pixel_size_angstrom", -1.0, r"pixel_size_angstrom must be finite, > 0; got -1\.0"),
        ("voltage_kv", float("inf"), r"voltage_kv must be finite, > 0; got inf"),
        (
            "spherical_aberration_mm",
            -0.1,
            r"spherical_aberration_mm must be finite, >= 0; got -0\.1",
        ),
        ("amplitude_contrast", 1.0, r"amplitude_contrast must be finite, >= 0 and < 1; got 1\.0"),
    ],
)
def test_an_implausible_value_is_named(field: str, value: float, message: str) -> None:
    values = {
        "pixel_size_angstrom": 1.0,
        "voltage_kv": 300.0,
        "spherical_aberration_mm": 2.7,
        "amplitude_contrast": 0.07,
        field: value,
    }
    with pytest.raises(ValueError, match=message):
        Optics(**values)


def test_ctf_keywords_are_what_the_ctf_functions_take() -> None:
    """RELION's test value through the optics' keywords: CTF(dU 10000 A, dV 12000 A, 90 deg,
    300 kV, Cs 2.7 mm, Q0 0.1) at (10, 10) 1/A = 0.59154."""
    import torch

    k = torch.tensor([10.0], dtype=torch.float64)
    value = ctf_at(
        k,
        k,
        defocus_u_angstrom=10_000.0,
        defocus_v_angstrom=12_000.0,
        defocus_angle_deg=90.0,
        **Optics(1.0, 300.0, 2.7, 0.1).ctf_keywords(),
    )
    assert float(value[0]) == pytest.approx(0.59154, abs=5e-6)


def test_calibration_names_both_sizes_when_it_does_not_fit_the_frames() -> None:
    calibration = DetectorCalibration(gain=np.ones((256, 512)), defect_mask=np.zeros((256, 512)))
    assert calibration.mismatch((256, 512)) is None
    assert calibration.mismatch((512, 512)) == (
        "frames are 512x512 px but the gain reference is 512x256"
    )
    with pytest.raises(ValueError, match=r"gain is \(256, 512\) but defect_mask is \(512, 512\)"):
        DetectorCalibration(gain=np.ones((256, 512)), defect_mask=np.zeros((512, 512)))
    with pytest.raises(
        ValueError, match=r"gain must be a 2-D \(h, w\) image; got shape \(4, 8, 8\)"
    ):
        DetectorCalibration(gain=np.ones((4, 8, 8)))
