"""Measures of agreement shared by the CUDA-versus-CPU tests: relative difference, correlation,
angles modulo 180 degrees."""

from __future__ import annotations

import numpy as np
import torch


def as_cpu64(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``value`` as a float64 CPU tensor (a CUDA tensor is copied back first)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64)
    return torch.as_tensor(np.asarray(value), dtype=torch.float64)


def relative_difference(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """``|a - b| / |b|`` (Frobenius norms), in float64 on the CPU."""
    x, y = as_cpu64(a), as_cpu64(b)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    return float((x - y).norm() / y.norm().clamp(min=1e-300))


def correlation(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Pearson correlation of two images of one shape."""
    x, y = as_cpu64(a).flatten(), as_cpu64(b).flatten()
    x, y = x - x.mean(), y - y.mean()
    return float((x @ y) / (x.norm() * y.norm()).clamp(min=1e-300))


def angle_difference_deg(a: float, b: float, *, period: float = 180.0) -> float:
    """``|a - b|`` for angles defined modulo ``period`` degrees (an astigmatism angle)."""
    d = (a - b) % period
    return min(d, period - d)
