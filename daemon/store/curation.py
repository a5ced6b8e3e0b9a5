"""Every exposure's and the latest 2D classes' recommendations, with their reasons.

``causalscope summary --recommendations`` prints them after the summary (the summary itself
counts them and names the three lowest-scoring exposures): each scored exposure with its
HyperScore, the operator's label where there is one (it decides), the recommendation and why
(its failed obligations, else the score's reason), lowest HyperScore first; then each class of
the latest classification with its particles, junk score, label, recommendation and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from causalscope.daemon.client.query import Selectable
from causalscope.daemon.client.views import (
    HAS_CLASSES_SQL,
    HAS_SCORES_SQL,
    LATEST_LABELS_SQL,
    SCORE_RELATIONS,
)
from causalscope.daemon.store.summary import select_rows

__all__ = ["describe_recommendations", "recommendations"]

_EXPOSURES_SQL = f"""
SELECT s.subject, s.hyperscore, l.label, s.recommendation, s.reason,
       (SELECT string_agg(o.name || ': ' || o.message, '; ' ORDER BY o.name)
        FROM obligations o
        WHERE o.kind = s.kind AND o.subject = s.subject AND NOT o.holds) AS failed
FROM scores AS s
LEFT JOIN ({LATEST_LABELS_SQL}) AS l ON l.exposure_id = s.subject
WHERE s.kind = 'exposure'
ORDER BY s.hyperscore NULLS FIRST, s.subject
"""
_CLASSES_SQL = """
SELECT class_index, particles, junk_score, label, recommendation, reason
FROM classes WHERE version = (SELECT max(version) FROM class_sets)
ORDER BY class_index
"""


def recommendations(source: duckdb.DuckDBPyConnection | Selectable) -> dict[str, Any]:
    """``{"exposures": [...], "classes": [...]}`` (module docstring); each list empty when the
    session has no scores or no classes."""

    def rows(sql: str, params: Sequence[Any] | None = None) -> list[Sequence[Any]]:
        return select_rows(source, sql, params)[1]

    exposures: list[dict[str, Any]] = []
    if rows(HAS_SCORES_SQL)[0][0] == len(SCORE_RELATIONS):
        for subject, hyperscore, label, recommendation, reason, failed in rows(_EXPOSURES_SQL):
            exposures.append(
                {
                    "exposure_id": str(subject),
                    "hyperscore": None if hyperscore is None else float(hyperscore),
                    "label": label,
                    "recommendation": recommendation,
                    "reason": failed or reason,
                }
            )
    classes: list[dict[str, Any]] = []
    if rows(HAS_CLASSES_SQL)[0][0]:
        for index, particles, junk, label, recommendation, reason in rows(_CLASSES_SQL):
            classes.append(
                {
                    "class_number": int(index) + 1,
                    "particles": int(particles),
                    "junk_score": float(junk),
                    "label": label,
                    "recommendation": recommendation,
                    "reason": reason,
                }
            )
    return {"exposures": exposures, "classes": classes}


def describe_recommendations(found: dict[str, Any]) -> str:
    """Aligned text of :func:`recommendations` for a terminal."""
    lines = []
    exposures = found["exposures"]
    lines.append(f"exposures   {len(exposures)} scored (lowest HyperScore first)")
    width = max((len(e["exposure_id"]) for e in exposures), default=0)
    for e in exposures:
        score = "  -  " if e["hyperscore"] is None else f"{e['hyperscore']:5.1f}"
        verdict = _verdict(e["label"], e["recommendation"], {"accept", "reject"})
        why = e["reason"] or ""
        lines.append(f"  {e['exposure_id']:<{width}}  {score}  {verdict:<20} {why}".rstrip())
    classes = found["classes"]
    if classes:
        lines.append(f"2D classes  {len(classes)} in the latest classification")
        for c in classes:
            verdict = _verdict(c["label"], c["recommendation"], {"select", "reject"})
            lines.append(
                f"  class {c['class_number']:>3}  {c['particles']:>7,} particles  junk "
                f"{c['junk_score']:.2f}  {verdict:<20} {c['reason'] or ''}".rstrip()
            )
    return "\n".join(lines)


def _verdict(label: str | None, recommendation: str | None, labels: set[str]) -> str:
    """``accept``, or ``reject (your label)`` where the operator's label decided."""
    if label in labels:
        return f"{label} (your label)"
    return recommendation or "-"
