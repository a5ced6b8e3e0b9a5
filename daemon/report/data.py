"""What a session's report shows, read from its database in one pass (no HTML here).

The numbers are the summary's (:func:`causalscope.daemon.store.summary.summarize`) and the
per-exposure series come from its :data:`~causalscope.daemon.store.summary.SERIES_SQL`; the
worst exposures are the scores' (:data:`~causalscope.daemon.store.scores.WORST_SQL`), or the
worst CTF fits in a session that was not scored.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from causalscope.daemon.client.query import Selectable
from causalscope.daemon.store.summary import SessionSummary, select_rows

#: what the report reads: an open session file, or a session reader (a running session's query
#: endpoint)
Source = duckdb.DuckDBPyConnection | Selectable

__all__ = ["ReportData", "WorstExposure", "gather"]

#: How many of the worst exposures the report shows, each with its thumbnails.
N_WORST = 8
#: The longest side of a thumbnail in the report (pixels): the report stays small.
THUMBNAIL_PX = 128

_WORST_BY_FIT_SQL = """
SELECT e.exposure_id, NULL, NULL, NULL, NULL FROM exposures AS e JOIN ctf AS c USING (exposure_id)
WHERE e.state = 'done'
ORDER BY c.fit_resolution_angstrom DESC NULLS FIRST, e.exposure_id LIMIT ?
"""
_DETAIL_SQL = """
SELECT e.exposure_id, e.gate_status, e.outputs, c.fit_resolution_angstrom, c.defocus_angstrom,
       c.ice_thickness_nm, m.total_drift_px, p.n_particles,
       (SELECT string_agg(f.message, '; ' ORDER BY f.position) FROM flags AS f
        WHERE f.exposure_id = e.exposure_id) AS flags
