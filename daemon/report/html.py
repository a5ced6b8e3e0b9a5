"""The report's page: a headline verdict, then sections, as one self-contained HTML string.

Everything is inline (styles, SVG plots, PNG data URIs); the page has no script and loads
nothing, so it opens from a file without a network.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from causalscope.daemon.report import svg
from causalscope.daemon.report.data import ReportData

__all__ = ["page", "verdict"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1000px;padding:16px;color:#212529}
h1{font-size:1.5em;margin:0 0 4px}
h2{border-bottom:1px solid #dee2e6;padding-bottom:4px;margin-top:28px}
.verdict{padding:12px 16px;border-radius:6px;font-size:1.15em;margin:12px 0}
.good{background:#d3f9d8}.fair{background:#fff3bf}.poor{background:#ffe3e3}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:8px}
table{border-collapse:collapse;font-size:.9em}
td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.plot{width:100%;height:auto;background:#fff}
.plot .title{font-size:13px;font-weight:600;text-anchor:middle}
.plot .label{font-size:11px;text-anchor:middle;fill:#495057}
.plot .tick{font-size:10px;text-anchor:middle;fill:#495057}
.plot .ytick{font-size:10px;text-anchor:end;fill:#495057}
.plot .frame{fill:none;stroke:#adb5bd}.plot .grid{stroke:#f1f3f5}
.plot .median{fill:none;stroke:#212529;stroke-width:1.5}
.plot .bar{fill:#4c6ef5}.plot .error{stroke:#212529;stroke-width:1.5;fill:none}
.plot .line{fill:none;stroke-width:1.5}.plot .legend{font-size:11px;text-anchor:end}
.plot .threshold{stroke:#868e96;stroke-dasharray:4 3}
.worst{display:grid;grid-template-columns:130px 130px 1fr;gap:8px;align-items:start;margin:8px 0}
.worst img{width:128px;height:128px;image-rendering:pixelated;background:#ddd}
.advice{margin:4px 0 4px 16px}pre{background:#f8f9fa;padding:8px;overflow:auto;font-size:.8em}
.muted{color:#868e96}
"""


def verdict(data: ReportData) -> tuple[str, str]:
    """``(class, sentence)``: the session in one line, for a tired operator."""
    s = data.summary
    if not s.done:
        return "poor", f"No exposure processed yet ({s.seen} seen, {s.quarantined} quarantined)."
    usable = s.passed + s.warned
    share = usable / s.done
    fit = s.fit_resolution_angstrom.median
    grade = "good" if share >= 0.8 else "fair" if share >= 0.5 else "poor"
    words = {"good": "Good session", "fair": "Mixed session", "poor": "Poor session"}[grade]
    parts = [f"{words}: {usable} of {s.done} exposures usable ({share:.0%})"]
    if fit is not None:
        parts.append(f"median CTF fit {fit:.1f} \u00c5")
    recommended = (s.scores or {}).get("recommended") or {}
    if recommended:
        parts.append(f"scores recommend accepting {recommended.get('accept', 0)}")
    top = next((c for c in s.causes if c.observed), None)
    if top is not None:
        parts.append(
            f"biggest cause of lost resolution: {top.cause} "
            f"({top.mean_angstrom:.2f} \u00b1 {top.sd_angstrom:.2f} \u00c5 per exposure)"
        )
    return grade, "; ".join(parts) + "."


def page(data: ReportData) -> str:
    """The whole HTML document."""
    s = data.summary
    grade, sentence = verdict(data)
    body = [
        f"<h1>causalscope report: {escape(s.session)}</h1>",
        f'<div class="verdict {grade}" id="verdict">{escape(sentence)}</div>',
        _summary(data),
        _plots(data),
        _causes(data),
        _worst(data),
        _classes(data),
        _maps(data),
        _settings(data),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>causalscope report: {escape(s.session)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_STYLE}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )


def _num(v: Any, fmt: str = ".3g") -> str:
    return "\u2013" if v is None else format(v, fmt)


