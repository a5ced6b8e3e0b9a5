"""Filters over grids: the windowed extreme against torch's pooling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from causalscope.models.grids import window_extreme


@pytest.mark.parametrize("shape", [(37, 53), (5, 64), (1, 9), (2, 2)])
@pytest.mark.parametrize("radius", [0, 1, 2, 4])
def test_window_extreme_equals_pooling_with_edges_left_out(
    shape: tuple[int, int], radius: int
) -> None:
    """Exactly ``max_pool2d`` with ``-inf`` padding (positions beyond the edge left out), and
    the minimum as the negated maximum of the negated image, at every pixel, edges included."""
    image = torch.randn(shape, generator=torch.Generator().manual_seed(radius + shape[0]))
    size = 2 * radius + 1
    padded = F.pad(image[None, None], (radius,) * 4, value=float("-inf"))
    expected = F.max_pool2d(padded, size, stride=1)[0, 0]
    assert torch.equal(window_extreme(image, radius), expected)
    padded = F.pad(-image[None, None], (radius,) * 4, value=float("-inf"))
    expected_min = -F.max_pool2d(padded, size, stride=1)[0, 0]
    assert torch.equal(window_extreme(image, radius, largest=False), expected_min)
    assert torch.equal(
        image, torch.randn(shape, generator=torch.Generator().manual_seed(radius + shape[0]))
    )


def test_window_extreme_refuses_a_stack_or_a_negative_radius() -> None:
    with pytest.raises(ValueError, match="radius >= 0"):
        window_extreme(torch.zeros(2, 3, 3), 1)
    with pytest.raises(ValueError, match="-1"):
        window_extreme(torch.zeros(3, 3), -1)
