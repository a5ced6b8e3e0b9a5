"""Fine-tuning the denoiser on the session's own exposures, in the background.

One :class:`~actors.denoiser.DenoiserTrainer` actor per session collects each good exposure's
even/odd half sums (it reads the MRC files the exposure actors wrote). After every
``processing.picking.finetune_every`` exposures it trains ``finetune_steps`` steps, writes the
checkpoint beside the session (``denoiser.pt``) and the exposure actors switch to the new
weights. Nothing here waits: the session's loop polls for a finished round. A restart starts
from the checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from causalscope.models.records import ExposureRecord

__all__ = ["Finetuner"]

log = logging.getLogger(__name__)


class Finetuner:
    """Feeds the trainer actor and hands its weights to the exposure actors.

    Parameters
    ----------
    every, steps
        Train after this many new exposures, for this many steps (``every = 0``: never).
    checkpoint
        Where the fine-tuned weights are kept (``<session>/denoiser.pt``).
    """

    def __init__(self, *, every: int, steps: int, checkpoint: Path) -> None:
        self.every = every
        self.steps = steps
        self.checkpoint = Path(checkpoint)
        self._actor: Any = None
        self._new = 0
        self._round: tuple[Any, Any, Any] | None = None
        self.rounds = 0

    def initial_weights(self) -> bytes | None:
        """The session's checkpoint from an earlier run, if there is one."""
        try:
            return self.checkpoint.read_bytes()
        except FileNotFoundError:
            return None

    def _trainer(self) -> Any:
        if self._actor is None:
            from causalscope.actors.remote import DenoiserTrainerActor
            from causalscope.daemon.workers import beside_the_daemon

            # beside the daemon, no CPU reserved: it trains between exposures, never blocking them
            self._actor = DenoiserTrainerActor.options(**beside_the_daemon()).remote(
                self.initial_weights()
            )
        return self._actor

    def committed(self, record: ExposureRecord) -> None:
        """Offer a committed exposure's half sums; start a round when enough are new."""
        if self.every <= 0 or record.status == "fail":
            return
        even, odd = record.outputs.get("even_sum"), record.outputs.get("odd_sum")
        if not even or not odd:
            return
        trainer = self._trainer()
        trainer.add_pair_files.remote(even, odd)
        self._new += 1
        if self._new >= self.every and self._round is None:
            self._new = 0
            self._round = (
                trainer.train.remote(self.steps),
                trainer.checkpoint.remote(str(self.checkpoint)),
                trainer.weights.remote(),
            )

    def poll(self, pool: Any) -> dict[str, float] | None:
        """The finished round's training report (its weights sent to ``pool``), else None."""
        if self._round is None:
            return None
        import ray

        ready, _ = ray.wait(list(self._round), num_returns=len(self._round), timeout=0)
        if len(ready) < len(self._round):
            return None
        refs, self._round = self._round, None
        try:
            report, _, weights = ray.get(list(refs))
        except Exception as error:  # a failed round must not stop the session
            log.warning("denoiser fine-tuning failed: %s", error)
            return {"error": 1.0}
        if pool is not None and hasattr(pool, "set_denoiser_weights"):
            pool.set_denoiser_weights(weights)
        self.rounds += 1
        return dict(report)

    def close(self) -> None:
        """Stop the trainer (its checkpoint stays)."""
        if self._actor is not None:
            import ray

            try:
                ray.kill(self._actor, no_restart=True)
            except Exception:
                log.debug("denoiser trainer already gone")
            self._actor = None
