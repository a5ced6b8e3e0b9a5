"""The novelty index of known structures and junk: build it, add to it, list it.

  build   a new index from maps (MRC) and models (PDB/mmCIF) in the given files or folders,
          with the junk prototypes (ice, carbon edges, aggregates, empty boxes); without
          sources, the built-in phantom
  add     one map or model, under --label (default the file's stem)
  show    the labels and their entries

A file that cannot be read is skipped with its reason (exit status 1); the others go in.
The index lives in --index (default: processing.reconstruction.novelty_index, else
~/.local/share/causalscope/novelty-index); a session's evaluator reads it at each update.

Example:
  causalscope index build ../shared/data/maps ../shared/data/models
  causalscope index add emd_1234.map --label my_complex
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

_SUFFIXES = {".mrc", ".map", ".pdb", ".cif", ".ent", ".mmcif"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the index options."""
    parser.add_argument("action", choices=["build", "add", "show"], help="what to do")
    parser.add_argument("sources", nargs="*", type=Path, help="maps, models, or folders of them")
    parser.add_argument("--index", type=Path, default=None, help="the index folder")
    parser.add_argument("--label", default=None, help="add: the structure's name")
    parser.add_argument("--views", type=int, default=300, help="projections per structure (300)")
    parser.add_argument("--junk", type=int, default=64, help="build: prototypes per junk kind (64)")
    parser.add_argument("--json", action="store_true", help="print the index's labels as JSON")


def index_folder(given: Path | None) -> Path:
    """The index folder: ``given``, else the settings', else the user's data folder."""
    from causalscope.config import default_settings
    from causalscope.daemon.novelty import default_index_folder

    if given is not None:
        return given.expanduser()
    return default_index_folder(default_settings().processing.reconstruction.novelty_index)


def structure_volume(path: Path) -> tuple[Any, float]:
    """A map (MRC: its voxels above 2 sigma, as the simulator reads it) or a model (PDB/mmCIF)
    as the map of its atoms at 4 A/px, in a cube that holds it."""
    from causalscope.actors.novelty import INDEX_PIXEL_ANGSTROM
    from causalscope.daemon.simulator import load_specimen
    from causalscope.models.errors import InputError
    from causalscope.models.simulate.density import specimen_map

    if path.suffix.lower() not in _SUFFIXES:
        raise InputError(
            "Unknown structure format",
            f"{path}: expected .mrc/.map or .pdb/.cif, got {path.suffix!r}",
            path=path,
        )
    specimen = load_specimen(str(path))
    box = 2 * int((specimen.radius_angstrom + 20.0) / INDEX_PIXEL_ANGSTROM) + 2
    volume = specimen_map(specimen, box_px=box, pixel_size_angstrom=INDEX_PIXEL_ANGSTROM)
    return volume.numpy(), INDEX_PIXEL_ANGSTROM


def _sources(given: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in given:
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES)
        else:
            out.append(path)
    return out


def build(
    folder: Path, sources: list[Path], *, views: int, junk: int, say: Any = print
) -> tuple[Any, list[str]]:
    """A new index in ``folder`` (replacing one there) from ``sources`` (or the phantom) and
    the junk prototypes; also the sources skipped, each with why."""
    import shutil

    from causalscope.actors.novelty import (
        INDEX_PIXEL_ANGSTROM,
        NoveltyIndex,
        junk_entries,
        map_entries,
    )

    if folder.exists():
        shutil.rmtree(folder)
    index = NoveltyIndex(folder)
    for label, vectors in junk_entries(junk).items():
        index.add(label, "junk", vectors, source="simulator")
    if not sources:
        from causalscope.models.simulate.density import specimen_map
        from causalscope.models.simulate.specimen import phantom_specimen

        volume = specimen_map(
            phantom_specimen(), box_px=48, pixel_size_angstrom=INDEX_PIXEL_ANGSTROM
        )
        index.add(
            "phantom",
            "structure",
            map_entries(volume.numpy(), pixel_size_angstrom=INDEX_PIXEL_ANGSTROM, views=views),
            source="built-in",
        )
        say("index: the built-in phantom (no sources given)")
    return index, _add_each(index, sources, label=None, views=views, say=say)


def _add_each(
    index: Any, sources: list[Path], *, label: str | None, views: int, say: Any
) -> list[str]:
    """Add each source; one that cannot be read is skipped and said (the others go in)."""
    from causalscope.models.errors import CausalscopeError

    skipped = []
    for path in sources:
        try:
            add(index, path, label=label, views=views, say=say)
        except CausalscopeError as error:
            skipped.append(f"{path}: {error.title}: {error.message}")
    return skipped


def add(index: Any, path: Path, *, label: str | None, views: int, say: Any = print) -> None:
    """Add one map or model to ``index``."""
    from causalscope.actors.novelty import map_entries

    volume, apix = structure_volume(path)
    name = label or path.name.split(".")[0]
    index.add(
        name,
        "structure",
        map_entries(volume, pixel_size_angstrom=apix, views=views),
        source=str(path.absolute()),
    )
    say(f"index: {name} from {path} ({views} views)")


def run(args: argparse.Namespace) -> int:
    """Build, add to or show the index."""
    from causalscope.actors.novelty import NoveltyIndex
    from causalscope.models.errors import InputError

    folder = index_folder(args.index)
    quiet = (lambda *_: None) if args.json else print
    skipped: list[str] = []
    if args.action == "build":
        index, skipped = build(
            folder, _sources(args.sources), views=args.views, junk=args.junk, say=quiet
        )
    elif args.action == "add":
        if not NoveltyIndex.exists(folder):
            raise InputError(
                "No novelty index", f"{folder} holds none: run `causalscope index build` first"
            )
        if not args.sources:
            raise InputError("Nothing to add", "name a map or model: causalscope index add FILE")
        index = NoveltyIndex(folder)
        skipped = _add_each(
            index, _sources(args.sources), label=args.label, views=args.views, say=quiet
        )
    else:
        if not NoveltyIndex.exists(folder):
            raise InputError(
                "No novelty index", f"{folder} holds none: run `causalscope index build` first"
            )
        index = NoveltyIndex(folder)
    for line in skipped:
        print(f"causalscope: skipped {line}", file=sys.stderr)
    if args.json:
        print(json.dumps({"index": str(folder), "labels": index.labels, "skipped": skipped}))
    else:
        print(
            f"{folder}: {index.entries('structure')} structure and "
            f"{index.entries('junk')} junk entries"
        )
        for row in index.labels:
            print(f"  {row['kind']:<9} {row['name']:<24} {row['entries']:>7}  {row['source']}")
    return 1 if skipped else 0
