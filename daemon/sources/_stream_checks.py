"""Checks of frame-stream input and the start header's metadata, for the receiver.

Stream metadata: the start header's ``metadata`` object (fields of
:class:`~models.records.AcquisitionMetadata`) becomes an ``AcquisitionMetadata`` whose
``source_path`` is the receiver's address when the sender gave none and whose ``source_format``
is the sender's when it is ``"epu"`` or ``"mdoc"``, else ``"epu"`` (the model allows only those
two; the original value is kept in ``extra["source_format"]``). Unknown keys go to ``extra`` as
text; fields of the wrong type are dropped and named in ``MovieReady.problems``. An empty
``metadata`` gives ``metadata=None``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import ValidationError

from causalscope.models.records import AcquisitionMetadata

__all__ = [
    "check_header_values",
    "is_safe_exposure_id",
    "list_indices",
    "memory_limit_bytes",
    "stream_metadata",
]

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_MAX_SIDE_PX = 1 << 16


def is_safe_exposure_id(exposure_id: object) -> bool:
    """Whether ``exposure_id`` can name spool files: 1-200 of ``A-Z a-z 0-9 . _ -``, no
    leading dot."""
    return isinstance(exposure_id, str) and _SAFE_ID.fullmatch(exposure_id) is not None


def stream_metadata(
    header: dict[str, Any], *, origin: str
) -> tuple[AcquisitionMetadata | None, list[str]]:
    """The start header's ``metadata`` as :class:`AcquisitionMetadata`, and what was dropped.

    Parameters
    ----------
    header
        A parsed ``start`` header.
    origin
        ``source_path`` when the sender gave none (the receiver's address).

    Returns
    -------
    metadata, problems
        None when the header carries no metadata; ``problems`` names each dropped field.
    """
    raw = header.get("metadata")
    if not isinstance(raw, dict) or not raw:
        return None, []
    data = {str(key): value for key, value in raw.items()}
    problems: list[str] = []
    given_extra = data.pop("extra", None)
    extra: dict[str, str] = {}
    if isinstance(given_extra, dict):
        extra.update({str(k): _text(v) for k, v in given_extra.items()})
    elif given_extra is not None:
        problems.append(f"metadata extra={given_extra!r:.60} is not an object; dropped")
    known = AcquisitionMetadata.model_fields
    for key in [key for key in data if key not in known]:
        extra.setdefault(key, _text(data.pop(key)))
    if not isinstance(data.get("source_path"), str) or not data["source_path"]:
        data["source_path"] = origin
    if data.get("source_format") not in ("epu", "mdoc"):
        if data.get("source_format") is not None:
            extra.setdefault("source_format", _text(data["source_format"]))
        data["source_format"] = "epu"
    if data.get("pixel_size_angstrom") is None and header.get("pixel_size_angstrom") is not None:
        data["pixel_size_angstrom"] = header["pixel_size_angstrom"]
    if data.get("n_frames") is None:
        data["n_frames"] = header.get("n_frames")
    data["extra"] = extra
    while True:
        try:
            return AcquisitionMetadata.model_validate(data), problems
        except ValidationError as error:
            bad = {str(e["loc"][0]): e["msg"] for e in error.errors() if e["loc"]}
            droppable = {key: msg for key, msg in bad.items() if key in data and key != "extra"}
            if not droppable:
                problems.append(f"metadata unusable ({error.error_count()} errors); ignored")
                return None, problems
            for key, msg in droppable.items():
                value = data.pop(key)
                problems.append(f"metadata {key}={value!r:.60} is invalid ({msg}); dropped")


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def list_indices(indices: Sequence[int] | np.ndarray, limit: int = 12) -> str:
    shown = ", ".join(str(int(i)) for i in list(indices)[:limit])
    return shown + (f", ... ({len(indices)} in all)" if len(indices) > limit else "")


def check_header_values(header: dict[str, Any]) -> str | None:
    """What is wrong with the values of a parsed header (parse_header checks only presence)."""
    kind = header["type"]
    lowest = {"n_frames": 1 if kind == "start" else 0, "index": 0, "height": 1, "width": 1}
    for key, low in lowest.items():
        if key not in header:
            continue
        value = header[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            return f"{key} must be an integer >= {low}, got {value!r:.40}"
        if key in ("height", "width") and value > _MAX_SIDE_PX:
            return f"{key} {value} px is larger than {_MAX_SIDE_PX}"
    if kind == "start":
        apix = header.get("pixel_size_angstrom")
        if apix is not None and (
            not isinstance(apix, int | float)
            or isinstance(apix, bool)
            or not math.isfinite(apix)
            or apix <= 0
        ):
            return f"pixel_size_angstrom must be a positive number or null, got {apix!r:.40}"
        if not isinstance(header.get("metadata") or {}, dict):
            return f"metadata must be an object, got {header['metadata']!r:.40}"
    return None


def memory_limit_bytes() -> int | None:
    """Half the physical memory: the most one exposure may declare (None where unknown)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (AttributeError, ValueError, OSError):
        return None
