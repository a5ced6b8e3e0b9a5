"""Deposits onto grids: :func:`splat_trilinear` (3D, several channels); the largest or
smallest value in each pixel's square window: :func:`window_extreme`."""

from __future__ import annotations

import torch

__all__ = ["splat_trilinear", "window_extreme"]


def splat_trilinear(
    values: torch.Tensor, coordinates: torch.Tensor, grid: torch.Tensor
) -> torch.Tensor:
    """``grid`` ``(c, d, h, w)`` plus ``values`` ``(m, c)`` spread trilinearly at
    ``coordinates`` ``(m, 3)`` ``[z, y, x]`` (array units); points beyond the grid lose the
    corners that fall outside. One weighted ``bincount`` per channel: about twice as fast on
    a CPU as scattering corner by corner."""
    c, d, h, w = grid.shape
    base = coordinates.floor()
    frac = coordinates - base
    base = base.long()
    indices, weights = [], []
    for corner in range(8):
        dz, dy, dx = corner >> 2, (corner >> 1) & 1, corner & 1
        weight = (frac[:, 0] if dz else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
        weight = weight * (frac[:, 2] if dx else 1 - frac[:, 2])
        z, y, x = base[:, 0] + dz, base[:, 1] + dy, base[:, 2] + dx
        inside = (z >= 0) & (z < d) & (y >= 0) & (y < h) & (x >= 0) & (x < w)
        indices.append(torch.where(inside, (z * h + y) * w + x, 0))
        weights.append(torch.where(inside, weight, 0.0))
    index, weight = torch.cat(indices), torch.cat(weights)
    sums = [
        torch.bincount(index, weights=values[:, k].repeat(8) * weight, minlength=d * h * w)
        for k in range(c)
    ]
    return grid + torch.stack(sums).reshape(c, d, h, w).to(grid.dtype)


def window_extreme(image: torch.Tensor, radius: int, *, largest: bool = True) -> torch.Tensor:
    """``(h, w)``: the largest (or, with ``largest=False``, the smallest) value of ``image``
    ``(h, w)`` in each pixel's ``(2 radius + 1)^2`` window, positions beyond the edge left out
    (what ``max_pool2d`` gives with ``-inf`` or replicated padding). Separable, one shifted
    slice at a time: at 1024^2 and radius 2 it took 2 ms on a CPU against 56-59 ms for
    ``max_pool2d``."""
    if image.dim() != 2 or radius < 0:
        raise ValueError(
            f"need an (h, w) image and radius >= 0, got {tuple(image.shape)}, {radius}"
        )
    pick = torch.maximum if largest else torch.minimum
    out = image
    for dim in (0, 1):
        source, out = out, out.clone()
        n = source.shape[dim]
        for step in range(1, min(radius, n - 1) + 1):
            later, earlier = out.narrow(dim, step, n - step), out.narrow(dim, 0, n - step)
            pick(later, source.narrow(dim, 0, n - step), out=later)
            pick(earlier, source.narrow(dim, step, n - step), out=earlier)
    return out
