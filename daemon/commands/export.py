"""Write a session's accepted exposures for RELION: their micrographs with CTF and particles.

An exposure is accepted by the operator's latest label where there is one (accept or reject,
from the dashboard or the control endpoint), otherwise by its score's recommendation
(`causalscope summary` says how many of each). Writes `micrographs_ctf.star` (optics groups,
micrographs with their CTF and motion STAR) and `particles.star` (the accepted exposures'
particles with their image stacks, optics groups renumbered across exposures) into DIR.

Example:
  causalscope export sessions/s1/s1.duckdb --selected --relion selected/
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from causalscope.models.errors import InputError

# the latest label per exposure wins; otherwise the score's recommendation
_SELECTED_SQL = """
SELECT e.exposure_id, e.outputs->>'particles_star' AS star
FROM exposures AS e
LEFT JOIN (
    SELECT exposure_id, label FROM labels
    QUALIFY row_number() OVER (PARTITION BY exposure_id ORDER BY id DESC) = 1
) AS l USING (exposure_id)
LEFT JOIN scores AS s ON s.kind = 'exposure' AND s.subject = e.exposure_id
WHERE e.state = 'done' AND coalesce(l.label, s.recommendation) = 'accept'
ORDER BY e.done_at, e.exposure_id
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the export options."""
    parser.add_argument("session", type=Path, help="the session's .duckdb file")
    parser.add_argument(
        "--selected",
        action="store_true",
        required=True,
        help="only the accepted exposures (by label, else by the score's recommendation)",
    )
    parser.add_argument("--relion", type=Path, required=True, metavar="DIR", help="output folder")


def run(args: argparse.Namespace) -> int:
    """Write the files and say how many exposures and particles they hold."""
    from causalscope.daemon.client.local import open_session_file
    from causalscope.daemon.client.views import HAS_SCORES_SQL, SCORE_RELATIONS
    from causalscope.daemon.store.exporters import rewrite_ctf_star

    con = open_session_file(args.session)
    try:
        found = con.execute(HAS_SCORES_SQL).fetchone()
        if found is None or found[0] != len(SCORE_RELATIONS):
            raise InputError(
                "No scores in this session",
                f"{args.session} was written before exposures were scored; label them instead",
                path=args.session,
            )
        selected = {str(eid): star for eid, star in con.execute(_SELECTED_SQL).fetchall()}
        out = Path(args.relion)
        out.mkdir(parents=True, exist_ok=True)
        micrographs = rewrite_ctf_star(con, out / "micrographs_ctf.star", only=set(selected))
    finally:
        con.close()
    particles = _merge_particles([Path(s) for s in selected.values() if s], out / "particles.star")
    print(
        f"{len(selected)} accepted exposures: {micrographs} micrographs in "
        f"{out / 'micrographs_ctf.star'}, {particles} particles in {out / 'particles.star'}"
    )
    return 0


def _merge_particles(stars: list[Path], path: Path) -> int:
    """One particles STAR from the exposures' own, their optics groups made one numbering."""
    import pandas as pd
    import starfile

    optics_rows: list[dict[str, Any]] = []
    keys: dict[tuple[Any, ...], int] = {}
    tables = []
    for star in stars:
        try:
            blocks = starfile.read(star, always_dict=True)
        except (OSError, ValueError) as error:
            raise InputError("Unreadable particles", f"{star}: {error}", path=star) from error
        optics, particles = blocks.get("optics"), blocks.get("particles")
        if optics is None or particles is None:
            raise InputError("Not a particles STAR", f"{star} lacks optics or particles", path=star)
        renumber = {}
        for _, row in optics.iterrows():
            values = row.drop(["rlnOpticsGroup", "rlnOpticsGroupName"], errors="ignore")
            key = tuple(values.items())
            if key not in keys:
                keys[key] = len(keys) + 1
                optics_rows.append(
                    {
                        **values.to_dict(),
                        "rlnOpticsGroupName": f"opticsGroup{keys[key]}",
                        "rlnOpticsGroup": keys[key],
                    }
                )
            renumber[int(row["rlnOpticsGroup"])] = keys[key]
        tables.append(particles.assign(rlnOpticsGroup=particles["rlnOpticsGroup"].map(renumber)))
    merged = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    starfile.write({"optics": pd.DataFrame(optics_rows), "particles": merged}, path, overwrite=True)
    return len(merged)
