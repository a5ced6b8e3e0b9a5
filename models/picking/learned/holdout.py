"""How well a picker does on rows of labelled micrographs that its training never saw.

A session's fine-tuned picker is judged here against the shipped one
(:class:`~actors.picker_trainer.PickerTrainer`): on each fully labelled canonical micrograph,
the picks the model would make (:func:`~.inference.picks_from_logits`: its calibrated cut,
lowered by the micrograph's own peaks where they ask for it; peaks half a diameter apart and
from the border), counted only on the held-out rows at the bottom, against the labels there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from causalscope.models.picking.learned.inference import picks_from_logits
from causalscope.models.picking.learned.network import (
    CANONICAL_DIAMETER_PX,
    OUTPUT_STRIDE,
    PickerNet,
)
from causalscope.models.picking.matching import match_picks

__all__ = ["held_out_f1"]


def held_out_f1(
    model: PickerNet,
    micrographs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    from_rows: Sequence[int],
) -> float:
    """F1 of ``model``'s picks on fully labelled ``(canonical image, truth xy)`` pairs, on
    output-map rows from ``from_rows`` (module docstring). Raises ``ValueError`` when those
    rows hold no labelled particle."""
    parameter = next(model.parameters())
    hits = picked = n_truth = 0
    for (image, xy), row in zip(micrographs, from_rows, strict=True):
        top = OUTPUT_STRIDE * row - 0.5  # canonical y where the held-out rows begin
        truth = xy[xy[:, 1] >= top]
        with torch.inference_mode():
            logits = model(image.to(parameter.device, parameter.dtype)[None, None])[0, 0]
        picks = picks_from_logits(
            logits.float().cpu(),
            image,
            scale=1.0,
            diameter_px=CANONICAL_DIAMETER_PX,
            calibrated_threshold=model.threshold(),
        )
        mine = picks.xy_px[picks.xy_px[:, 1] >= top]
        match = match_picks(mine, truth, radius_px=0.5 * CANONICAL_DIAMETER_PX)
        hits, picked = hits + match.n_true_positive, picked + len(mine)
        n_truth += len(truth)
    if n_truth < 1:
        raise ValueError("no labelled particle in the held-out rows")
    return 2.0 * hits / (picked + n_truth)