def _summary(data: ReportData) -> str:
    s = data.summary
    rows = [
        ("exposures seen", s.seen),
        ("done", s.done),
        ("gate: pass / warn / fail", f"{s.passed} / {s.warned} / {s.failed}"),
        ("pending", s.pending),
        ("quarantined", s.quarantined),
        ("rate", "\u2013" if s.rate_per_hour is None else f"{s.rate_per_hour:.1f} exposures/h"),
        (
            "median latency",
            "\u2013" if s.median_latency_s is None else f"{s.median_latency_s:.1f} s",
        ),
        ("runs", s.runs),
    ]
    if s.failures:
        rows.append(("failures", ", ".join(f"{c} {n}" for c, n in s.failures)))
    if s.warnings:
        rows.append(("warnings", ", ".join(f"{c} {n}" for c, n in s.warnings)))
    if s.scores is not None:
        rec = s.scores.get("recommended") or {}
        rows.append(
            (
                "recommended accept / look / reject",
                " / ".join(str(rec.get(k, 0)) for k in ("accept", "look", "reject")),
            )
        )
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    from causalscope.daemon.store.summary import DISTRIBUTION_LABELS

    dist = [
        "<tr><th></th>"
        + "".join(f"<th>{h}</th>" for h in ("n", "min", "p10", "median", "p90", "max"))
        + "</tr>"
    ]
    for name, label in DISTRIBUTION_LABELS.items():
        d = getattr(s, name)
        cells = [d.n, d.min, d.p10, d.median, d.p90, d.max]
        dist.append(
            f"<tr><th>{escape(label)}</th>"
            + f'<td class="n">{d.n}</td>'
            + "".join(f'<td class="n">{_num(c)}</td>' for c in cells[1:])
            + "</tr>"
        )
    return (
        '<h2 id="summary">Summary</h2><div class="grid2">'
        f"<table>{table}</table><table>{''.join(dist)}</table></div>"
    )


def _plots(data: ReportData) -> str:
    from causalscope.daemon.store.summary import DISTRIBUTION_LABELS

    done = data.series.get("done_s", [])
    first = min((t for t in done if t is not None), default=None)
    hours = [None if t is None or first is None else (t - first) / 3600.0 for t in done]
    status = data.series.get("gate_status", [])
    over, hist = [], []
    for name, label in DISTRIBUTION_LABELS.items():
        values = data.series.get(name, [])
        over.append(svg.points_over_time(hours, values, status, title=label, y_label=label))
        hist.append(svg.histogram(values, title=label, x_label=label))
    return (
        '<h2 id="over-time">Over time</h2><p class="muted">One dot per exposure (green pass, '
        "orange warn, red fail); the line is the running median of the last 25.</p>"
        f'<div class="grid2">{"".join(over)}</div>'
        f'<h2 id="histograms">Distributions</h2><div class="grid2">{"".join(hist)}</div>'
    )


def _causes(data: ReportData) -> str:
    s = data.summary
    head = '<h2 id="causes">Why resolution was lost</h2>'
    if not s.causal_exposures:
        return (
            head + "<p>The causal model learned from no exposure (none had a CTF fit and ice).</p>"
        )
    observed = [c for c in s.causes if c.observed]
    state = "converged" if s.causal_converged else "still learning"
    plot = svg.bars_with_errors(
        [c.cause for c in observed],
        [c.mean_angstrom for c in observed],
        [c.sd_angstrom for c in observed],
        title="resolution lost per exposure against the session's best",
        x_label="\u00c5 (mean \u00b1 1 sd)",
    )
    items = "".join(
        f"<li><b>{c.rank}. {escape(c.cause)}</b> {c.mean_angstrom:.2f} \u00b1 {c.sd_angstrom:.2f} "
        f"\u00c5, P(top) {c.p_top:.2f}{'' if c.converged else ' (uncertain)'}"
        f'<div class="advice">{escape(c.advice)}</div></li>'
        for c in observed
    )
    unobserved = [c.cause for c in s.causes if not c.observed]
    rest = (
        f'<p class="muted">Not observed (did not vary): {escape(", ".join(unobserved))}.</p>'
        if unobserved
        else ""
    )
    changes = f", {s.regime_changes} regime change(s)" if s.regime_changes else ""
    return (
        head + f"<p>{s.causal_exposures} exposures, {state}{changes}.</p>"
        f'<div class="grid2"><div>{plot}</div><ul>{items}</ul></div>{rest}'
    )


