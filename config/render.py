"""Write settings as TOML: the commented default file, and resolved settings for ``show``.

Only the TOML that settings need is written (tables, scalars, arrays, inline tables); reading
is tomllib's job.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from causalscope.config._common import bounds
from causalscope.config.settings import default_settings

__all__ = ["DEFAULT_HEADER", "default_toml", "render_toml", "toml_value"]

DEFAULT_HEADER = """\
# causalscope settings: every setting with its default value.
#
# Load order, later wins: these defaults < a preset (--preset NAME) < a settings file
# (--config FILE) < environment variables < command-line options.
# A settings file needs only the settings it changes; an unknown key is an error.
# Environment variables are CAUSALSCOPE_<TABLE>__<SETTING>, one __ per level:
#   CAUSALSCOPE_MICROSCOPE__VOLTAGE_KV=200  CAUSALSCOPE_PROCESSING__CTF__BOX_PX=256
# An empty string ("") unsets an optional path or name.
#
# This file is generated from the models: causalscope config default > config/default.toml
"""

_WIDTH = 98
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_value(value: Any) -> str:
    """One JSON-compatible value as TOML (``None`` has no TOML form and is refused)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_key(key)} = {toml_value(item)}" for key, item in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"no TOML form for {value!r} ({type(value).__name__})")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH, initial_indent="# ", subsequent_indent="# ")


def _allowed(name: str, info: FieldInfo) -> str:
    """The allowed values of a field, from its Literal type or its numeric bounds."""
    if typing.get_origin(info.annotation) is typing.Literal:
        return ", ".join(toml_value(v) for v in typing.get_args(info.annotation))
    return bounds(name, info)[0]


def _render_table(
    model: BaseModel, dumped: dict[str, Any], path: list[str], comments: bool, out: list[str]
) -> None:
    fields = type(model).model_fields
    tables = [name for name in fields if isinstance(getattr(model, name), BaseModel)]
    if path:
        out.append("")
        doc = (type(model).__doc__ or "").strip().splitlines()
        if comments and doc:
            out.extend(_comment(doc[0]))
        out.append(f"[{'.'.join(path)}]")
    for name, info in fields.items():
        if name in tables:
            continue
        if comments:
            out.extend(_comment(info.description or name))
            allowed = _allowed(name, info)
            if allowed:
                out.append(f"# allowed: {allowed}")
        value = dumped[name]
        if value is None:
            example = info.examples[0] if info.examples else ""
            out.append(f"# {_key(name)} = {toml_value(example)}  (not set)")
        else:
            out.append(f"{_key(name)} = {toml_value(value)}")
    for name in tables:
        _render_table(getattr(model, name), dumped[name], [*path, name], comments, out)


def render_toml(settings: BaseModel, *, comments: bool = True, header: str = "") -> str:
    """Settings as a TOML document, one table per section.

    Parameters
    ----------
    settings
        The settings (or one section) to write.
    comments
        Put each setting's description and allowed values above it.
    header
        Text put first, verbatim (comment lines).

    Unset optional values are written as comments, since TOML has no null.
    """
    out: list[str] = [header.rstrip("\n")] if header else []
    _render_table(settings, settings.model_dump(mode="json"), [], comments, out)
    while out and not out[0]:
        out.pop(0)
    return "\n".join(out) + "\n"


def default_toml() -> str:
    """The commented default settings file: every setting, its description and default."""
    return render_toml(default_settings(), header=DEFAULT_HEADER)
