"""Gain and defect correction against the simulated detector's truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from causalscope.models.motion import apply_gain_and_defects
from tests.models.motion.conftest import DOSE, N_FRAMES, Case


def test_mean_dose_defects_and_hot_pixels(detector_case: Case) -> None:
    result, detector = detector_case.result, detector_case.detector
    # expected counts per pixel per frame: dose x pixel area (no energy filter: all electrons)
    assert result.frame_means.mean() == pytest.approx(DOSE / N_FRAMES, rel=0.01)
    mask = result.defect_mask.cpu().numpy()
    assert mask[:, list(detector.dead_columns)].all()
    for x, y in detector.dead_pixels:
        assert mask[y, x]
    # 3 extra counts/frame over 20 frames is ~9 sigma of a 40-count sum: at the default 8
    # sigma threshold most, not all, hot pixels are caught (a sensitive pixel's corrected
    # excess is smaller)
    found = sum(bool(mask[y, x]) for x, y in detector.hot_pixels)
    assert found >= 0.7 * len(detector.hot_pixels)
    assert result.n_hot_pixels <= len(detector.hot_pixels) + 3  # few false alarms
    assert mask.mean() < 0.002


def test_replaced_pixels_are_unbiased() -> None:
    rng = np.random.default_rng(0)
    frames = rng.poisson(3.0, size=(6, 64, 64)).astype(np.uint8)
    frames[:, 10, 20] = 200  # hot
    mask = np.zeros((64, 64), dtype=bool)
    mask[:, 5] = True  # a defect column
    out = apply_gain_and_defects(frames, defect_mask=mask)
    assert out.n_hot_pixels == 1
    assert bool(out.defect_mask[10, 20]) and bool(out.defect_mask[:, 5].all())
    fixed = out.frames[:, :, 5]
    assert float(fixed.mean()) == pytest.approx(3.0, rel=0.1)
    assert float(out.frames[:, 10, 20].max()) < 10


def test_torch_and_numpy_inputs_agree() -> None:
    rng = np.random.default_rng(1)
    frames = rng.poisson(2.0, size=(4, 32, 48)).astype(np.uint16)
    gain = rng.uniform(0.9, 1.1, size=(32, 48)).astype(np.float32)
    gain[3, 4] = 0.0
    a = apply_gain_and_defects(frames, gain=gain)
    b = apply_gain_and_defects(torch.from_numpy(frames), gain=torch.from_numpy(gain))
    assert torch.equal(a.frames, b.frames)
    assert bool(a.defect_mask[3, 4])


def test_shape_mismatch_is_reported() -> None:
    with pytest.raises(ValueError, match="gain shape"):
        apply_gain_and_defects(np.zeros((2, 8, 8)), gain=np.ones((8, 9)))


@pytest.mark.parametrize("counts", [0.5, 5.0, 40.0])
def test_hot_pixels_from_candidates_equal_the_full_median_test(counts: float) -> None:
    """The median is taken only where the 5 x 5 minimum lets a pixel pass: the same pixels as
    the test against every pixel's median, on sparse and dense counts, with isolated hot
    pixels, a hot column segment and a gain that varies per pixel."""
    from causalscope.models.motion.gain import _hot_pixels, _hot_threshold, _local_median

    generator = torch.Generator().manual_seed(int(counts * 10))
    total = torch.poisson(torch.full((512, 512), counts), generator=generator)
    ys = torch.randint(0, 512, (40,), generator=generator)
    xs = torch.randint(0, 512, (40,), generator=generator)
    total[ys, xs] += torch.randint(3, 500, (40,), generator=generator).float()
    total[100:110, 300] += 1000.0
    scale = 1.0 + 0.1 * torch.rand((512, 512), generator=generator)
    full = total > _hot_threshold(_local_median(total), scale, 8.0)
    assert torch.equal(_hot_pixels(total, scale, 8.0), full)
    assert int(full.sum()) >= 30  # most of the injected ones are found


def test_hot_pixels_on_a_structured_image_take_the_full_median() -> None:
    """Where most pixels pass the minimum's test (a fine checkerboard of 0 and 1000 counts),
    the full median is taken: the same answer."""
    from causalscope.models.motion.gain import _hot_pixels, _hot_threshold, _local_median

    yy, xx = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
    total = 1000.0 * ((yy + xx) % 2).to(torch.float32)
    total[50, 60] += 5000.0
    scale = torch.ones_like(total)
    minimum = -torch.nn.functional.max_pool2d(-total[None, None], 5, stride=1, padding=2)[0, 0]
    assert float((total > _hot_threshold(minimum, scale, 8.0)).float().mean()) > 0.05
    expected = total > _hot_threshold(_local_median(total), scale, 8.0)
    assert bool(expected[50, 60])
    assert torch.equal(_hot_pixels(total, scale, 8.0), expected)
