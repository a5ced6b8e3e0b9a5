"""Turning DuckDB values into JSON-safe ones (dates as ISO text, NaN as null)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def jsonable(value: Any) -> Any:
    """``value`` with every part JSON-safe: ISO text for times, null for NaN, hex for bytes."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return jsonable(float(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):  # NumPy scalars
        return jsonable(value.item())
    return str(value)


def dumps(value: Any) -> str:
    """Strict JSON text of ``value``: as :func:`jsonable` makes it (NaN as null, ISO times)."""
    try:
        # Fast path: most values are plain already; only NaN/Inf and odd types need converting.
        return json.dumps(value, allow_nan=False, separators=(",", ":"), default=jsonable)
    except ValueError:
        return json.dumps(jsonable(value), allow_nan=False, separators=(",", ":"))


def row_dict(
    columns: Sequence[str], row: Sequence[Any], json_columns: Iterable[str] = ()
) -> dict[str, Any]:
    """One row as a JSON-safe dict; the text of ``json_columns`` is decoded."""
    decode = set(json_columns)
    out: dict[str, Any] = {}
    for name, value in zip(columns, row, strict=True):
        if name in decode and isinstance(value, str):
            out[name] = json.loads(value)  # JSON text written by the store: plain already
        else:
            out[name] = jsonable(value)
    return out
