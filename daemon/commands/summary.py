"""Summarize a session: counts, pace, defocus, CTF fit, drift and ice, and why exposures failed.

Reads SESSION.duckdb read-only. While a daemon holds the file, the summary is asked of the
running session's query endpoint (found in SESSION.endpoints.json beside the file) instead,
and a note on stderr says so.

With --recommendations, every scored exposure and every class of the latest 2D
classification follows, with its recommendation (accept, look, reject; the operator's label
where there is one) and why.

Example:
  causalscope summary sessions/2024-05-01_apoferritin.duckdb
  causalscope summary sessions/2024-05-01_apoferritin.duckdb --recommendations
  causalscope summary sessions/2024-05-01_apoferritin.duckdb --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the summary options."""
    parser.add_argument("database", type=Path, help="the session's DuckDB file (SESSION.duckdb)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--recommendations",
        action="store_true",
        help="also every exposure's and 2D class's recommendation with its reason",
    )


def run(args: argparse.Namespace) -> int:
    """Print the session's summary."""
    from causalscope.daemon.store import SessionReader, summarize
    from causalscope.daemon.store.curation import describe_recommendations, recommendations

    with SessionReader(args.database) as reader:
        if reader.note is not None:
            print(f"causalscope: {reader.note}", file=sys.stderr)
        summary = summarize(reader)
        found = recommendations(reader) if args.recommendations else None
    if args.json:
        out = summary.to_dict()
        if found is not None:
            out["recommendations"] = found
        print(json.dumps(out))
    else:
        print(summary.describe())
        if found is not None:
            print(describe_recommendations(found))
    return 0
