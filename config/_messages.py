"""Turn a pydantic ValidationError into a ConfigError a person can act on.

Each line names the dotted setting, the bad value, where it came from (file, preset or
environment variable) and what was expected, with a hint when the value looks like it was
given in another unit.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticUndefined

from causalscope.config._common import bounds
from causalscope.config.sources import Layer
from causalscope.models.errors import ConfigError

__all__ = ["config_error"]

# (name suffix, unit shown, other units people use with the factor that converts to ours)
_UNITS: tuple[tuple[str, str, tuple[tuple[str, float], ...]], ...] = (
    ("_angstrom2", "A^2", ()),
    ("_e_per_a2", "e/A^2", ()),
    ("_angstrom", "Angstrom", (("nm", 10.0), ("m", 1e10))),
    ("_kv", "kV", (("V", 1e-3),)),
    ("_mm", "mm", (("um", 1e-3), ("m", 1e3))),
    ("_um", "um", (("Angstrom", 1e-4), ("nm", 1e-3))),
    ("_nm", "nm", (("Angstrom", 0.1), ("um", 1e3))),
    ("_mrad", "mrad", (("rad", 1e3), ("urad", 1e-3))),
    ("_ev", "eV", ()),
    ("_deg", "deg", ()),
    ("_px", "px", ()),
    ("_hz", "Hz", ()),
    ("_s", "s", (("ms", 1e-3), ("min", 60.0))),
)
_FRACTIONS = {"amplitude_contrast": (("percent", 0.01),)}
# Spellings from other programs, for "did you mean".
_ALIASES = {
    "cs": "spherical_aberration_mm",
    "cc": "chromatic_aberration_mm",
    "kv": "voltage_kv",
    "voltage": "voltage_kv",
    "apix": "pixel_size_angstrom",
    "angpix": "pixel_size_angstrom",
    "pixel_size": "pixel_size_angstrom",
    "q0": "amplitude_contrast",
    "ac": "amplitude_contrast",
}
_NUMBER_ERRORS = {"float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"}
_NUMBER_ERRORS |= {"finite_number"}
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _unit(name: str) -> tuple[str, tuple[tuple[str, float], ...]]:
    if name in _FRACTIONS:
        return "", _FRACTIONS[name]
    for suffix, unit, others in _UNITS:
        if name.endswith(suffix):
            return unit, others
    return "", ()


def _show(value: Any) -> str:
    """A value as it would be written in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, int | float):
        return f"{value}"
    if isinstance(value, dict):
        return "{" + ", ".join(value)[:60] + "}" if value else "{}"
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _resolve(
    root: type[BaseModel], loc: Sequence[int | str]
) -> tuple[list[str], type[BaseModel], FieldInfo | None]:
    """Follow ``loc`` through the models.

    Returns the field names found, the model that holds the last one, and that field's info
    (None for an unknown key). Stops at the first element that is not a field: a pydantic
    union tag, or an unknown key (which is kept as the last name).
    """
    path: list[str] = []
    holder = model = root
    info: FieldInfo | None = None
    for index, key in enumerate(loc):
        if isinstance(key, int):
            continue
        found = model.model_fields.get(key)
        if found is None:
            if index == len(loc) - 1 or not path:
                path.append(key)
                holder, info = model, None
            break
        path.append(key)
        holder, info = model, found
        if not _is_table(found):
            break  # what follows is a list index or a union tag
        model = found.annotation  # type: ignore[assignment]
    return path, holder, info


def _is_table(info: FieldInfo | None) -> bool:
    annotation = None if info is None else info.annotation
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _unit_hint(name: str, info: FieldInfo, value: Any) -> str:
    unit, others = _unit(name)
    _, low, high = bounds(name, info)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    for other, factor in others:
        converted = number * factor
        if (low is None or converted >= low) and (high is None or converted <= high):
            shown_unit = f" {unit}" if unit else ""
            return f"; {number:g} {other} = {converted:g}{shown_unit}: was it given in {other}?"
    return ""


def _example(info: FieldInfo | None) -> str:
    if info is None:
        return ""
    if info.default is not PydanticUndefined and info.default is not None:
        return f" (e.g. {_show(info.default)})"
    return f" (e.g. {_show(info.examples[0])})" if info.examples else ""


