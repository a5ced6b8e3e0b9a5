"""The dashboard's messages: what the source's worker thread posts, and what actions return.

High-rate messages that only the latest matters of (status heartbeats) collapse with
``can_replace``; exposure rows never do (each row matters) and are batched by the app instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    import numpy as np

    from causalscope.tui.source import Snapshot

__all__ = [
    "ActionFinished",
    "AlertRaised",
    "CausalUpdated",
    "ClassHighlighted",
    "ClassLabelRequested",
    "ClassLabelStored",
    "ConnectionChanged",
    "EvaluationUpdated",
    "ExposureUpdated",
    "GalleryLoaded",
    "HistoryLoaded",
    "LabelStored",
    "QuarantineAdded",
    "ScoreUpdated",
    "StatusUpdated",
    "ThumbnailLoaded",
    "message_for",
]


@dataclass
class HistoryLoaded(Message):
    """The session's history (at start, and again after a reconnect)."""

    snapshot: Snapshot


@dataclass
class ExposureUpdated(Message):
    """An exposure's row was committed (published on ``exposure``)."""

    row: dict[str, Any]


@dataclass
class QuarantineAdded(Message):
    """An input was quarantined (published on ``quarantine``)."""

    row: dict[str, Any]


@dataclass
class AlertRaised(Message):
    """The daemon raised an alert (an ``event`` of kind ``alert``)."""

    alert: dict[str, Any]


@dataclass
class CausalUpdated(Message):
    """The causal model learned from an exposure (published on ``causal``).

    ``update`` is ``CausalUpdate.to_dict()``: the exposure's verdict and shares, and the
    session's ranking as it stands. Each carries its exposure's shares, so none replaces another.
    """

    update: dict[str, Any]


@dataclass
class LabelStored(Message):
    """An operator's label was stored (published on ``label``)."""

    exposure_id: str
    label: str


@dataclass
class EvaluationUpdated(Message):
    """The running reconstructions were updated (published on ``evaluation``).

    ``update`` is ``EvaluationUpdate.to_dict()``: its version, classes, map and forecast.
    """

    update: dict[str, Any]


@dataclass
class ScoreUpdated(Message):
    """An exposure was scored (published on ``score``): ``score`` as
    :class:`~causalscope.daemon.client.wire.Score`."""

    score: dict[str, Any]


@dataclass
class ClassLabelStored(Message):
    """An operator's select or reject of a 2D class was stored (published on
    ``class_label``)."""

    class_index: int
    label: str


@dataclass
class GalleryLoaded(Message):
    """The pictures of a class set's averages were fetched (``tiles`` None: none are
    available, see ``error``)."""

    version: int
    tiles: list[np.ndarray] | None
    error: str = ""


@dataclass
class ClassHighlighted(Message):
    """The cursor of the class gallery moved to a class."""

    class_index: int


@dataclass
class ClassLabelRequested(Message):
    """The operator asked to select or reject the class under the gallery's cursor."""

    class_index: int
    label: str


@dataclass
class StatusUpdated(Message):
    """The session's status heartbeat; a newer one replaces an older one still queued."""

    status: dict[str, Any]

    def can_replace(self, message: Message) -> bool:
        """A later status supersedes this one."""
        return isinstance(message, StatusUpdated)


@dataclass
class ConnectionChanged(Message):
    """The daemon was lost (``"lost"``) or found again (``"reconnected"``)."""

    state: str
    detail: str = ""


@dataclass
class ThumbnailLoaded(Message):
    """A picture of an exposure was fetched (``image`` None: none is available, see ``error``)."""

    exposure_id: str
    kind: str
    image: np.ndarray | None
    error: str = ""


@dataclass
class ActionFinished(Message):
    """A control action came back: its reply, or the error that refused it."""

    action: str
    params: dict[str, Any]
    reply: dict[str, Any] | None
    error: str = ""


def message_for(topic: str, payload: dict[str, Any]) -> Message | None:
    """The message for one ``(topic, payload)`` a source posts; None for topics not shown."""
    if topic == "exposure":
        return ExposureUpdated(payload)
    if topic == "status":
        return StatusUpdated(payload)
    if topic == "event":
        return AlertRaised(payload) if payload.get("kind") == "alert" else None
    if topic == "label":
        return LabelStored(str(payload.get("exposure_id")), str(payload.get("label")))
    if topic == "quarantine":
        return QuarantineAdded(payload)
    if topic == "causal":
        return CausalUpdated(payload) if payload.get("exposure_id") else None
    if topic == "evaluation":
        return EvaluationUpdated(payload) if isinstance(payload.get("version"), int) else None
    if topic == "score":
        return ScoreUpdated(payload) if payload.get("kind") == "exposure" else None
    if topic == "class_label":
        index = payload.get("class_index")
        if not isinstance(index, int):
            return None
        return ClassLabelStored(index, str(payload.get("label")))
    if topic == "connection":
        return ConnectionChanged(str(payload.get("state")), str(payload.get("address") or ""))
    if topic == "history":
        return HistoryLoaded(payload["snapshot"])
    return None
