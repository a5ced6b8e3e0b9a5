"""A session at a glance: counts, pace, the distributions an operator watches, and why
exposures failed.

Every number comes from single SELECT statements, so the same summary is computed from a
DuckDB connection or through a running session's query endpoint
(:class:`causalscope.daemon.store.reader.SessionReader`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from causalscope.daemon.client.local import add_missing_views
from causalscope.daemon.client.query import Selectable
from causalscope.daemon.client.views import CAUSES_SQL, HAS_SCORES_SQL, SCORE_RELATIONS
from causalscope.daemon.store import scores

__all__ = [
    "COUNTS_SQL",
    "DISTRIBUTION_LABELS",
    "SERIES_SQL",
    "CauseSummary",
    "Distribution",
    "SessionSummary",
    "select_rows",
    "summarize",
]

#: Exposures by state and gate status, and the sizes of the other tables (one row).
COUNTS_SQL = (
    "SELECT count(*) AS seen, "
    "count(*) FILTER (WHERE state = 'seen') AS pending, "
    "count(*) FILTER (WHERE state = 'done') AS done, "
    "count(*) FILTER (WHERE state = 'quarantined') AS quarantined, "
    "count(*) FILTER (WHERE state = 'done' AND gate_status = 'pass') AS pass, "
    "count(*) FILTER (WHERE state = 'done' AND gate_status = 'warn') AS warn, "
    "count(*) FILTER (WHERE state = 'done' AND gate_status = 'fail') AS fail, "
    "(SELECT count(*) FROM quarantine) AS quarantine_records, "
    "(SELECT count(*) FROM results) AS results, "
    "(SELECT count(*) FROM events) AS events "
    "FROM exposures"
)

_TIMING_SQL = (
    "SELECT count(done_at), epoch(min(done_at)), epoch(max(done_at)), median(latency_s) "
    "FROM exposures WHERE state = 'done'"
)

# name -> SQL expression over the done exposures joined with their ctf (c) and motion (m) rows.
_DISTRIBUTIONS = {
    "defocus_um": "c.defocus_angstrom / 1e4",
    "fit_resolution_angstrom": "c.fit_resolution_angstrom",
    "total_drift_px": "m.total_drift_px",
    "ice_thickness_nm": "c.ice_thickness_nm",
    "particles_per_exposure": "p.n_particles",
}
_LABELS = {
    "defocus_um": "defocus (um)",
    "fit_resolution_angstrom": "CTF fit resolution (A)",
    "total_drift_px": "total drift (px)",
    "ice_thickness_nm": "ice thickness (nm)",
    "particles_per_exposure": "particles per exposure",
}

#: The distributions' names and their labels for people, in the summary's order.
DISTRIBUTION_LABELS = dict(_LABELS)
#: Each done exposure's values of the distributions, in commit order: ``exposure_id``,
#: ``done_s`` (epoch seconds of its commit), ``gate_status``, then one column per distribution.
SERIES_SQL = (
    "SELECT e.exposure_id, epoch(e.done_at) AS done_s, e.gate_status, "
    + ", ".join(f"{expr} AS {name}" for name, expr in _DISTRIBUTIONS.items())
    + " FROM exposures AS e LEFT JOIN ctf AS c USING (exposure_id) "
    "LEFT JOIN motion AS m USING (exposure_id) LEFT JOIN picking AS p USING (exposure_id) "
    "WHERE e.state = 'done' ORDER BY e.done_at, e.exposure_id"
)

_FLAG_CODES_SQL = (
    "SELECT f.code, count(DISTINCT f.exposure_id) AS n FROM flags AS f "
    "JOIN exposures AS e USING (exposure_id) WHERE e.state = 'done' AND f.severity = ? "
    "GROUP BY f.code ORDER BY n DESC, f.code"
)
_CAUSAL_SQL = (
    "SELECT count(*), max(regime), bool_and(converged) FILTER (WHERE model_index = "
    "(SELECT max(model_index) FROM causal)) FROM causal"
)
_HAS_CAUSAL_SQL = (
    "SELECT count(*) FROM information_schema.tables WHERE table_name = 'causal_ranking'"
)
#: Particles beyond which a forecast is reported as out of reach rather than as a number.
_OUT_OF_REACH = 1e8
_HAS_EVALUATIONS_SQL = (
    "SELECT count(*) FROM information_schema.tables WHERE table_name = 'evaluations'"
)
# the latest update of the running reconstructions, with its classes, map and forecast
_RECONSTRUCTION_SQL = """
SELECT e.version, e.particles, e.exposures, c.n_classes,
       (SELECT count(*) FROM classes k WHERE k.version = c.version AND k.selected)
           AS selected_classes,
       c.selected_particles, c.gallery_path, r.resolution_angstrom,
       r.resolution_unmasked_angstrom, r.coverage, r.map_path, f.bfactor_angstrom2,
       f.target_resolution_angstrom, f.particles_needed, f.resolution_at_double_angstrom,
       f.hours_to_target, f.hours_left, f.particles_at_end, f.resolution_at_end_angstrom,
       f.p_reach_target
