"""Session fine-tuning of the denoiser for the restoration bench, as the live pipeline does it.

The live pipeline (:class:`actors.denoiser.DenoiserTrainer`, fed by :mod:`daemon.finetune`)
starts from the shipped model, keeps the session's even/odd half sums and trains rounds of
``finetune_steps`` (200) Noise2Noise steps (Adam, lr 2e-4, 128 px crops, 8 per step); the
exposure actors then denoise with the new weights, including the exposures it trained on.
This module runs the same trainer, with the same defaults, on exposures of one simulated
session (one bench case: the same dose, ice, defocus, drift and specimen, different seeds),
and never sees a clean image: only half sums.

One trainer per case, fed as a live session would be: first the session's other exposures
(seeds :data:`SESSION_SEED_OFFSET` + 0, 1, ...), ``steps`` steps on them, which gives the
``held_out`` model (the evaluated exposures are new to it); then the evaluated exposures
arrive, one more round of :data:`FINETUNE_ROUND_STEPS` runs on all of them, which gives the
``in_set`` model (each evaluated exposure is denoised by weights that trained on it, which is
what happens live).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["FINETUNE_ROUND_STEPS", "SESSION_SEED_OFFSET", "session_finetune"]

#: seeds of the session's other exposures start here (the bench's own seeds are small)
SESSION_SEED_OFFSET = 1000
#: steps per fine-tuning round (the live default, ``processing.picking.finetune_steps``)
FINETUNE_ROUND_STEPS = 200


def session_finetune(
    earlier: Sequence[tuple[Any, Any]],
    evaluated: Sequence[tuple[Any, Any]],
    *,
    steps: int,
    seed: int = 0,
    device: str = "cpu",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fine-tune the shipped model on a session's ``(even, odd)`` half sums.

    ``steps`` (rounds of :data:`FINETUNE_ROUND_STEPS`, the last one shorter) on the
    ``earlier`` pairs give the ``held_out`` model; one more round after adding the
    ``evaluated`` pairs gives the ``in_set`` model. Returns ``({label: model}, record)``
    with each model's steps, pairs, last round's mean loss and seconds since training began.
    """
    from causalscope.actors.denoiser import DenoiserTrainer

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not earlier or not evaluated:
        raise ValueError(f"need earlier and evaluated pairs, got {len(earlier)}, {len(evaluated)}")
    n_pairs = len(earlier) + len(evaluated)
    trainer = DenoiserTrainer(None, seed=seed, capacity=max(32, n_pairs), device=device)
    models: dict[str, Any] = {}
    record: dict[str, Any] = {}
    started = time.perf_counter()

    def train(n_steps: int) -> dict[str, float]:
        done, report = 0, {}
        while done < n_steps:
            report = trainer.train(min(FINETUNE_ROUND_STEPS, n_steps - done))
            done += FINETUNE_ROUND_STEPS
        return report

    for label, pairs, n_steps in (
        ("held_out", earlier, steps),
        ("in_set", evaluated, FINETUNE_ROUND_STEPS),
    ):
        for even, odd in pairs:
            trainer.add_pair(even, odd)
        report = train(n_steps)
        models[label] = copy.deepcopy(trainer.model).eval()
        record[label] = {
            "steps": int(report["steps"]),
            "pairs": int(report["pairs"]),
            "last_round_loss": round(report["loss"], 5),
            "train_s_total": round(time.perf_counter() - started, 1),
        }
    return models, record
