"""Topaz's pretrained general model on the real CryoPPP micrographs, beside the learned picker.

Issue 18 asks for the learned picker to be at least as good in F1 as Topaz's general model
(``resnet16``, ``topaz-em`` 0.3.20) on the same real micrographs: the EMPIAR-10028 test set and
the five EMPIAR-10059 micrographs (:mod:`daemon.bench.picking_learned`, whose truth, matching
within half a diameter and chance these rows share). Topaz is never a dependency of the
project: it runs through another interpreter (``bench picking --topaz PYTHON``, a virtualenv
made as ``../shared/PEERS.md`` says) as subprocesses, ``python -m topaz.commands.preprocess``
then ``python -m topaz.commands.extract`` (the ``topaz`` entry point imports torchvision).

Per set: the micrographs are written as float32 MRC into a temporary folder, preprocessed with
``-s S`` (S the integer binning that brings the particle nearest :data:`TOPAZ_PARTICLE_PX`
across), and picked with ``extract -m resnet16 -r R -x S -p 512`` (R half the binned diameter;
``-x S`` writes the coordinates on the unbinned micrograph; ``-t -6``, Topaz's default, keeps
nearly every peak). Scored at ``score >= 0`` (``p >= 0.5``, the quick start's filtering) and at
the one cut per set that maximises the set's mean F1, chosen on the answers (an upper bound of
what a threshold could do). ``coordinates`` checks the convention on the answers: F1 at
``p >= 0.5`` as read, under the best of the seven other flips and transposes, and with the
coordinates divided by S (as if ``-x`` had not been applied), and the mean offset of the matched
picks from the truth.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from causalscope.models.errors import FormatError, InputError

__all__ = [
    "TOPAZ_MODEL",
    "TOPAZ_PARTICLE_PX",
    "TOPAZ_SETS",
    "TopazPicks",
    "best_cut",
    "check_topaz",
    "merge_topaz",
    "read_topaz_picks",
    "topaz_commands",
    "topaz_on_set",
    "topaz_real_bench",
    "topaz_scale",
]

#: Topaz's pretrained general model
TOPAZ_MODEL = "resnet16"
#: the particle's diameter in binned pixels that the general model expects (about 28 px)
TOPAZ_PARTICLE_PX = 28.0
#: Topaz scores a micrograph in patches of this size (without, 2048^2 took 23 GB)
PATCH_PX = 512
#: the learned picker's splits (:func:`~daemon.bench.picking_learned.learned_real_bench`) and
#: their CryoPPP folders under ``picking/``
TOPAZ_SETS = {
    "10028_test_shipped_model": "cryoppp_10028",
    "10059_never_seen_shipped_model": "cryoppp_10059_train",
}
#: seconds allowed to import topaz in the given interpreter
_CHECK_TIMEOUT_S = 300


@dataclass(frozen=True)
class TopazPicks:
    """One micrograph's Topaz picks: ``(n, 2)`` [x, y] (unbinned px) and log-likelihood scores."""

    xy_px: np.ndarray
    scores: np.ndarray

    def above(self, cut: float) -> np.ndarray:
        """The positions scored at least ``cut``."""
        return self.xy_px[self.scores >= cut]


def topaz_scale(diameter_px: float) -> int:
    """Topaz's ``preprocess -s``: the integer binning nearest to :data:`TOPAZ_PARTICLE_PX`."""
    if diameter_px <= 0:
        raise ValueError(f"diameter_px must be positive, got {diameter_px}")
    return max(1, round(diameter_px / TOPAZ_PARTICLE_PX))


def topaz_commands(
    python: str, micrographs: Sequence[Path], workdir: Path, *, diameter_px: float, threads: int
) -> tuple[list[str], list[str]]:
    """Topaz's ``preprocess`` and ``extract`` command lines for float32 MRC ``micrographs``.

    The preprocessed micrographs go to ``workdir/preprocessed``, the picks to
    ``workdir/picks.txt``; both run on the CPU (``-d -1``) with ``threads`` torch threads.
    """
    scale = topaz_scale(diameter_px)
    radius = max(1, round(diameter_px / scale / 2))
    folder = workdir / "preprocessed"
    common = ["-d", "-1", "-j", str(threads)]
    preprocess = [python, "-m", "topaz.commands.preprocess", "-s", str(scale), *common]
    preprocess += ["-o", str(folder), *(str(p) for p in micrographs)]
    extract = [python, "-m", "topaz.commands.extract", "-m", TOPAZ_MODEL, "-r", str(radius)]
    extract += ["-x", str(scale), "-p", str(PATCH_PX), *common, "-o", str(workdir / "picks.txt")]
    extract += [str(folder / p.name) for p in micrographs]
    return preprocess, extract


