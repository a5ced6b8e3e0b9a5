"""Settings that moved to another table: old settings keep working, with a warning saying where.

The alert thresholds were once read from ``[tui]``; they live in ``[alerts]`` now. A settings
file, preset, environment variable or override that still sets one under ``[tui]`` has it moved
to ``[alerts]`` and gets a :class:`MovedSettingWarning` naming where the value came from and how
to write it now. Setting one under both tables in the same place is an error: which one was
meant cannot be guessed.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

from causalscope.config.alerts import THRESHOLD_NAMES
from causalscope.config.sources import ENV_NESTED_DELIMITER, ENV_PREFIX, KeyPath, Layer
from causalscope.models.errors import ConfigError

__all__ = ["MOVED", "MovedSettingWarning", "move_data", "move_layers"]

#: Old place -> new place of each moved setting.
MOVED: dict[KeyPath, KeyPath] = {("tui", name): ("alerts", name) for name in THRESHOLD_NAMES}


class MovedSettingWarning(FutureWarning):
    """A setting was given in its old table: it still works, but belongs in its new one."""


@dataclasses.dataclass(frozen=True)
class _Move:
    old: KeyPath
    new: KeyPath
    value: Any
    clash: bool = False  # the new place is set too
    other: Any = None  # the value at the new place, when it clashes


def _moves(data: Mapping[str, Any]) -> list[_Move]:
    found: list[_Move] = []
    for old, new in MOVED.items():
        old_table, new_table = data.get(old[0]), data.get(new[0])
        if not isinstance(old_table, Mapping) or old[1] not in old_table:
            continue
        if new_table is not None and not isinstance(new_table, Mapping):
            continue  # validation says what is wrong with the new table itself
        clash = new_table is not None and new[1] in new_table
        other = new_table[new[1]] if clash and new_table is not None else None
        found.append(_Move(old, new, old_table[old[1]], clash, other))
    return found


def _apply(data: Mapping[str, Any], moves: list[_Move]) -> dict[str, Any]:
    """A copy of ``data`` with each move done (the input is not changed)."""
    out = dict(data)
    for move in moves:
        out[move.old[0]] = {k: v for k, v in out[move.old[0]].items() if k != move.old[1]}
        out[move.new[0]] = {**(out.get(move.new[0]) or {}), move.new[1]: move.value}
    return out


def _dotted(path: KeyPath) -> str:
    return ".".join(path)


def _env_name(path: KeyPath) -> str:
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(part.upper() for part in path)


def _advice(layer: Layer | None, move: _Move) -> str:
    if layer is None:
        return (
            f"give it as {_dotted(move.new)} instead ([{move.new[0]}] in a settings file, "
            f"{_env_name(move.new)} in the environment)"
        )
    if layer.kind == "environment":
        return f"set {_env_name(move.new)} instead"
    if layer.kind == "overrides":
        return f"give it as {_dotted(move.new)} instead"
    return f"write it under [{move.new[0]}] instead"


def _message(layer: Layer | None, move: _Move) -> str:
    where = layer.where(move.old) if layer is not None else "in the given settings"
    return (
        f"{_dotted(move.old)} = {move.value!r} {where}: this setting has moved and is used as "
        f"{_dotted(move.new)}; {_advice(layer, move)}"
    )


def _clash_error(layer: Layer | None, move: _Move) -> str:
    where = layer.where(move.old) if layer is not None else "in the given settings"
    return (
        f"{move.old[1]} is set both as {_dotted(move.old)} = {move.value!r} and as "
        f"{_dotted(move.new)} = {move.other!r} {where}; {_dotted(move.old)} is its old place: "
        "remove it"
    )


def move_layers(layers: list[Layer]) -> list[Layer]:
    """Each layer with its moved settings in their new place, warning once for each.

    Raises
    ------
    ConfigError
        A layer sets a moved setting in both its old and its new place.
    """
    out: list[Layer] = []
    for layer in layers:
        moves = _moves(layer.data)
        for move in moves:
            if move.clash:
                raise ConfigError("Setting given twice", _clash_error(layer, move), path=layer.path)
        for move in moves:
            warnings.warn(_message(layer, move), MovedSettingWarning, stacklevel=4)
        if not moves:
            out.append(layer)
            continue
        variables = dict(layer.variables)
        for move in moves:
            if move.old in variables:
                variables[move.new] = variables[move.old]
        out.append(dataclasses.replace(layer, data=_apply(layer.data, moves), variables=variables))
    return out


def move_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (settings as nested dicts) with its moved settings in their new place; warns.

    For settings built directly (``Settings(tui={...})``, the environment read by
    ``Settings()``); :func:`move_layers` does the same with the origin of each value.

    Raises
    ------
    ValueError
        A moved setting is given in both its old and its new place.
    """
    moves = _moves(data)
    for move in moves:
        if move.clash:
            raise ValueError(_clash_error(None, move))
    for move in moves:
        warnings.warn(_message(None, move), MovedSettingWarning, stacklevel=2)
    return _apply(data, moves) if moves else dict(data)
