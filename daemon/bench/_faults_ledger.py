"""The chaos run's ledger: what became of every planned exposure, read from the session
database once the daemon has stopped, and the table an operator reads."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Planned", "account_for", "format_table"]


@dataclass
class Planned:
    """One exposure the benchmark makes: how it arrives and what should become of it."""

    exposure_id: str
    source: str  # "file" or "stream"
    fault: str = "clean"
    expect: str | None = None  # the quarantine code it must end with; None: done


def account_for(database: Path, plan: list[Planned]) -> dict[str, Any]:
    """Every planned exposure's fate, read from the session database (the daemon stopped)."""
    import duckdb

    with duckdb.connect(str(database), read_only=True) as db:
        states = {
            row[0]: (row[1], row[2])
            for row in db.execute("SELECT exposure_id, state, attempts FROM exposures").fetchall()
        }
        results = Counter(
            row[0] for row in db.execute("SELECT exposure_id FROM results").fetchall()
        )
        quarantine = db.execute(
            "SELECT exposure_id, code, reason FROM quarantine ORDER BY id"
        ).fetchall()
        runs = db.execute("SELECT count(*) FROM runs").fetchone()
        alerts = db.execute(
            "SELECT data->>'code', count(*) FROM events WHERE kind = 'alert' GROUP BY 1"
        ).fetchall()
        problems = db.execute(
            "SELECT message FROM events WHERE kind = 'problem' ORDER BY id"
        ).fetchall()
        latencies = [
            float(row[0])
            for row in db.execute(
                "SELECT latency_s FROM exposures WHERE state = 'done' AND latency_s IS NOT NULL"
            ).fetchall()
        ]
    by_id: dict[str | None, list[tuple[str, str]]] = {}
    for exposure_id, code, reason in quarantine:
        by_id.setdefault(exposure_id, []).append((code, reason))
    done: list[str] = []
    quarantined: dict[str, dict[str, Any]] = {}
    lost: list[str] = []
    duplicated: list[str] = []
    unexpected: list[str] = []
    for planned in plan:
        exposure_id = planned.exposure_id
        state, _attempts = states.get(exposure_id, (None, 0))
        rows = by_id.get(exposure_id, [])
        is_done = state == "done" and results[exposure_id] >= 1
        if results[exposure_id] > 1 or len(rows) > 1 or (is_done and rows):
            duplicated.append(exposure_id)
        if is_done:
            done.append(exposure_id)
            if planned.expect is not None:
                unexpected.append(f"{exposure_id}: done, expected {planned.expect}")
        elif rows and state in (None, "quarantined"):
            code, reason = rows[-1]
            quarantined[exposure_id] = {"code": code, "reason": reason, "fault": planned.fault}
            # a clean exposure may be quarantined when its workers kept failing (the faults'
            # doing): that is an outcome with a reason, and the report lists it
            if planned.expect is not None and planned.expect != code:
                unexpected.append(f"{exposure_id}: quarantined {code}, expected {planned.expect}")
        else:
            lost.append(exposure_id)
    planned_ids = {p.exposure_id for p in plan}
    others = [
        (code, reason)
        for key, rows in by_id.items()
        if key not in planned_ids
        for code, reason in rows
    ]
    attempts = Counter(attempts for _, attempts in states.values())
    return {
        "done": len(done),
        "quarantined": len(quarantined),
        "quarantined_exposures": quarantined,
        "quarantined_without_reason": sum(
            1 for q in quarantined.values() if not q["reason"].strip()
        ),
        "quarantine_codes": dict(Counter(q["code"] for q in quarantined.values())),
        "other_quarantine_rows": dict(Counter(code for code, _ in others)),
        "lost": len(lost),
        "lost_exposures": lost,
        "duplicated": len(duplicated),
        "duplicated_exposures": duplicated,
        "unexpected": unexpected,
        "attempts": {str(k): v for k, v in sorted(attempts.items())},
        "alerts": dict(alerts),
        "problems": [row[0][:300] for row in problems],
        "latency_s": {
            "median": round(statistics.median(latencies), 2) if latencies else None,
            "max": round(max(latencies), 2) if latencies else None,
        },
        "runs_in_database": int(runs[0]) if runs else 0,
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as the table an operator reads."""
    lines = [
        f"chaos run: {report['exposures']} exposures ({report['movie']}), "
        f"{report['elapsed_s']:.0f} s"
    ]
    lines.append("faults injected")
    for kind, count in sorted(report["faults"].items()):
        lines.append(f"  {kind:<36} {count:>4}")
    for kind, why in report["faults_skipped"].items():
        lines.append(f"  {kind:<36} skipped: {why}")
    daemon = report["daemon"]
    lines += [
        f"{'exposures done':<38} {report['done']:>4}",
        f"{'quarantined':<38} {report['quarantined']:>4}",
    ]
    for exposure_id, entry in report["quarantined_exposures"].items():
        lines.append(f"  {exposure_id} [{entry['fault']}] {entry['code']}: {entry['reason'][:90]}")
    lines += [
        f"{'lost':<38} {report['lost']:>4}",
        f"{'duplicated':<38} {report['duplicated']:>4}",
        f"{'daemon restarts (planned)':<38} {daemon['restarts']:>4} ({daemon['planned_restarts']})",
        f"{'runs in the session database':<38} {daemon['runs_in_database']:>4}",
        f"{'unplanned daemon exits':<38} {daemon['unplanned_exits']:>4}",
        f"{'uptime unbroken between planned kills':<38} {daemon['uptime_unbroken']!s:>5}",
    ]
    for run in daemon["runs"]:
        lines.append(f"  pid {run['pid']:<8} up {run['up_s']:>7.1f} s, {run['ended']}")
    lines.append(f"alerts: {report['alerts']}")
    for line in report["terminal_problems"]:
        lines.append(f"  {line[:140]}")
    if report["unexpected"]:
        lines.append(f"unexpected: {report['unexpected']}")
    return "\n".join(lines)
