"""Summarize a session: counts, pace, defocus, CTF fit, drift and ice, and why exposures failed.

Reads SESSION.duckdb read-only. While a daemon holds the file, the summary is asked of the
running session's query endpoint (found in SESSION.endpoints.json beside the file) instead,
and a note on stderr says so.

Example:
  causalscope summary sessions/2024-05-01_apoferritin.duckdb
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


def run(args: argparse.Namespace) -> int:
    """Print the session's summary."""
    from causalscope.daemon.store import SessionReader, summarize

    with SessionReader(args.database) as reader:
        if reader.note is not None:
            print(f"causalscope: {reader.note}", file=sys.stderr)
        summary = summarize(reader)
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        print(summary.describe())
    return 0
