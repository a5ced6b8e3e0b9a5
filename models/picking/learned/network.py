"""A compact fully convolutional particle classifier: :class:`PickerNet`.

It works on micrographs rescaled so that the particle diameter spans
:data:`CANONICAL_DIAMETER_PX` pixels. One 5 x 5 layer at full resolution, a 2 x 2 average pool,
then three convolutions (one 5 x 5, one 5 x 5 and one 3 x 3 dilated by 2) and a 1 x 1 output:
its receptive field is 38 canonical pixels (about 1.6 diameters), and its logit map has half
the canonical resolution. About 27 k parameters; no normalisation layers, so a crop and the
whole micrograph give the same scores.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["CANONICAL_DIAMETER_PX", "OUTPUT_STRIDE", "PickerNet"]

#: the particle diameter, in pixels, of the grid the network works on
CANONICAL_DIAMETER_PX = 24.0
#: canonical pixels per pixel of the logit map
OUTPUT_STRIDE = 2


class PickerNet(nn.Module):
    """Logits ``(n, 1, h // 2, w // 2)`` that a particle is centred at each output pixel.

    Parameters
    ----------
    channels
        Feature channels of the full-resolution layer and of the three half-resolution layers.
    """

    def __init__(self, channels: tuple[int, int, int, int] = (12, 24, 24, 24)) -> None:
        super().__init__()
        if len(channels) != 4 or min(channels) < 1:
            raise ValueError(f"channels must be four positive counts, got {channels}")
        c0, c1, c2, c3 = (int(c) for c in channels)
        self.channels = (c0, c1, c2, c3)
        self.layers = nn.Sequential(
            nn.Conv2d(1, c0, 5, padding=2),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(c0, c1, 5, padding=2),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 5, padding=4, dilation=2),
            nn.ReLU(),
            nn.Conv2d(c2, c3, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(c3, 1, 1),
        )
        # pick-level calibration (models.picking.learned.calibration); identity until fitted
        self.register_buffer("calibration", torch.tensor([1.0, 0.0]))
        # the automatic probability cut, half the best F1 where calibrated; 0.5 until fitted
        self.register_buffer("auto_threshold", torch.tensor(0.5))

    def raw_logits(self, image: torch.Tensor) -> torch.Tensor:
        """``(n, 1, h, w)`` canonical images -> ``(n, 1, h // 2, w // 2)`` pixel logits (what
        training sees)."""
        if image.ndim != 4 or image.shape[1] != 1:
            raise ValueError(f"expected (n, 1, h, w), got {tuple(image.shape)}")
        out: torch.Tensor = self.layers(image)
        return out

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Calibrated logits: ``slope * raw + offset`` (identity before calibration)."""
        calibration: torch.Tensor = self.get_buffer("calibration")
        return self.raw_logits(image) * calibration[0] + calibration[1]

    def set_calibration(self, slope: float, offset: float, threshold: float = 0.5) -> None:
        """Store the pick-level calibration and the automatic threshold (:mod:`.calibration`)."""
        self.get_buffer("calibration").copy_(torch.tensor([slope, offset]))
        self.get_buffer("auto_threshold").fill_(threshold)

    def threshold(self) -> float:
        """The automatic probability cut (:mod:`.calibration`)."""
        return float(self.get_buffer("auto_threshold"))

    def config(self) -> dict[str, Any]:
        """What :class:`PickerNet` needs to be rebuilt."""
        return {"channels": list(self.channels)}


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