def read_topaz_picks(path: Path) -> dict[str, TopazPicks]:
    """Topaz's tab-separated picks (``image_name x_coord y_coord score``) per image name
    (:func:`~daemon.formats.coordinates.coordinates_by_micrograph`).

    The coordinates are taken as written: ``extract -x S`` has already put them on the
    unbinned micrograph. A micrograph without picks is absent.
    """
    from causalscope.daemon.formats.coordinates import coordinates_by_micrograph

    out = {}
    for name, picks in coordinates_by_micrograph(path).items():
        if picks.scores is None:
            raise FormatError("Not Topaz picks", f"{path} has no score column", path=path)
        out[name] = TopazPicks(picks.xy_px, picks.scores)
    return out


def _mean_f1(picks: Sequence[TopazPicks], micrographs: Sequence[Any], cut: float) -> float:
    from causalscope.models.picking import match_picks

    return float(
        np.mean(
            [
                match_picks(p.above(cut), m.truth_xy_px, radius_px=0.5 * m.diameter_px).f1
                for p, m in zip(picks, micrographs, strict=True)
            ]
        )
    )


def best_cut(
    picks: Sequence[TopazPicks], micrographs: Sequence[Any], *, max_cuts: int = 200
) -> tuple[float, float]:
    """The one score cut over all ``micrographs`` (each with ``truth_xy_px`` and
    ``diameter_px``) that maximises their mean F1 (matched within half a diameter), and that
    F1.

    Every distinct score is a candidate (keep the picks scored at least it); past ``max_cuts``
    of them, ``max_cuts`` evenly spaced quantiles of them. The lowest of equal cuts wins.
    """
    if len(picks) != len(micrographs) or not picks:
        raise ValueError(f"need as many picks as micrographs, got {len(picks)}, {len(micrographs)}")
    cuts = np.unique(np.concatenate([p.scores for p in picks]))
    if not len(cuts):
        return 0.0, 0.0
    if len(cuts) > max_cuts:
        cuts = np.unique(np.quantile(cuts, np.linspace(0.0, 1.0, max_cuts), method="lower"))
    f1 = [_mean_f1(picks, micrographs, float(c)) for c in cuts]
    best = int(np.argmax(f1))
    return float(cuts[best]), f1[best]


