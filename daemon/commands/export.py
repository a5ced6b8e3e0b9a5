"""Write a session for RELION or cryoSPARC: micrographs with CTF, coordinates, particles, classes.

The done exposures that the sanity gate did not fail are written; with --selected only the
accepted ones: by the operator's latest label where there is one (accept or reject, from the
dashboard or the control endpoint), otherwise by the score's recommendation (`causalscope
summary` says how many of each), and, when the session classified particles in 2D, only the
particles of the accepted classes (by the class's label, else its recommendation; outliers
left out), in `particles.star`, `particles_selected_classes.star` and `particles.cs` alike.

--relion DIR writes `micrographs_ctf.star` (optics groups; micrographs with their CTF and
motion STAR), `coordinates.star` with `coordinates/*_autopick.star`, `particles.star` (the
exposures' particles with their image stacks), and, when the session classified particles,
`class_averages.star` and `particles_selected_classes.star` (the selected 2D classes).
--cryosparc DIR writes `exposures.cs` and `particles.cs` (cryosparc-tools' Dataset format).

Optics groups (cryoSPARC: exposure groups) split the exposures by their optics and by their
beam/image-shift position, as users do for beam-tilt refinement: the metadata's image shifts
are clustered (Ward's hierarchical clustering, cut at its clearest gap; --shift-groups N
fixes the number, 1 turns the split off).

Example:
  causalscope export sessions/s1/s1.duckdb --relion relion/ --cryosparc cryosparc/
  causalscope export sessions/s1/s1.duckdb --selected --relion selected/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from causalscope.models.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the export options."""
    parser.add_argument("session", type=Path, help="the session's .duckdb file")
    parser.add_argument(
        "--selected",
        action="store_true",
        help="only the accepted exposures (by label, else by the score's recommendation)",
    )
    parser.add_argument("--relion", type=Path, metavar="DIR", help="RELION output folder")
    parser.add_argument("--cryosparc", type=Path, metavar="DIR", help="cryoSPARC output folder")
    parser.add_argument(
        "--shift-groups",
        type=int,
        metavar="N",
        help="number of beam/image-shift groups (default: found from the shifts; 1: no split)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the files and say how many exposures and particles they hold."""
    from causalscope.daemon.client.local import open_session_file
    from causalscope.daemon.client.views import HAS_SCORES_SQL, SCORE_RELATIONS
    from causalscope.daemon.exports import (
        SELECTED_SQL,
        accepted_particles,
        exported,
        shift_groups,
    )

    if args.relion is None and args.cryosparc is None:
        raise InputError("Nothing to write", "give --relion DIR and/or --cryosparc DIR")
    if args.shift_groups is not None and args.shift_groups < 1:
        raise InputError(
            "Bad --shift-groups", f"--shift-groups must be 1 or more, got {args.shift_groups}"
        )
    con = open_session_file(args.session)
    try:
        only, particles = None, None
        if args.selected:
            found = con.execute(HAS_SCORES_SQL).fetchone()
            if found is None or found[0] != len(SCORE_RELATIONS):
                raise InputError(
                    "No scores in this session",
                    f"{args.session} was written before exposures were scored; label them instead",
                    path=args.session,
                )
            only = [str(r[0]) for r in con.execute(SELECTED_SQL).fetchall()]
            particles = accepted_particles(con)
        exposures = exported(con, only=only)
        groups = shift_groups(exposures, n_groups=args.shift_groups)
        n_groups = len({g for g in groups.values() if g})
        which = "accepted" if args.selected else "exported"
        print(f"{len(exposures)} {which} exposures in {max(n_groups, 1)} beam/image-shift group(s)")
        if args.relion is not None:
            from causalscope.daemon.exports.relion import write_relion

            counts = write_relion(con, Path(args.relion), exposures, groups, particles=particles)
            print(
                f"RELION: {counts['micrographs']} micrographs in "
                f"{args.relion / 'micrographs_ctf.star'}, {counts['particles']} particles in "
                f"{args.relion / 'particles.star'}, {counts['coordinate_files']} coordinate "
                f"files, {counts['selected_classes']} selected classes"
            )
        if args.cryosparc is not None:
            from causalscope.daemon.exports.cryosparc import write_cryosparc

            counts = write_cryosparc(
                con, Path(args.cryosparc), exposures, groups, particles=particles
            )
            print(
                f"cryoSPARC: {counts['exposures']} exposures in "
                f"{args.cryosparc / 'exposures.cs'}, {counts['particles']} particles in "
                f"{args.cryosparc / 'particles.cs'}"
            )
    finally:
        con.close()
    return 0
