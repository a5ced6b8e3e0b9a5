"""Picked particle positions: :class:`Picks`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Picks"]


@dataclass(frozen=True)
class Picks:
    """Particle positions on one micrograph, best first.

    Attributes
    ----------
    xy_px
        ``(n, 2)`` float64 centres ``[x, y]`` in pixels of the input image (x along columns;
        pixel centres at integers, as the simulator's truth).
    scores
        ``(n,)`` float64 figure of merit: the robust z-score of the picker's response (its
        peak minus the micrograph's median response, over 1.4826 MAD); for the learned
        picker, the probability that the pick is a particle.
    threshold
        The cut on ``scores`` the picker applied, where it reports one.
    """

    xy_px: torch.Tensor
    scores: torch.Tensor
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.xy_px.ndim != 2 or self.xy_px.shape[1] != 2:
            raise ValueError(f"xy_px must be (n, 2), got {tuple(self.xy_px.shape)}")
        if self.scores.shape != (self.xy_px.shape[0],):
            raise ValueError(
                f"scores must be ({self.xy_px.shape[0]},), got {tuple(self.scores.shape)}"
            )

    def __len__(self) -> int:
        return int(self.xy_px.shape[0])

    def above(self, threshold: float) -> Picks:
        """The picks whose score exceeds ``threshold``."""
        keep = self.scores > threshold
        return Picks(self.xy_px[keep], self.scores[keep], threshold)