def _worst(data: ReportData) -> str:
    head = '<h2 id="worst">Worst exposures</h2>'
    if not data.worst:
        if data.summary.scores is not None:
            return head + "<p>Every scored exposure is recommended for acceptance.</p>"
        return head + "<p>No exposure has a CTF estimate.</p>"
    out = [head]
    for w in data.worst:
        pics = []
        for uri, alt in ((w.micrograph_png, "micrograph"), (w.spectrum_png, "power spectrum")):
            pics.append(
                f'<img src="{uri}" alt="{alt} of {escape(w.exposure_id)}">'
                if uri
                else f'<div class="muted">no {alt} thumbnail</div>'
            )
        v = w.values
        score = "" if w.hyperscore is None else f"HyperScore {w.hyperscore:.1f}; "
        facts = (
            f"{score}gate {v['gate']}; fit {_num(v['fit_resolution_angstrom'], '.1f')} \u00c5; "
            f"defocus {_num(v['defocus_um'], '.2f')} \u00b5m; "
            f"ice {_num(v['ice_thickness_nm'], '.0f')} nm; "
            f"drift {_num(v['total_drift_px'], '.1f')} px; particles {_num(v['particles'], 'd')}"
        )
        out.append(
            f'<div class="worst">{"".join(pics)}<div><b>{escape(w.exposure_id)}</b><br>'
            f"{escape(facts)}<br>Why: {escape(w.why)}</div></div>"
        )
    return "".join(out)


def _classes(data: ReportData) -> str:
    if not data.classes:
        return ""
    selected = [c for c in data.classes if c["selected"]]
    gallery = (
        f'<img src="{data.gallery_png}" alt="2D class averages" style="max-width:100%">'
        if data.gallery_png
        else '<p class="muted">The gallery picture is missing.</p>'
    )
    rows = "".join(
        f'<tr><td class="n">{c["class_index"] + 1}</td><td class="n">{c["particles"]}</td>'
        f'<td class="n">{_num(c["resolution_angstrom"], ".1f")}</td>'
        f'<td class="n">{c["junk_score"]:.2f}</td><td>{"yes" if c["selected"] else "no"}</td></tr>'
        for c in data.classes
    )
    return (
        f'<h2 id="classes">2D classes</h2><p>{len(selected)} of {len(data.classes)} classes '
        f"selected (crossed out in the gallery: rejected).</p>{gallery}"
        "<details><summary>Classes</summary><table><tr><th>class</th><th>particles</th>"
        f"<th>resolution (\u00c5)</th><th>junk score</th><th>selected</th></tr>{rows}</table>"
        "</details>"
    )


def _maps(data: ReportData) -> str:
    if not data.maps:
        return ""
    latest = data.maps[-1]
    n = len(latest["fsc_masked"])
    # shell i at i / (2 (n - 1)) cycles per pixel
    freq = [i / (2 * (n - 1)) / latest["pixel_size_angstrom"] for i in range(n)] if n > 1 else [0.0]
    fsc = svg.lines(
        [("masked", freq, latest["fsc_masked"]), ("unmasked", freq, latest["fsc_unmasked"])],
        title=f"FSC of update {latest['version']} ({latest['particles']} particles)",
        x_label="spatial frequency (1/\u00c5)",
        y_label="FSC",
        threshold=0.143,
    )
    growth = svg.lines(
        [
            (
                "gold-standard 0.143",
                [float(m["particles"]) for m in data.maps],
                [m["resolution_angstrom"] for m in data.maps],
            )
        ],
        title="resolution against particles",
        x_label="particles",
        y_label="resolution (\u00c5)",
    )
    gold = latest["resolution_angstrom"]
    text = "not reached" if gold is None else f"{gold:.1f} \u00c5"
    return (
        f'<h2 id="maps">3D map</h2><p>Latest gold-standard resolution (FSC 0.143): {text}.</p>'
        f'<div class="grid2">{fsc}{growth}</div>'
    )


def _settings(data: ReportData) -> str:
    if not data.runs:
        return '<h2 id="settings">Settings</h2><p>No run recorded.</p>'
    out = ['<h2 id="settings">Settings</h2>']
    for run in data.runs:
        command = " ".join(str(a) for a in run["command_line"])
        out.append(
            f"<details><summary>run {run['run_id']}: {escape(str(run['started_at']))}, "
            f"causalscope {escape(str(run['version']))}</summary>"
            f"<p><code>{escape(command)}</code></p>"
            f"<pre>{escape(json.dumps(run['settings'], indent=2, sort_keys=True))}</pre></details>"
        )
    return "".join(out)