def _expected(error: ErrorDetails, name: str, info: FieldInfo | None, dotted: str) -> str:
    kind = error["type"]
    unit, _ = _unit(name)
    in_unit = f" in {unit}" if unit else ""
    if kind in _NUMBER_ERRORS:
        number = "a whole number" if kind.startswith("int") else "a number"
        return f"expected {number}{in_unit}{_example(info)}"
    if kind in _RANGE_ERRORS and info is not None:
        allowed, _, _ = bounds(name, info)
        shown_unit = f" ({unit})" if unit else ""
        return f"expected {allowed}{shown_unit}{_unit_hint(name, info, error['input'])}"
    if kind in {"bool_parsing", "bool_type"}:
        return "expected true or false"
    if kind == "literal_error":
        return f"expected one of {error.get('ctx', {}).get('expected', '')}"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"expected a table [{dotted}] of settings"
    if kind in {"tuple_type", "list_type"}:
        return f"expected a list{_example(info)}"
    if kind in {"string_type", "path_type"}:
        return f"expected text in quotes{_example(info)}"
    if kind == "string_pattern_mismatch":
        example = _example(info).removeprefix(" (e.g. ").removesuffix(")")
        return f"expected a value like {example}" if example else error["msg"]
    return error["msg"].removeprefix("Value error, ")


def _suggest(key: str, model: type[BaseModel], root: type[BaseModel]) -> str:
    fields = list(model.model_fields)
    if key.lower() in _ALIASES and _ALIASES[key.lower()] in fields:
        return f"; did you mean {_ALIASES[key.lower()]}?"
    close = difflib.get_close_matches(key.lower(), fields, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]}?"
    if model is root:
        for section, info in root.model_fields.items():
            if _is_table(info) and key in info.annotation.model_fields:  # type: ignore[union-attr]
                return f"; {key} belongs in the [{section}] table"
    return ""


def _origin(layers: Sequence[Layer], path: list[str]) -> Layer | None:
    key_path = tuple(path)
    for below in (False, True):
        for layer in reversed(layers):
            if layer.has(key_path, below=below):
                return layer
    return None


def _line(
    error: ErrorDetails, layers: Sequence[Layer], root: type[BaseModel]
) -> tuple[str, Layer | None]:
    """One line of the message, and the layer that gave the bad value."""
    path, holder, info = _resolve(root, error["loc"])
    dotted = ".".join(path) if path else "settings"
    layer = _origin(layers, path)
    where = layer.where(tuple(path)) if layer else "in the defaults"
    if error["type"] == "extra_forbidden":
        hint = _suggest(path[-1], holder, root)
        tables = ", ".join(root.model_fields)
        if holder is root and isinstance(error["input"], dict):
            return f"unknown table [{dotted}] {where}{hint} (tables: {tables})", layer
        if holder is root:
            return f"unknown setting {dotted} outside any table {where}{hint}", layer
        known = ", ".join(holder.model_fields)
        owner = ".".join(path[:-1])
        return f"unknown setting {dotted} {where}{hint} ([{owner}] has: {known})", layer
    if error["type"] == "value_error" and (not path or _is_table(info)):
        return f"[{dotted}] {where}: {_expected(error, '', None, dotted)}", layer
    expected = _expected(error, path[-1] if path else "", info, dotted)
    # list items: watcher.movie_patterns[1]
    dotted += "".join(f"[{key}]" for key in error["loc"][len(path) :] if isinstance(key, int))
    return f"{dotted} = {_show(error['input'])} {where}: {expected}", layer


def config_error(
    error: ValidationError, layers: Sequence[Layer], root: type[BaseModel]
) -> ConfigError:
    """A :class:`ConfigError` with one line per invalid setting.

    Parameters
    ----------
    error
        What pydantic found wrong with the merged layers.
    layers
        The layers that were merged, lowest priority first (to name each value's origin).
    root
        The settings model that was validated.
    """
    lines: list[str] = []
    seen: set[str] = set()
    first_layer: Layer | None = None
    for details in error.errors():
        line, layer = _line(details, layers, root)
        key = ".".join(_resolve(root, details["loc"])[0])
        if key in seen:
            continue  # a union reports each of its members; one line is enough
        seen.add(key)
        lines.append(line)
        first_layer = first_layer or layer
    title = "Invalid setting" if len(lines) == 1 else f"{len(lines)} invalid settings"
    path = first_layer.path if first_layer else None
    return ConfigError(title, "\n  ".join(lines), path=path)
