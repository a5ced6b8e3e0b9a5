"""Frame statistics of frames already on a device (a tensor) equal the host's, exactly where
the host sums integers exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from causalscope.models.frame_statistics import frame_statistics
from causalscope.models.motion.gain import upload_frames


def _movies() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    counts = rng.poisson(1.2, size=(4, 96, 96)).astype(np.uint8)
    counts[1] = 0  # blank
    counts[2, :20] = 255  # clipped: 21 % of the frame at the top
    linear = rng.normal(40.0, 6.0, size=(3, 64, 64)).astype(np.float32)
    linear[0, 3, 3] = np.nan
    linear[0, 4, 4] = np.inf
    linear[1, :10] = 90.0  # a float ceiling
    linear[2] = np.nan  # nothing finite
    return {
        "uint8": counts,
        "float32": linear,
        "int16": rng.poisson(30.0, size=(3, 64, 64)).astype(np.int16),
    }


@pytest.mark.parametrize("kind", ["uint8", "float32", "int16"])
def test_a_tensors_statistics_are_the_arrays(kind: str) -> None:
    frames = _movies()[kind]
    host = frame_statistics(frames)
    tensor = frame_statistics(torch.from_numpy(frames))
    assert tensor.dtype == host.dtype == kind
    assert tensor.nonfinite_counts == host.nonfinite_counts
    assert tensor.saturated_fractions == pytest.approx(host.saturated_fractions, abs=1e-12)
    np.testing.assert_allclose(tensor.frame_means, host.frame_means, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(tensor.frame_stds, host.frame_stds, rtol=1e-9, equal_nan=True)


def test_the_known_values_of_a_tensor_movie() -> None:
    stats = frame_statistics(torch.from_numpy(_movies()["uint8"]))
    assert stats.frame_means[1] == 0.0 and stats.frame_stds[1] == 0.0
    assert stats.saturated_fractions[2] == pytest.approx(20 / 96)
    assert stats.saturated_fractions[0] == 0.0  # Poisson's own maximum is no clipping
    assert abs(stats.frame_means[0] - 1.2) < 0.05  # 9,216 Poisson(1.2) pixels: sigma 0.011
    linear = frame_statistics(torch.from_numpy(_movies()["float32"]))
    assert linear.nonfinite_counts == [2, 0, 64 * 64]
    assert linear.saturated_fractions[1] == pytest.approx(10 / 64)
    assert math.isnan(linear.frame_means[2])


def test_frames_stay_on_the_host_without_a_gpu() -> None:
    frames = _movies()["uint8"]
    assert upload_frames(frames, "cpu") is frames
