"""Write a session's report: one self-contained HTML file to open in any browser, offline.

A headline verdict, the summary, plots over time and histograms (defocus, CTF fit
resolution, ice, drift, particles), the causes of lost resolution with error bars and
advice, the worst exposures with thumbnails and why, the 2D classes, the FSC and resolution
against particles when there is a map, and the settings of each run.

Example:
  causalscope report sessions/s1/s1.duckdb -o s1_report.html
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the report's options."""
    parser.add_argument("session", type=Path, help="the session's .duckdb file")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("report.html"),
        metavar="FILE",
        help="the HTML file to write (default: report.html)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the report and say where and how large it is."""
    from causalscope.daemon.report import render_report

    text = render_report(args.session)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.part")
    partial.write_text(text, encoding="utf-8")
    partial.replace(out)
    print(f"report of {args.session} written to {out} ({out.stat().st_size / 1e3:.0f} kB)")
    return 0
