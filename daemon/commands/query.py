"""Run one read-only SQL query (a single SELECT) on a session and print the rows.

Anything but a single SELECT statement (INSERT, DROP, COPY, ATTACH, several statements) is
refused. The tables and their columns are documented in daemon/store/schema.py; `DESCRIBE
exposures` and `SHOW TABLES` list them. Reads SESSION.duckdb read-only; while a daemon holds
the file, the query goes to the running session's query endpoint (found in
SESSION.endpoints.json) instead, and a note on stderr says so.

Examples:
  causalscope query SESSION.duckdb "SELECT exposure_id, gate_status FROM exposures"
  causalscope query SESSION.duckdb "SELECT * FROM ctf WHERE ice_thickness_nm > 80" --csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the query options."""
    parser.add_argument("database", type=Path, help="the session's DuckDB file (SESSION.duckdb)")
    parser.add_argument("sql", help="one SELECT statement (quote it)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--json", action="store_true", help='print {"columns": [...], "rows": [[...]]}'
    )
    output.add_argument("--csv", action="store_true", help="print CSV with a header row")


def run(args: argparse.Namespace) -> int:
    """Check the statement, run it and print the rows."""
    from causalscope.daemon.store import QueryError, SessionReader, check_select

    try:
        check_select(args.sql)  # refused before the file is even opened
    except QueryError as exc:
        raise QueryError(exc.title, f"{args.database}: {exc.message}") from exc
    with SessionReader(args.database) as reader:
        if reader.note is not None:
            print(f"causalscope: {reader.note}", file=sys.stderr)
        result = reader.select(args.sql)
    if result.truncated:
        print(f"causalscope: only the first {len(result.rows)} rows are shown", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict()))
    elif args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([_csv_text(v) for v in row] for row in result.rows)
    else:
        print(table(result.columns, result.rows))
    return 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as an aligned text table: numbers right-aligned, a count of rows at the end."""
    cells = [[_text(v) for v in row] for row in rows]
    numeric = [
        any(row[i] is not None for row in rows)
        and all(row[i] is None or _is_number(row[i]) for row in rows)
        for i in range(len(columns))
    ]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    out.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(out)
