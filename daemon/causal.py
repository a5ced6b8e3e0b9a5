"""The session's causal-prior actor, fed from the daemon's loop without ever waiting on it.

:class:`CausalTracker` hands each committed exposure's causal inputs to one
:class:`~actors.causal.CausalPriorWorker` (a Ray actor when Ray runs, else in this process: it
costs microseconds) in commit order, and :meth:`~CausalTracker.poll` returns the finished
updates in that same order for the store. Every ``send_every`` updates the envelope prior goes
to the exposure actors' Wiener filters. On a restart the stored inputs are replayed first, which
rebuilds the same posterior; updates the store already holds are not returned again.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from causalscope.models.causal import CausalUpdate, EnvelopePrior
    from causalscope.models.records import CausalInputs

__all__ = ["CausalTracker", "not_learned_message"]

log = logging.getLogger(__name__)


class CausalTracker:
    """Feeds the causal-prior worker and collects its updates (see the module docstring).

    Parameters
    ----------
    discount
        ``processing.causal.discount``.
    send_every
        Send the envelope prior to the exposure actors after this many updates.
    """

    def __init__(self, *, discount: float, send_every: int = 5) -> None:
        self.discount = discount
        self.send_every = max(1, send_every)
        self._worker: Any = None
        self._remote = False
        self._pending: deque[tuple[Any, bool]] = deque()  # (ref or list of updates, is replay)
        self._replay: list[tuple[str, CausalInputs]] = []
        self._stored: set[str] = set()
        self._since_sent = 0
        self.latest: CausalUpdate | None = None
        self.errors = 0

    def replay(self, rows: Iterable[tuple[str, CausalInputs]], stored: Iterable[str]) -> None:
        """Queue a restart's stored inputs (commit order); ``stored``: ids with updates kept."""
        self._replay = list(rows)
        self._stored = set(stored)

    def _ensure_worker(self) -> None:
        if self._worker is not None:
            return
        import ray

        if ray.is_initialized():
            from causalscope.actors.remote import CausalPriorActor
            from causalscope.daemon.placement import beside_the_daemon

            # beside the daemon, no CPU reserved: an update is microseconds and must never wait
            self._worker = CausalPriorActor.options(**beside_the_daemon()).remote(
                discount=self.discount
            )
            self._remote = True
        else:
            from causalscope.actors.causal import CausalPriorWorker

            self._worker = CausalPriorWorker(discount=self.discount)
        if self._replay:
            rows, self._replay = self._replay, []
            if self._remote:
                self._pending.append((self._worker.replay.remote(rows), True))
            else:
                self._pending.append((self._worker.replay(rows), True))

    def observe(self, exposure_id: str, inputs: CausalInputs) -> None:
        """Queue one committed exposure's inputs."""
        self._ensure_worker()
        if self._remote:
            self._pending.append((self._worker.observe.remote(exposure_id, inputs), False))
            return
        try:
            self._pending.append(([self._worker.observe(exposure_id, inputs)], False))
        except ValueError as error:
            self.errors += 1
            log.warning("causal model skipped %s: %s", exposure_id, error)

    def start(self) -> None:
        """Start the worker now (a restart's replay), rather than at the first exposure."""
        if self._replay:
            self._ensure_worker()

    def poll(self, *, wait_s: float = 0.0) -> list[CausalUpdate]:
        """Finished updates, in commit order, that the store does not hold yet.

        ``wait_s``: how long to wait for each update still running on the actor (closing).
        """
        out: list[CausalUpdate] = []
        while self._pending:
            handle, is_replay = self._pending[0]
            if self._remote:
                import ray

                ready, _ = ray.wait([handle], timeout=wait_s)
                if not ready:
                    break
                try:
                    result = ray.get(handle)
                except Exception as error:  # a bad exposure must not stop the session
                    self._pending.popleft()
                    self.errors += 1
                    log.warning("causal model update failed: %s", error)
                    continue
                updates = result if is_replay else [result]
            else:
                updates = handle
            self._pending.popleft()
            for update in updates:
                self.latest = update
                if not (is_replay and update.exposure_id in self._stored):
                    out.append(update)
            if is_replay:
                self._stored.clear()
        return out

    def prior_due(self, n_new: int) -> EnvelopePrior | None:
        """The latest envelope prior when ``send_every`` updates have passed, else None."""
        self._since_sent += n_new
        if self.latest is None or self.latest.envelope is None:
            return None
        if self._since_sent < self.send_every:
            return None
        self._since_sent = 0
        return self.latest.envelope

    def close(self) -> None:
        """Stop the actor (the store holds everything it said)."""
        if self._remote and self._worker is not None:
            import ray

            try:
                ray.kill(self._worker, no_restart=True)
            except Exception:
                log.debug("causal actor already gone")
        self._worker = None
        self._pending.clear()


def not_learned_message(update: CausalUpdate) -> str | None:
    """The session log's line for an exposure the model would not learn from, else None."""
    if update.learned:
        return None
    predicted = update.best_resolution_angstrom + update.predicted_loss_angstrom
    return (
        f"{update.exposure_id}: CTF fit resolution {update.observed_resolution_angstrom:.2f} A is "
        f"far from the {predicted:.2f} A the causal model predicts for its factors; the model "
        "did not learn from it (check the fit)"
    )