def check_topaz(python: str) -> str:
    """Topaz's and torch's versions in ``python``; a clear :class:`InputError` naming the path
    and what failed when it is missing, not executable, or cannot import ``topaz``."""
    found = shutil.which(python)
    if found is None:
        what = "does not exist" if not Path(python).exists() else "is not an executable file"
        raise InputError("Topaz interpreter not found", f"--topaz {python} {what}", path=python)
    probe = "import topaz, torch; print(topaz.__version__, torch.__version__)"
    try:
        done = subprocess.run(
            [found, "-c", probe], capture_output=True, text=True, timeout=_CHECK_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise InputError(
            "Topaz interpreter unusable", f"--topaz {python}: running it failed: {error}"
        ) from None
    if done.returncode != 0:
        raise InputError(
            "Topaz not importable",
            f"--topaz {python}: `import topaz, torch` failed (exit {done.returncode}): "
            f"{_last_line(done.stderr)} (install topaz-em there as ../shared/PEERS.md says)",
            path=python,
        )
    topaz, torch = [*done.stdout.split(), "?", "?"][:2]
    return f"topaz-em {topaz}, torch {torch}"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def _run(command: list[str], threads: int) -> float:
    """Run one Topaz command; its seconds. Raises :class:`InputError` with its last error."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise InputError(
            "Topaz failed",
            f"{command[0]} -m {command[2]} exited with {done.returncode}: "
            f"{_last_line(done.stderr)}",
        )
    return time.perf_counter() - started


def _topaz_set(python: str, micrographs: Sequence[Any], threads: int) -> dict[str, Any]:
    """Topaz's picks of one set (same diameter throughout), its commands and seconds."""
    import mrcfile

    diameters = {m.diameter_px for m in micrographs}
    if len(diameters) != 1:
        raise ValueError(f"one set, one diameter: got {sorted(diameters)}")
    diameter = diameters.pop()
    with tempfile.TemporaryDirectory(prefix="causalscope-topaz-") as tmp:
        workdir = Path(tmp)
        paths = []
        for m in micrographs:
            path = workdir / f"{Path(m.name).stem}.mrc"
            with mrcfile.new(path) as mrc:
                mrc.set_data(np.asarray(m.image, dtype=np.float32))
            paths.append(path)
        preprocess, extract = topaz_commands(
            python, paths, workdir, diameter_px=diameter, threads=threads
        )
        seconds = {"preprocess_s": _run(preprocess, threads), "extract_s": _run(extract, threads)}
        found = read_topaz_picks(workdir / "picks.txt")
    empty = TopazPicks(np.zeros((0, 2)), np.zeros(0))
    picks = [found.get(Path(m.name).stem, empty) for m in micrographs]
    commands = [
        " ".join([Path(c[0]).name, *c[1:]]).replace(tmp, "TMP") for c in (preprocess, extract)
    ]
    return {
        "picks": picks,
        "commands": commands,
        "seconds": seconds,
        "scale": topaz_scale(diameter),
    }


def _coordinates(
    picks: Sequence[TopazPicks], micrographs: Sequence[Any], scale: int
) -> dict[str, Any]:
    """F1 at ``p >= 0.5`` as read, under the best other axis convention and divided by S
    (None when S is 1); the mean offset [x, y] of matched picks from the truth."""
    from causalscope.daemon.bench._axes import axis_conventions
    from causalscope.models.picking import match_picks

    f1: dict[str, list[float]] = {}
    offsets = []
    for p, m in zip(picks, micrographs, strict=True):
        xy = p.above(0.0)
        variants = axis_conventions(xy, m.image.shape) | {"divided_by_scale": xy / scale}
        for name, moved in variants.items():
            match = match_picks(moved, m.truth_xy_px, radius_px=0.5 * m.diameter_px)
            f1.setdefault(name, []).append(match.f1)
            if name == "as_is" and len(match.pairs):
                offsets.append(xy[match.pairs[:, 0]] - m.truth_xy_px[match.pairs[:, 1]])
    mean = {name: round(float(np.mean(v)), 3) for name, v in f1.items()}
    others = {k: v for k, v in mean.items() if k not in ("as_is", "divided_by_scale")}
    other = max(others, key=lambda k: others[k])
    offset = np.concatenate(offsets).mean(axis=0) if offsets else np.full(2, np.nan)
    return {
        "as_read_f1": mean["as_is"],
        "best_other_convention": other,
        "best_other_convention_f1": mean[other],
        "divided_by_scale_f1": mean["divided_by_scale"] if scale > 1 else None,
        "mean_offset_xy_px": [round(float(v), 2) for v in offset],
    }


def topaz_on_set(python: str, micrographs: Sequence[Any], *, threads: int) -> dict[str, Any]:
    """Topaz on one set (each micrograph with ``name``, ``image``, ``truth_xy_px`` and the same
    ``diameter_px``): rows per micrograph, the set's summary, its commands, seconds and the
    coordinate check (module docstring)."""
    from causalscope.daemon.bench.picking_learned import match_scores

    ran = _topaz_set(python, micrographs, threads)
    picks: list[TopazPicks] = ran["picks"]
    cut, cut_f1 = best_cut(picks, micrographs)
    rows: list[dict[str, Any]] = [
        {
            "micrograph": m.name,
            "n_kept_by_topaz": len(p.scores),
            "topaz_p05": match_scores(p.above(0.0), m.truth_xy_px, m.diameter_px),
            "topaz_best_cut": match_scores(p.above(cut), m.truth_xy_px, m.diameter_px),
        }
        for p, m in zip(picks, micrographs, strict=True)
    ]
    summary: dict[str, Any] = {
        f"{picker}_{key}": round(float(np.mean([r[picker][key] for r in rows])), 3)
        for picker in ("topaz_p05", "topaz_best_cut")
        for key in ("precision", "recall", "f1")
    }
    summary["topaz_best_cut_score"] = round(cut, 3)
    summary["topaz_best_cut_p"] = round(float(1.0 / (1.0 + np.exp(-cut))), 3)
    summary["topaz_scale"] = ran["scale"]
    summary["topaz_s"] = round(sum(ran["seconds"].values()), 1)
    return {
        "rows": rows,
        "summary": summary,
        "commands": ran["commands"],
        **{k: round(v, 1) for k, v in ran["seconds"].items()},
        "best_cut_mean_f1_unrounded": round(cut_f1, 4),
        "coordinates": _coordinates(picks, micrographs, ran["scale"]),
    }


def topaz_real_bench(python: str, shared: Path, *, threads: int) -> dict[str, Any]:
    """Topaz's rows per micrograph and summary per split of :data:`TOPAZ_SETS`."""
    from causalscope.daemon.bench._cryoppp import load_cryoppp

    out: dict[str, Any] = {
        "model": TOPAZ_MODEL,
        "interpreter": python,
        "versions": check_topaz(python),
        "threads": threads,
        "rows": [],
        "summary": {},
    }
    started = time.perf_counter()
    for split, folder in TOPAZ_SETS.items():
        result = topaz_on_set(python, load_cryoppp(shared / "picking" / folder), threads=threads)
        out["rows"] += [{"split": split, **row} for row in result.pop("rows")]
        out["summary"][split] = result.pop("summary")
        out[split] = result
    out["total_s"] = round(time.perf_counter() - started, 1)
    return out


def merge_topaz(learned: dict[str, Any], topaz: dict[str, Any]) -> None:
    """Put Topaz's scores beside the learned picker's, blob's and chance in ``learned``'s rows
    (same split and micrograph) and per-split summaries."""
    by_key = {(r["split"], r["micrograph"]): r for r in topaz["rows"]}
    for row in learned["rows"]:
        if (found := by_key.get((row["split"], row["micrograph"]))) is not None:
            row["topaz_p05"] = found["topaz_p05"]
            row["topaz_best_cut"] = found["topaz_best_cut"]
    for split, summary in topaz["summary"].items():
        if split in learned["summary"]:
            learned["summary"][split].update(summary)
