"""The causal-prior worker: one per session, it learns the causal model from committed records.

:class:`CausalPriorWorker` is a plain class (the pipeline wraps it as a Ray actor in
:mod:`actors.remote`). The daemon hands it each committed exposure's
:class:`~models.records.CausalInputs` in commit order; it answers with a
:class:`~models.causal.CausalUpdate` (attribution, ranking, convergence, regime) whose
``envelope`` prior the daemon forwards to the exposure actors. A restarted session replays the
stored inputs in the same order, which rebuilds the same posterior exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

from causalscope.models.causal import CausalUpdate, EnvelopePrior, SessionCausalModel
from causalscope.models.records import CausalInputs

__all__ = ["CausalPriorWorker"]


class CausalPriorWorker:
    """Holds a :class:`~models.causal.SessionCausalModel` and feeds it one exposure at a time."""

    def __init__(self, *, discount: float = 0.02) -> None:
        self._model = SessionCausalModel(discount=discount)

    @property
    def n(self) -> int:
        """Exposures learned from."""
        return self._model.n

    def observe(self, exposure_id: str, inputs: CausalInputs) -> CausalUpdate:
        """Learn from one exposure; its attribution and the session's ranking."""
        return self._model.observe(exposure_id, inputs)

    def replay(self, rows: Iterable[tuple[str, CausalInputs]]) -> list[CausalUpdate]:
        """Learn from stored exposures in order (a restart); every update, in that order."""
        return [self._model.observe(exposure_id, inputs) for exposure_id, inputs in rows]

    def envelope_prior(self) -> EnvelopePrior | None:
        """The envelope model's posterior for the exposure actors' Wiener filters."""
        return self._model.envelope_prior()
