"""The class junk score's size term against averages of known shape."""

from __future__ import annotations

import numpy as np
import torch

from causalscope.models.classification.metrics import junk_components

BOX, APIX, RADIUS = 64, 4.0, 80.0


def _body(rx: float, ry: float) -> np.ndarray:
    """Projection of an ellipsoid with semi-axes ``rx``, ``ry`` (A) in the plane."""
    axis = (np.arange(BOX) - BOX // 2) * APIX
    y, x = np.meshgrid(axis, axis, indexing="ij")
    return np.sqrt(np.clip(1 - (x / rx) ** 2 - (y / ry) ** 2, 0, None))


def test_a_small_round_average_is_junk_and_a_small_view_is_not() -> None:
    """A round body under half the particle's radius (a small ice blob) is junk by size; a
    view as narrow but long (an elongated particle seen from its side), a round body of the
    particle's size and a hollow shell (apoferritin) are not. Without the roundness term
    the blob scored only ``|log2(Rg / Rg_0)| - 1 = 0.41``."""
    shapes = {
        "small blob": _body(0.45 * RADIUS, 0.45 * RADIUS),
        "narrow view": _body(0.45 * RADIUS, 0.9 * RADIUS),
        "particle": _body(0.8 * RADIUS, 0.8 * RADIUS),
        "shell": _body(0.8 * RADIUS, 0.8 * RADIUS) - 0.8 * _body(0.6 * RADIUS, 0.6 * RADIUS),
    }
    averages = torch.tensor(np.stack(list(shapes.values())), dtype=torch.float32)
    _, s_size, _ = junk_components(averages, pixel_size_angstrom=APIX, radius_angstrom=RADIUS)
    size = dict(zip(shapes, s_size.tolist(), strict=True))
    assert size["small blob"] >= 0.8, size
    assert size["narrow view"] <= 0.1, size
    assert size["particle"] == 0.0 and size["shell"] == 0.0, size