FROM evaluations e
LEFT JOIN class_sets c USING (version)
LEFT JOIN reconstructions r USING (version)
LEFT JOIN forecasts f USING (version)
ORDER BY e.version DESC LIMIT 1
"""
#: whether the classes carry their recommendation (files before schema 5 do not)
_HAS_CURATION_SQL = (
    "SELECT count(*) FROM information_schema.columns "
    "WHERE table_name = 'classes' AND column_name = 'recommendation'"
)
#: the latest class set's classes with their recommendation, Novelty and nearest entry
_CURATION_SQL = """
SELECT class_index, particles, recommendation, reason, novelty, nearest, nearest_kind
FROM classes WHERE version = (SELECT max(version) FROM class_sets)
ORDER BY class_index
"""
_QUARANTINE_SQL = "SELECT code, count(*) AS n FROM quarantine GROUP BY code ORDER BY n DESC, code"


@dataclass(frozen=True)
class Distribution:
    """Spread of one quantity over the done exposures that have it.

    Quantiles interpolate linearly between the sorted values (``numpy.percentile``'s default).
    Every value but ``n`` is None when ``n`` is 0.
    """

    n: int
    min: float | None
    p10: float | None
    median: float | None
    p90: float | None
    max: float | None


@dataclass(frozen=True)
class CauseSummary:
    """One cause in the causal model's latest ranking (see ``causal_ranking`` in the schema)."""

    cause: str
    rank: int
    mean_angstrom: float
    sd_angstrom: float
    p_top: float
    weight_mean: float
    weight_sd: float
    tolerance: float
    observed: bool
    converged: bool
    advice: str


@dataclass(frozen=True)
class SessionSummary:
    """What a session holds.

    Attributes
    ----------
    session
        The session's name.
    runs
        Times the daemon was started on it.
    seen, done, pending, quarantined
        Exposures by state (``seen`` counts all of them).
    passed, warned, failed
        Done exposures by the gate's verdict.
    quarantine_records
        Rejected inputs, including those that named no exposure.
    rate_per_hour
        Exposures done per hour: (done - 1) over the hours from the first to the last commit;
        None with fewer than two commits.
    median_latency_s
        Median seconds from a movie being complete to its commit; None when none was timed.
    defocus_um, fit_resolution_angstrom, total_drift_px, ice_thickness_nm, particles_per_exposure
        Distributions over the done exposures (of any gate verdict) that have the value.
    failures, warnings
        ``(code, exposures)`` of the gate's fail and warn flags, most frequent first.
    quarantine_reasons
        ``(code, records)`` of the quarantine, most frequent first.
    causal_exposures, causal_converged, regime_changes, causes
        The causal model: exposures it learned from, whether every observed weight has
        converged, regime changes declared, and the causes ranked by mean resolution cost.
    reconstruction
        The running reconstructions' latest update (version, particles, classes and those
        selected, the map's resolution and coverage, the forecast, and ``classes``: each
        class of the latest class set with its ``recommendation``, ``reason``, ``novelty``,
        ``nearest`` entry and ``nearest_kind``), or None before one.
    scores
        The exposures' scores: ``scored``, HyperScore ``p10``, ``median`` and ``p90``, mean
        ``logic``, ``failed`` obligations ``{name: count}``, ``recommended`` ``{accept, look,
        reject: count}`` and the ``worst`` three not recommended for acceptance (``subject``,
        ``hyperscore``, ``weakest`` term, ``reason``, ``failed`` obligations in words); None
        before any.
    """

    session: str
    runs: int
    seen: int
    done: int
    pending: int
    quarantined: int
    passed: int
    warned: int
    failed: int
    quarantine_records: int
    rate_per_hour: float | None
    median_latency_s: float | None
    defocus_um: Distribution
    fit_resolution_angstrom: Distribution
    total_drift_px: Distribution
    ice_thickness_nm: Distribution
    particles_per_exposure: Distribution
    failures: tuple[tuple[str, int], ...]
    warnings: tuple[tuple[str, int], ...]
    quarantine_reasons: tuple[tuple[str, int], ...]
    causal_exposures: int = 0
    causal_converged: bool = False
    regime_changes: int = 0
    causes: tuple[CauseSummary, ...] = ()
    reconstruction: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: distributions as objects, reason lists as ``{code: count}``."""
        out = dataclasses.asdict(self)
        for name in ("failures", "warnings", "quarantine_reasons"):
            out[name] = dict(getattr(self, name))
        return out

    def describe(self) -> str:
        """A compact, aligned text block for a terminal."""
        runs = f"{self.runs} run" + ("" if self.runs == 1 else "s")
        lines = [f"session     {self.session} ({runs})"]
        lines.append(
            f"exposures   seen {self.seen}   done {self.done}   pending {self.pending}   "
            f"quarantined {self.quarantined}"
        )

        def share(n: int) -> str:
            return f"{n} ({100 * n / self.done:.0f}%)" if self.done else str(n)

        lines.append(
            f"gate        pass {share(self.passed)}   warn {share(self.warned)}   "
            f"fail {share(self.failed)}"
        )
        rate = "-" if self.rate_per_hour is None else f"{self.rate_per_hour:.1f} exposures/h"
        latency = "-" if self.median_latency_s is None else f"{self.median_latency_s:.2f} s"
        lines.append(f"pace        {rate}; median latency {latency}")
        width = max(len(label) for label in _LABELS.values())
        heads = ("n", "min", "p10", "median", "p90", "max")
        lines.append(" " * width + "".join(f"{h:>9}" for h in heads))
        for name, label in _LABELS.items():
            dist: Distribution = getattr(self, name)
            values = [dist.min, dist.p10, dist.median, dist.p90, dist.max]
            cells = "".join("        -" if v is None else f"{v:9.3g}" for v in values)
            lines.append(f"{label:<{width}}{dist.n:>9}{cells}")
        for title, pairs in (
            ("failures", self.failures),
            ("warnings", self.warnings),
            ("quarantine", self.quarantine_reasons),
        ):
            text = ", ".join(f"{code} {n}" for code, n in pairs) or "none"
            lines.append(f"{title:<12}{text}")
        lines.extend(self.describe_causes())
        lines.extend(self.describe_reconstruction())
        lines.extend(self.describe_scores())
        return "\n".join(lines)

    def describe_scores(self) -> list[str]:
        """The scores' lines of :meth:`describe`."""
        s = self.scores
        if s is None:
            return []
        failed = ", ".join(f"{name} {n}" for name, n in s["failed"].items()) or "none"
        logic = "-" if s["logic"] is None else f"{s['logic']:.2f}"
        lines = [
            f"scores      HyperScore median {s['median']:.1f} (p10 {s['p10']:.1f}, p90 "
            f"{s['p90']:.1f}) over {s['scored']} exposures; LogicScore mean {logic}",
            f"  failed obligations  {failed}",
        ]
        counts = s.get("recommended") or {}
        if counts:
            lines.append(
                "  recommended  "
                + "   ".join(f"{k} {counts.get(k, 0)}" for k in ("accept", "look", "reject"))
            )
        for worst in s["worst"]:
            why = worst["failed"] or worst.get("reason") or f"held down by {worst['weakest']}"
            lines.append(f"  low  {worst['subject']}  {worst['hyperscore']:.1f}: {why}")
        return lines

    def describe_reconstruction(self) -> list[str]:
        """The running reconstructions' lines of :meth:`describe`."""
        r = self.reconstruction
        if r is None:  # a session without them reads as before they existed
            return []
        lines = [
            f"reconstruction  update {r['version']}: {r['particles']} particles from "
            f"{r['exposures']} exposures"
        ]
        if r["n_classes"] is not None:
            lines.append(
                f"  2D classes  {r['selected_classes']} of {r['n_classes']} selected, "
                f"{r['selected_particles']} particles; gallery {r['gallery_path']}"
            )
        lines.extend(_describe_curation(r.get("classes") or []))
        if r["map_path"] is not None:
            gold = r["resolution_angstrom"]
            text = "not reached" if gold is None else f"{gold:.1f} A"
            lines.append(
                f"  3D map      gold-standard FSC 0.143 {text}, coverage {r['coverage']:.0%}; "
                f"{r['map_path']}"
            )
        needed, target = r["particles_needed"], r["target_resolution_angstrom"]
        if needed is not None and needed > _OUT_OF_REACH:
            lines.append(
                f"  forecast    {target:.1f} A is out of reach at this map's fall-off (more "
                f"than {_OUT_OF_REACH:.0e} particles)"
            )
        elif needed is not None:
            hours = r["hours_to_target"]
            when = "" if hours is None else f", ~{hours:.1f} h at the current rate"
            lines.append(f"  forecast    {target:.1f} A needs ~{needed:,.0f} particles{when}")
        end = r["resolution_at_end_angstrom"]
        if end is not None and r["p_reach_target"] is not None:
            lines.append(
                f"  by the end  ~{end:.1f} A from ~{r['particles_at_end']:,.0f} particles in "
                f"{r['hours_left']:.1f} h left of the plan; P(reach {target:.1f} A) = "
                f"{r['p_reach_target']:.0%}"
            )
        return lines

    def describe_causes(self) -> list[str]:
        """The causal model's lines of :meth:`describe`."""
        if not self.causal_exposures:
            return ["causes      none learned (no exposure with a CTF fit resolution and ice)"]
        state = "converged" if self.causal_converged else "still learning"
        changes = f", {self.regime_changes} regime change(s)" if self.regime_changes else ""
        lines = [
            f"causes      resolution lost per exposure against the session's best "
            f"({self.causal_exposures} exposures, {state}{changes})"
        ]
        width = max((len(c.cause) for c in self.causes), default=0)
        for c in self.causes:
            if not c.observed:
                lines.append(f"  {c.cause:<{width}}  not observed (did not vary)")
                continue
            mark = "" if c.converged else "  (uncertain)"
            lines.append(
                f"  {c.rank}. {c.cause:<{width}} {c.mean_angstrom:6.2f} +- {c.sd_angstrom:.2f} A"
                f"  P(top) {c.p_top:.2f}{mark}"
            )
        top = next((c for c in self.causes if c.observed), None)
        if top is not None:
            lines.append(f"  advice: {top.advice}")
        return lines


def _describe_curation(classes: list[dict[str, Any]]) -> list[str]:
    """The classes' recommendations: the counts, then each class not accepted, with why."""
    rated = [c for c in classes if c.get("recommendation") is not None]
    if not rated:
        return []
    counts = {k: sum(c["recommendation"] == k for c in rated) for k in ("accept", "look", "reject")}
    lines = ["  curation    " + "   ".join(f"{k} {n}" for k, n in counts.items())]
    for c in rated:
        if c["recommendation"] != "accept" and c["particles"]:
            lines.append(
                f"    class {c['class_index'] + 1:>3} {c['recommendation']:<6} "
                f"({c['particles']} particles): {c['reason']}"
            )
    return lines


def summarize(source: duckdb.DuckDBPyConnection | Selectable) -> SessionSummary:
    """Summarize the session in ``source``: an open connection, or a :class:`SessionReader`."""

    def rows(sql: str, params: Sequence[Any] | None = None) -> list[Sequence[Any]]:
        return select_rows(source, sql, params)[1]

    if isinstance(source, duckdb.DuckDBPyConnection):
        add_missing_views(source)  # a file written before the views: temporary ones

    counts = dict(zip(_COUNTS_NAMES, rows(COUNTS_SQL)[0], strict=True))
    names = rows("SELECT name FROM session LIMIT 1")
    runs = rows("SELECT count(*) FROM runs")[0][0]
    n_done, first, last, median_latency = rows(_TIMING_SQL)[0]
    rate = None
    if n_done >= 2 and first is not None and last is not None and last > first:
        rate = (n_done - 1) / ((last - first) / 3600.0)
    distributions = {name: _distribution(rows, expr) for name, expr in _DISTRIBUTIONS.items()}
    n_causal, regime, converged = 0, 0, False
    causes: tuple[CauseSummary, ...] = ()
    if rows(_HAS_CAUSAL_SQL)[0][0]:  # files written before the causal model have no tables
        n_causal, regime, converged = rows(_CAUSAL_SQL)[0]
        columns, ranked = select_rows(source, CAUSES_SQL)
        causes = tuple(CauseSummary(**dict(zip(columns, r, strict=True))) for r in ranked)
    reconstruction = None
    if rows(_HAS_EVALUATIONS_SQL)[0][0]:  # files written before schema 3 have no tables
        columns, latest = select_rows(source, _RECONSTRUCTION_SQL)
        if latest:
            reconstruction = dict(zip(columns, latest[0], strict=True))
            if rows(_HAS_CURATION_SQL)[0][0]:
                columns, found = select_rows(source, _CURATION_SQL)
                reconstruction["classes"] = [dict(zip(columns, r, strict=True)) for r in found]
    return SessionSummary(
        scores=_scores(rows),
        session=str(names[0][0]) if names else "",
        runs=int(runs),
        seen=int(counts["seen"]),
        done=int(counts["done"]),
        pending=int(counts["pending"]),
        quarantined=int(counts["quarantined"]),
        passed=int(counts["pass"]),
        warned=int(counts["warn"]),
        failed=int(counts["fail"]),
        quarantine_records=int(counts["quarantine_records"]),
        rate_per_hour=rate,
        median_latency_s=None if median_latency is None else float(median_latency),
        failures=tuple((str(c), int(n)) for c, n in rows(_FLAG_CODES_SQL, ["fail"])),
        warnings=tuple((str(c), int(n)) for c, n in rows(_FLAG_CODES_SQL, ["warn"])),
        quarantine_reasons=tuple((str(c), int(n)) for c, n in rows(_QUARANTINE_SQL)),
        causal_exposures=int(n_causal),
        causal_converged=bool(converged),
        regime_changes=int(regime or 0),
        causes=causes,
        reconstruction=reconstruction,
        **distributions,
    )


_COUNTS_NAMES = (
    "seen",
    "pending",
    "done",
    "quarantined",
    "pass",
    "warn",
    "fail",
    "quarantine_records",
    "results",
    "events",
)


def _scores(rows: Any) -> dict[str, Any] | None:
    if rows(HAS_SCORES_SQL)[0][0] != len(SCORE_RELATIONS):  # files written before schema 4
        return None
    n, quantiles, logic = rows(scores.SCORED_SQL)[0]
    if not n:
        return None
    p10, median, p90 = (float(q) for q in quantiles)
    worst = [
        {"subject": str(a), "hyperscore": float(b), "weakest": c, "reason": r, "failed": d}
        for a, b, c, r, d in rows(scores.WORST_SQL, [3])
    ]
    return {
        "scored": int(n),
        "p10": p10,
        "median": median,
        "p90": p90,
        "logic": None if logic is None else float(logic),
        "failed": {str(name): int(count) for name, count in rows(scores.FAILED_SQL)},
        "recommended": {str(r): int(n) for r, n in rows(scores.RECOMMENDATIONS_SQL)},
        "worst": worst,
    }


def select_rows(
    source: duckdb.DuckDBPyConnection | Selectable, sql: str, params: Sequence[Any] | None = None
) -> tuple[list[str], list[Sequence[Any]]]:
    """``(columns, rows)`` of one SELECT on an open connection or a session reader."""
    if isinstance(source, duckdb.DuckDBPyConnection):
        cursor = source.execute(sql, list(params) if params else None)
        return [d[0] for d in cursor.description or ()], list(cursor.fetchall())
    result = source.select(sql, params)
    return list(result.columns), list(result.rows)


def _distribution(rows: Any, expression: str) -> Distribution:
    sql = (
        f"SELECT count(x), min(x), quantile_cont(x, [0.1, 0.5, 0.9]), max(x) FROM ("
        f"SELECT {expression} AS x FROM exposures AS e "
        "LEFT JOIN ctf AS c USING (exposure_id) LEFT JOIN motion AS m USING (exposure_id) "
        "LEFT JOIN picking AS p USING (exposure_id) WHERE e.state = 'done')"
    )
    n, low, quantiles, high = rows(sql)[0]
    if not n:
        return Distribution(n=0, min=None, p10=None, median=None, p90=None, max=None)
    p10, median, p90 = (float(q) for q in quantiles)
    return Distribution(n=int(n), min=float(low), p10=p10, median=median, p90=p90, max=float(high))
