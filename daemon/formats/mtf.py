"""Detector MTF tables in RELION's STAR format (``relion/data/mtf_*.star``) via starfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from causalscope.daemon.formats._common import file_size
from causalscope.models.errors import FormatError

__all__ = ["read_mtf_star"]

_FREQUENCY = "rlnResolutionInversePixel"
_VALUE = "rlnMtfValue"
_MAX_MTF = 1.2  # measured MTFs overshoot 1 a little at low frequency


def read_mtf_star(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a RELION MTF table.

    Returns
    -------
    frequency_per_pixel, mtf
        float64 arrays: spatial frequency in 1/pixel (0 to 0.5 = Nyquist), strictly
        increasing, and the MTF there, in [0, 1.2].

    Raises
    ------
    FormatError
        Unreadable STAR, no table with ``_rlnResolutionInversePixel`` and ``_rlnMtfValue``,
        non-numeric values, frequencies not increasing or outside [0, 0.5], MTF outside
        [0, 1.2].
    """
    path = Path(path)
    file_size(path, "MTF table")
    try:
        data = starfile.read(path, always_dict=True)
    except (ValueError, OSError, KeyError, IndexError) as exc:
        raise FormatError("Unreadable MTF STAR file", f"{path}: {exc}", path=path) from exc
    tables = [t for t in data.values() if isinstance(t, pd.DataFrame)]
    table = next((t for t in tables if {_FREQUENCY, _VALUE} <= set(t.columns)), None)
    if table is None:
        columns = sorted({str(c) for t in tables for c in t.columns})
        raise FormatError(
            "Not an MTF table",
            f"{path}: needs columns _{_FREQUENCY} and _{_VALUE}, found {columns or 'none'}",
            path=path,
        )
    try:
        frequency = table[_FREQUENCY].to_numpy(dtype=np.float64)
        mtf = table[_VALUE].to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise FormatError("Non-numeric MTF table", f"{path}: {exc}", path=path) from exc
    if frequency.size < 2 or not np.all(np.isfinite(frequency)) or not np.all(np.isfinite(mtf)):
        raise FormatError(
            "Bad MTF table", f"{path}: {frequency.size} rows, or NaN/inf values", path=path
        )
    steps = np.diff(frequency)
    if np.any(steps <= 0):
        row = int(np.argmax(steps <= 0)) + 1
        raise FormatError(
            "Bad MTF table",
            f"{path}: _{_FREQUENCY} does not increase at row {row + 1} "
            f"({frequency[row - 1]} then {frequency[row]})",
            path=path,
        )
    if frequency[0] < 0 or frequency[-1] > 0.5 + 1e-9:
        raise FormatError(
            "Bad MTF table",
            f"{path}: _{_FREQUENCY} spans {frequency[0]}..{frequency[-1]}; expected 0..0.5 "
            "(1/pixel)",
            path=path,
        )
    outside = (mtf < 0) | (mtf > _MAX_MTF)
    if np.any(outside):
        row = int(np.argmax(outside))
        raise FormatError(
            "Bad MTF table",
            f"{path}: _{_VALUE} = {mtf[row]} at row {row + 1} is outside [0, {_MAX_MTF}]",
            path=path,
        )
    return frequency, mtf