FROM exposures AS e LEFT JOIN ctf AS c USING (exposure_id)
LEFT JOIN motion AS m USING (exposure_id) LEFT JOIN picking AS p USING (exposure_id)
WHERE e.exposure_id = ?
"""
_CAUSE_OF_SQL = "SELECT dominant_cause FROM causal WHERE exposure_id = ?"
_CLASSES_SQL = """
SELECT class_index, particles, resolution_angstrom, junk_score, selected
FROM classes WHERE version = (SELECT max(version) FROM class_sets) ORDER BY class_index
"""
_GALLERY_SQL = "SELECT gallery_path FROM class_sets ORDER BY version DESC LIMIT 1"
_MAPS_SQL = """
SELECT version, particles, resolution_angstrom, pixel_size_angstrom, fsc_masked, fsc_unmasked
FROM reconstructions ORDER BY version
"""
_SETTINGS_SQL = "SELECT run_id, started_at, version, command_line, settings_json FROM runs"


@dataclass(frozen=True)
class WorstExposure:
    """One of the worst exposures, with why and its pictures (PNG data URIs, or None)."""

    exposure_id: str
    hyperscore: float | None
    why: str
    values: dict[str, Any]
    micrograph_png: str | None
    spectrum_png: str | None


@dataclass
class ReportData:
    """Everything the report shows.

    Attributes
    ----------
    summary
        The session's summary.
    series
        Column name -> values per done exposure in commit order (see ``SERIES_SQL``).
    worst
        The worst exposures, worst first.
    classes
        The latest 2D classes (``class_index``, ``particles``, ``resolution_angstrom``,
        ``junk_score``, ``selected``), and ``gallery_png`` their gallery (data URI) or None.
    maps
        The 3D maps over the updates: ``version``, ``particles``, ``resolution_angstrom``,
        ``pixel_size_angstrom``, ``fsc_masked``, ``fsc_unmasked``.
    runs
        The daemon's starts, each with its settings.
    """

    summary: SessionSummary
    series: dict[str, list[Any]]
    worst: list[WorstExposure]
    classes: list[dict[str, Any]] = field(default_factory=list)
    gallery_png: str | None = None
    maps: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)


def gather(connection: Source, *, base: Path) -> ReportData:
    """Read the report's data from a session file's connection or a session reader; relative
    file paths are taken from ``base`` (the session's folder)."""
    from causalscope.daemon.store.summary import SERIES_SQL, summarize

    summary = summarize(connection)
    columns, rows = select_rows(connection, SERIES_SQL)
    series = {name: [r[i] for r in rows] for i, name in enumerate(columns)}
    data = ReportData(summary=summary, series=series, worst=_worst(connection, summary, base))
    if _has(connection, "class_sets"):
        data.classes = _dicts(connection, _CLASSES_SQL)
        gallery = _first(connection, _GALLERY_SQL)
        data.gallery_png = None if gallery is None else png_data_uri(gallery[0], base, max_px=None)
    if _has(connection, "reconstructions"):
        data.maps = _dicts(connection, _MAPS_SQL)
        for m in data.maps:
            for key in ("fsc_masked", "fsc_unmasked"):
                m[key] = json.loads(m[key]) if isinstance(m[key], str) else m[key]
    for run in _dicts(connection, _SETTINGS_SQL):
        run["settings"] = json.loads(run.pop("settings_json") or "{}")
        run["command_line"] = json.loads(run["command_line"] or "[]")
        data.runs.append(run)
    return data


def _worst(connection: Source, summary: SessionSummary, base: Path) -> list[WorstExposure]:
    from causalscope.daemon.store.scores import WORST_SQL

    sql = WORST_SQL if summary.scores is not None else _WORST_BY_FIT_SQL
    has_causal = _has(connection, "causal")
    out = []
    for subject, hyperscore, weakest, reason, failed in select_rows(connection, sql, [N_WORST])[1]:
        detail = _first(connection, _DETAIL_SQL, [subject])
        if detail is None:
            continue
        eid, gate, outputs_json, fit, defocus, ice, drift, particles, flags = detail
        outputs = json.loads(outputs_json) if outputs_json else {}
        # the score's reason often repeats a failed obligation: each statement once
        reasons = list(
            dict.fromkeys(p for r in (failed, reason, flags) if r for p in r.split("; "))
        )
        if has_causal:
            cause = _first(connection, _CAUSE_OF_SQL, [subject])
            if cause is not None and cause[0]:
                reasons.append(f"causal model: most of the lost resolution is {cause[0]}")
        if not reasons and weakest:
            reasons.append(f"held down by {weakest}")
        out.append(
            WorstExposure(
                exposure_id=str(eid),
                hyperscore=None if hyperscore is None else float(hyperscore),
                why="; ".join(reasons) or "the worst CTF fits of the session",
                values={
                    "gate": gate,
                    "fit_resolution_angstrom": fit,
                    "defocus_um": None if defocus is None else defocus / 1e4,
                    "ice_thickness_nm": ice,
                    "total_drift_px": drift,
                    "particles": particles,
                },
                micrograph_png=png_data_uri(outputs.get("thumbnail"), base),
                spectrum_png=png_data_uri(outputs.get("power_spectrum_thumbnail"), base),
            )
        )
    return out


def png_data_uri(path: str | None, base: Path, *, max_px: int | None = THUMBNAIL_PX) -> str | None:
    """The grey PNG at ``path`` (relative to ``base``, the session's folder, unless absolute;
    under ``base`` when the folder has moved since) as a data URI, binned down to at most
    ``max_px`` on its longer side; None when there is no such readable file (the report still
    renders, without the picture)."""
    from causalscope.daemon.client.paths import session_file

    if not path:
        return None
    file = session_file(path, base)  # also where a moved session folder holds it now
    try:
        data = file.read_bytes()
    except OSError:
        return None
    if not data.startswith(b"\x89PNG"):
        return None
    if max_px is not None:
        data = _binned_png(data, max_px)
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _binned_png(data: bytes, max_px: int) -> bytes:
    import imagecodecs
    import numpy as np

    image = np.asarray(imagecodecs.png_decode(data))
    if image.ndim != 2 or max(image.shape) <= max_px:
        return data
    factor = -(-max(image.shape) // max_px)
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    binned = image[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    return bytes(imagecodecs.png_encode(np.round(binned).astype(np.uint8)))


def _first(connection: Source, sql: str, params: list[Any] | None = None) -> Any:
    rows = select_rows(connection, sql, params)[1]
    return rows[0] if rows else None


def _has(connection: Source, table: str) -> bool:
    row = _first(
        connection, "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    )
    return bool(row and row[0])


def _dicts(connection: Source, sql: str) -> list[dict[str, Any]]:
    columns, rows = select_rows(connection, sql)
    return [dict(zip(columns, r, strict=True)) for r in rows]
