"""Pieces shared by the settings sections: the base model and a few constrained types."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import annotated_types
from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints
from pydantic.fields import FieldInfo

__all__ = ["EMPTY_IS_NONE", "OptionalPath", "Section", "ZmqAddress", "bounds"]


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors and values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _empty_to_none(value: object) -> object:
    # TOML has no null: an empty string (or an empty environment variable) means "not set".
    return None if value == "" else value


#: Validator for optional settings: ``""`` in a file or the environment means unset.
EMPTY_IS_NONE = BeforeValidator(_empty_to_none)

#: A file path that may be unset.
OptionalPath = Annotated[Path | None, EMPTY_IS_NONE]

#: A ZeroMQ endpoint: ``tcp://host:port``, ``ipc://path`` or ``inproc://name``.
ZmqAddress = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        pattern=r"^(tcp://(\*|[A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):[0-9]{1,5}|ipc://.+|inproc://.+)$",
    ),
]


def bounds(name: str, info: FieldInfo) -> tuple[str, float | None, float | None]:
    """A field's numeric range as text (``"60 <= voltage_kv <= 400"``), its lower and upper bound.

    The text is empty when the field has no bounds; an open bound is None.
    """
    low_text = high_text = ""
    low: float | None = None
    high: float | None = None
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            low, low_text = float(item.ge), f"{item.ge} <= "  # type: ignore[arg-type]
        elif isinstance(item, annotated_types.Gt):
            low, low_text = float(item.gt), f"{item.gt} < "  # type: ignore[arg-type]
        elif isinstance(item, annotated_types.Le):
            high, high_text = float(item.le), f" <= {item.le}"  # type: ignore[arg-type]
        elif isinstance(item, annotated_types.Lt):
            high, high_text = float(item.lt), f" < {item.lt}"  # type: ignore[arg-type]
    text = f"{low_text}{name}{high_text}" if low_text or high_text else ""
    return text, low, high
