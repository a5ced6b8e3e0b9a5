"""Show what limits a session's resolution: the causal model's ranked causes, and its graph.

Reads SESSION.duckdb read-only (through the running session's query endpoint while a daemon
holds the file). Prints the causes ranked by the resolution each costs an exposure on average
against the session's best, with their uncertainty and what to do; --exposure ID shows one
exposure's shares. --graphml and --svg write the causal graph with the learned weights on its
edges (GraphML for Cytoscape or yEd; an SVG picture for a browser).

Example:
  causalscope causal sessions/2024-05-01_apoferritin.duckdb
  causalscope causal sessions/2024-05-01_apoferritin.duckdb --svg causes.svg
  causalscope causal sessions/2024-05-01_apoferritin.duckdb --exposure FoilHole_1_Data_2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options."""
    parser.add_argument("database", type=Path, help="the session's DuckDB file (SESSION.duckdb)")
    parser.add_argument("--exposure", metavar="ID", help="one exposure's shares by cause")
    parser.add_argument("--graphml", type=Path, metavar="FILE", help="write the graph (GraphML)")
    parser.add_argument("--svg", type=Path, metavar="FILE", help="draw the graph (SVG)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    """Print the ranking (or one exposure's shares) and write the requested graph files."""
    from causalscope.daemon.store import SessionReader, summarize
    from causalscope.models.errors import InputError

    with SessionReader(args.database) as reader:
        if reader.note is not None:
            print(f"causalscope: {reader.note}", file=sys.stderr)
        summary = summarize(reader)
        shares: list[dict[str, Any]] | None = None
        if args.exposure is not None:
            result = reader.select(
                "SELECT s.cause, s.share_angstrom, s.sd_angstrom, c.observed_resolution_angstrom, "
                "c.best_resolution_angstrom, c.unexplained_angstrom, c.dominant_cause "
                "FROM causal_shares AS s JOIN causal AS c USING (exposure_id) "
                "WHERE exposure_id = ? ORDER BY s.share_angstrom DESC",
                [args.exposure],
            )
            if not result.rows:
                raise InputError(
                    "No causal verdict",
                    f"{args.database}: exposure {args.exposure!r} has no causal-model row (not "
                    "done, not usable, or not yet learned)",
                )
            shares = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
    if not summary.causes:
        raise InputError(
            "No causal model",
            f"{args.database}: the session has no causal ranking yet ({summary.done} exposures "
            "done; the model learns from those with a CTF fit resolution and an ice thickness)",
        )
    written = _write_graph(args, summary.causes)
    if args.json:
        out: dict[str, Any] = {
            "exposures": summary.causal_exposures,
            "converged": summary.causal_converged,
            "regime_changes": summary.regime_changes,
            "causes": [c.__dict__ for c in summary.causes],
            "written": [str(p) for p in written],
        }
        if shares is not None:
            out["exposure"] = {"exposure_id": args.exposure, "shares": shares}
        print(json.dumps(out))
        return 0
    if shares is not None:
        first = shares[0]
        print(
            f"{args.exposure}: {first['observed_resolution_angstrom']:.2f} A against the "
            f"session's best {first['best_resolution_angstrom']:.2f} A"
        )
        for row in shares:
            print(
                f"  {row['cause']:<18} {row['share_angstrom']:6.2f} +- {row['sd_angstrom']:.2f} A"
            )
        print(f"  {'unexplained':<18} {first['unexplained_angstrom']:6.2f} A")
    else:
        print("\n".join(summary.describe_causes()))
    for path in written:
        print(f"wrote {path}")
    return 0


def _write_graph(args: argparse.Namespace, causes: Any) -> list[Path]:
    if args.graphml is None and args.svg is None:
        return []
    from causalscope.daemon.formats.graph_export import annotate_posterior, write_graphml, write_svg
    from causalscope.models.causal import causal_graph

    graph = annotate_posterior(
        causal_graph(),
        [c.cause for c in causes],
        [c.weight_mean for c in causes],
        [c.weight_sd for c in causes],
        converged=[bool(c.converged) for c in causes],
    )
    written = []
    if args.graphml is not None:
        written.append(write_graphml(graph, args.graphml))
    if args.svg is not None:
        title = f"{args.database.stem}: causal model (weights on d^2, A^2 per unit factor)"
        written.append(write_svg(graph, args.svg, title=title))
    return written
