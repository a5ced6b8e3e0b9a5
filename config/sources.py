"""Where settings come from: presets, settings files, the environment and explicit overrides.

Each source is read into a :class:`Layer`, a nested dict that remembers its origin so that an
error can name the file, preset or environment variable that gave a bad value.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from causalscope.models.errors import ConfigError

__all__ = [
    "ENV_NESTED_DELIMITER",
    "ENV_PREFIX",
    "Layer",
    "environment_layer",
    "file_layer",
    "list_presets",
    "merge_layers",
    "override_layer",
    "preset_description",
    "preset_layer",
]

ENV_PREFIX = "CAUSALSCOPE_"
ENV_NESTED_DELIMITER = "__"


def preset_dir() -> Path:
    """Where the built-in presets are installed (package data of ``causalscope.config``)."""
    return Path(str(resources.files("causalscope.config").joinpath("presets")))


KeyPath = tuple[str, ...]


@dataclass(frozen=True)
class Layer:
    """One source of settings: its values as a nested dict, and where they came from.

    Parameters
    ----------
    kind
        What the source is; decides how :meth:`where` phrases it.
    label
        The file path, the preset name, or a description of the overrides.
    data
        The values, nested by section.
    path
        The file read, for files and presets.
    variables
        For the environment: the variable that gave each key path.
    """

    kind: Literal["preset", "file", "environment", "overrides"]
    label: str
    data: dict[str, Any]
    path: Path | None = None
    variables: Mapping[KeyPath, str] = field(default_factory=dict)

    def has(self, key_path: KeyPath, *, below: bool = False) -> bool:
        """Whether this layer sets ``key_path`` (or, with ``below``, anything under it)."""
        node: Any = self.data
        for key in key_path:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return not below or (isinstance(node, dict) and bool(node))

    def where(self, key_path: KeyPath) -> str:
        """A phrase naming the origin of the value at ``key_path``: "in my.toml"."""
        if self.kind == "file":
            return f"in {self.label}"
        if self.kind == "preset":
            return f"in preset {self.label!r}"
        if self.kind == "overrides":
            return f"in the {self.label}"
        names = [name for path, name in self.variables.items() if path[: len(key_path)] == key_path]
        return f"from environment variable {names[0]}" if names else "from the environment"


def _read_toml(path: Path, origin: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        shown = path if path.is_absolute() else f"{path} (looked in {path.absolute().parent})"
        raise ConfigError(
            "Settings file not found", f"{origin} {shown} does not exist", path=path
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            "Unreadable settings file", f"{origin} {path}: {error}", path=path
        ) from error
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(
            "Invalid TOML", _describe_syntax_error(text, path, error), path=path
        ) from error


def _describe_syntax_error(text: str, path: Path, error: tomllib.TOMLDecodeError) -> str:
    """Name the line, the dotted key and the raw value where TOML parsing stopped."""
    match = re.search(r"\(at line (\d+), column \d+\)", str(error))
    if match is None:
        return f"{path}: {error}"
    line_number = int(match.group(1))
    lines = text.splitlines()
    line = lines[line_number - 1].strip() if line_number <= len(lines) else ""
    table = ""
    for previous in reversed(lines[: line_number - 1]):
        header = re.match(r"\s*\[([^\[\]]+)\]", previous)
        if header:
            table = header.group(1).strip()
            break
    message = f"{path}, line {line_number}: {line!r}: {error}"
    assignment = re.match(r"([A-Za-z0-9_.-]+)\s*=\s*(.*)$", line)
    if assignment:
        key, raw_value = assignment.groups()
        dotted = f"{table}.{key}" if table else key
        message = f"{dotted} = {raw_value} in {path}, line {line_number}: {error}"
        if raw_value and raw_value[0].isalpha() and raw_value not in ("true", "false"):
            message += '; text must be quoted, e.g. name = "Krios"'
    return message


def file_layer(path: str | Path) -> Layer:
    """Read the user's settings file (TOML)."""
    path = Path(path)
    return Layer("file", str(path), _read_toml(path, "settings file"), path=path)


def list_presets() -> list[str]:
    """Names of the built-in microscope presets, sorted."""
    return sorted(preset.stem for preset in preset_dir().glob("*.toml"))


def _preset_path(name: str) -> Path:
    if name not in list_presets():
        raise ConfigError(
            "Unknown preset",
            f"preset {name!r} does not exist; available presets: {', '.join(list_presets())}",
        )
    return preset_dir() / f"{name}.toml"


def preset_description(name: str) -> str:
    """The one-line description of a preset: the first comment line of its file."""
    for line in _preset_path(name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def preset_layer(name: str) -> Layer:
    """Read a built-in preset by name."""
    path = _preset_path(name)
    return Layer("preset", name, _read_toml(path, f"preset {name!r}"), path=path)


def environment_layer(environ: Mapping[str, str]) -> Layer:
    """Settings from ``CAUSALSCOPE_<SECTION>__<FIELD>`` variables (any case).

    Variables with the prefix but without a ``__`` are not settings and are ignored, so that
    other uses of the prefix do not clash. Values that look like JSON arrays or objects are
    decoded (``CAUSALSCOPE_WATCHER__MOVIE_PATTERNS='["*.eer"]'``); everything else stays text
    and is converted by validation.
    """
    data: dict[str, Any] = {}
    variables: dict[KeyPath, str] = {}
    for name, raw in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :]
        if ENV_NESTED_DELIMITER not in rest:
            continue
        key_path = tuple(part.lower() for part in rest.split(ENV_NESTED_DELIMITER))
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as error:
                raise ConfigError(
                    "Invalid environment variable",
                    f"environment variable {name} = {raw!r}: not valid JSON ({error})",
                ) from error
        _set(data, key_path, value)
        variables[key_path] = name
    return Layer("environment", "environment", data, variables=variables)


def override_layer(overrides: Mapping[str, Any], label: str = "command-line options") -> Layer:
    """Explicit overrides; nested dicts, or dotted keys such as ``"microscope.voltage_kv"``."""
    data: dict[str, Any] = {}
    for key, value in overrides.items():
        value = copy.deepcopy(dict(value)) if isinstance(value, Mapping) else value
        _set(data, tuple(key.split(".")), value)
    return Layer("overrides", label, data)


def _set(data: dict[str, Any], key_path: KeyPath, value: Any) -> None:
    node = data
    for key in key_path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    last = key_path[-1]
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        node[last] = _deep_merge(node[last], value)
    else:
        node[last] = value


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def merge_layers(layers: Iterable[Layer]) -> dict[str, Any]:
    """Merge layers deeply, later layers winning key by key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _deep_merge(merged, layer.data)
    return merged
