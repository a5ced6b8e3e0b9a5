"""Novelty benchmark: 2D classes of simulated sessions against an index of known structures
and junk, and the vector index's query time at scale.

Accuracy: an index is built from one structure (6z6u apoferritin from
``../shared/data/models``, else the built-in phantom) and the junk prototypes; two sessions
are simulated (particle stacks with 30 % junk: ice, aggregates, carbon edges; CTF, ice, shot
noise) of that structure (in the index) and of another (5a1a beta-galactosidase, else the
elongated phantom: not in the index), classified in 2D as the live evaluator does, and each
class is scored against the index. A class is called by its members' most common truth
label (a species or a junk kind). Reported per session: the Novelty of the species' classes
(median, range), the share of junk classes flagged as junk (nearest entry junk) and of the
species' classes flagged as junk, and the recommendations.

Speed: an index of ``index_size`` vectors (real embeddings of views and junk, each copied
with noise of 0.2 per unit length so that no two coincide) is built with usearch's HNSW (the
live index's settings, every core) and queried one vector at a time (1,000 queries): build
time, the median and 95th percentile of a query, and against the exact nearest neighbour (by
brute force on 200 of the queries) how often the found one is it, how often it has its label
(the base vector it was copied from), and how much farther it lies (median).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_novelty_bench"]


def _specimens(shared_data: Path | None) -> tuple[Any, Any, str]:
    from causalscope.models.simulate.specimen import elongated_phantom_specimen, phantom_specimen

    models = None if shared_data is None else shared_data / "models"
    if models is not None and (models / "6z6u.pdb").is_file() and (models / "5a1a.pdb").is_file():
        from causalscope.daemon.simulator import load_specimen

        return (
            load_specimen(str(models / "6z6u.pdb")),
            load_specimen(str(models / "5a1a.pdb")),
            "6z6u (in the index) and 5a1a (not)",
        )
    return (
        phantom_specimen(),
        elongated_phantom_specimen(),
        "phantom (in the index), elongated phantom (not)",
    )


def _session(
    specimen: Any, name: str, index: Any, options: dict[str, Any], seed: int
) -> dict[str, Any]:
    import torch

    from causalscope.daemon.bench.reconstruction_refine import _stack_ctfs
    from causalscope.models.classification import (
        Class2D,
        Class2DSettings,
        class_metrics,
        select_classes,
    )
    from causalscope.models.novelty import recommend_class
    from causalscope.models.simulate.particle_stack import simulate_particle_stack

    apix = options["apix"]
    box = 2 * round(1.3 * specimen.radius_angstrom / apix)
    stack = simulate_particle_stack(
        {name: specimen}, n=options["n"], box_px=box, pixel_size_angstrom=apix, seed=seed,
        junk_fractions={"ice": 0.1, "aggregate": 0.1, "carbon": 0.1},
        atom_stride=options["atom_stride"],
    )  # fmt: skip
    diameter = 2 * specimen.radius_angstrom
    model = Class2D(
        box_px=box, pixel_size_angstrom=apix,
        settings=Class2DSettings(n_classes=options["classes"], particle_diameter_angstrom=diameter),
    )  # fmt: skip
    ctfs, images = _stack_ctfs(stack), torch.as_tensor(stack.images)
    for first in range(0, stack.n, options["batch"]):
        ids = np.arange(first, min(stack.n, first + options["batch"]))
        model.partial_fit(images[ids], ctfs.take(ids), ids)
    everything = model.reassign_all()
    metrics = class_metrics(model, everything, particle_diameter_angstrom=diameter)
    keep = np.asarray(select_classes(metrics, threshold=0.5))
    started = time.perf_counter()
    found = index.classify(
        model.averages(), pixel_size_angstrom=float(model.grid.pixel_size_angstrom), scale=0.8,
        unsupported=model.unsupported(),
    )  # fmt: skip
    query_s = time.perf_counter() - started
    labels = np.asarray(stack.labels).astype(str)
    rows = []
    for m in metrics:
        members = labels[everything.class_index == m.class_index]
        if len(members) == 0:
            continue
        kinds, counts = np.unique(members, return_counts=True)
        truth = str(kinds[counts.argmax()])
        n = found[m.class_index]
        recommendation, reason = recommend_class(
            particles=m.n_particles, junk_score=m.junk_score,
            auto_selected=bool(keep[m.class_index]), label=None, novelty=n,
        )  # fmt: skip
        rows.append({
            "class": m.class_index, "particles": len(members), "truth": truth,
            "purity": float(counts.max() / len(members)), "novelty": n.novelty,
            "nearest": n.nearest, "junk": n.is_junk, "structure_distance": n.structure_distance,
            "junk_distance": n.junk_distance, "too_few": n.too_few,
            "recommendation": recommendation, "reason": reason,
        })  # fmt: skip
    good = [r for r in rows if r["truth"] == name]
    junk = [r for r in rows if r["truth"] != name]
    novelty = [r["novelty"] for r in good]
    return {
        "structure": name,
        "classes": rows,
        "species_classes": len(good),
        "junk_classes": len(junk),
        "novelty_median": float(np.median(novelty)) if novelty else None,
        "novelty_range": [float(min(novelty)), float(max(novelty))] if novelty else None,
        "junk_flagged": float(np.mean([r["junk"] for r in junk])) if junk else None,
        "junk_flagged_weighted": (
            float(
                sum(r["particles"] for r in junk if r["junk"]) / sum(r["particles"] for r in junk)
            )
            if junk
            else None
        ),
        "species_flagged_junk": float(np.mean([r["junk"] for r in good])) if good else None,
        "recommended": {
            k: sum(r["recommendation"] == k for r in rows) for k in ("accept", "look", "reject")
        },
        "query_ms_per_class": 1e3 * query_s / max(1, len(metrics)),
    }


def _speed(index_size: int, seed: int, threads: int) -> dict[str, Any]:
    from usearch.index import Index

    from causalscope.actors.novelty import INDEX_PIXEL_ANGSTROM, _new_hnsw
    from causalscope.models.novelty import embed_images, junk_images, map_views
    from causalscope.models.simulate.density import specimen_map
    from causalscope.models.simulate.specimen import elongated_phantom_specimen, phantom_specimen

    rng = np.random.default_rng(seed)
    seeds = [junk_images(32, seed=seed, pixel_size_angstrom=INDEX_PIXEL_ANGSTROM)[0]]
    for specimen in (phantom_specimen(), elongated_phantom_specimen()):
        volume = specimen_map(specimen, box_px=64, pixel_size_angstrom=INDEX_PIXEL_ANGSTROM)
        seeds.append(map_views(volume, views=300))
    base = np.concatenate(
        [
            embed_images(s, pixel_size_angstrom=INDEX_PIXEL_ANGSTROM, mask_radius_angstrom=104.0)
            for s in seeds
        ]
    )
    vectors = np.empty((index_size, base.shape[1]), dtype=np.float32)
    origin = rng.integers(0, len(base), index_size)  # each vector's label: its base vector
    for start in range(0, index_size, 100_000):
        stop = min(index_size, start + 100_000)
        block = base[origin[start:stop]]
        block = block + rng.normal(scale=0.2 / np.sqrt(base.shape[1]), size=block.shape)
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    hnsw: Index = _new_hnsw(base.shape[1])
    started = time.perf_counter()
    hnsw.add(np.arange(index_size, dtype=np.uint64), vectors, threads=threads)
    build_s = time.perf_counter() - started
    queries = vectors[rng.integers(0, index_size, 1000)]
    queries = queries + rng.normal(scale=0.05 / np.sqrt(base.shape[1]), size=queries.shape).astype(
        np.float32
    )
    exact, exact_d = [], []
    for q in queries[:200]:
        d = ((vectors - q) ** 2).sum(axis=1)
        exact.append(int(np.argmin(d)))
        exact_d.append(float(d.min()))
    searches = []
    for ef in (64, 256):  # the search's breadth (the live index uses 256)
        hnsw.expansion_search = ef  # type: ignore[misc]  # a setter its stubs hide
        times = []
        found = np.empty(len(queries), dtype=np.int64)
        found_d = np.empty(len(queries))
        for i, q in enumerate(queries):
            t = time.perf_counter()
            result = hnsw.search(q, 1)
            times.append(time.perf_counter() - t)
            found[i] = int(np.asarray(result.keys).reshape(-1)[0])
            found_d[i] = float(np.asarray(result.distances).reshape(-1)[0])
        ms = 1e3 * np.asarray(times)
        searches.append({
            "expansion_search": ef,
            "query_ms_median": float(np.median(ms)),
            "query_ms_p95": float(np.percentile(ms, 95)),
            "query_ms_max": float(ms.max()),
            # against the exact search: the same vector, the same label (base vector), and
            # how much farther the found one lies (median, in embedding distance)
            "exact_recall_at_1": float(np.mean(found[:200] == np.asarray(exact))),
            "label_recall_at_1": float(np.mean(origin[found[:200]] == origin[np.asarray(exact)])),
            "distance_excess_median": float(
                np.median(np.sqrt(np.maximum(found_d[:200], 0)) - np.sqrt(np.asarray(exact_d)))
            ),
        })  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.usearch"
        hnsw.save(str(path))
        size_mb = path.stat().st_size / 1e6
    return {
        "index_size": index_size,
        "dimension": int(base.shape[1]),
        "build_s": build_s,
        "build_threads": threads,
        "searches": searches,
        "file_mb": size_mb,
    }


def run_novelty_bench(
    *,
    shared_data: Path | None,
    n: int = 600,
    classes: int = 12,
    index_size: int = 200_000,
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, Any]:
    """The report (module docstring)."""
    import torch

    from causalscope.actors.novelty import (
        INDEX_PIXEL_ANGSTROM,
        NoveltyIndex,
        junk_entries,
        map_entries,
    )
    from causalscope.models.simulate.density import specimen_map

    torch.set_num_threads(1)
    known, unknown, what = _specimens(shared_data)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        index = NoveltyIndex(Path(tmp) / "index")
        for label, vectors in junk_entries(64, seed=seed).items():
            index.add(label, "junk", vectors)
        box = 2 * int((known.radius_angstrom + 20.0) / INDEX_PIXEL_ANGSTROM) + 2
        volume = specimen_map(known, box_px=box, pixel_size_angstrom=INDEX_PIXEL_ANGSTROM)
        index.add(
            "known",
            "structure",
            map_entries(volume.numpy(), pixel_size_angstrom=INDEX_PIXEL_ANGSTROM),
        )
        index_build_s = time.perf_counter() - started
        options = {
            "n": n,
            "classes": classes,
            "batch": max(100, n // 3),
            "apix": 2.0,
            "atom_stride": 2,
        }
        sessions = [
            _session(known, "known", index, options, seed),
            _session(unknown, "unknown", index, options, seed + 1),
        ]
    speed = _speed(index_size, seed, threads or os.cpu_count() or 1)
    summary = {
        "structures": what,
        "index_build_s": index_build_s,
        "novelty_in_index_median": sessions[0]["novelty_median"],
        "novelty_not_in_index_median": sessions[1]["novelty_median"],
        "junk_flagged": [s["junk_flagged"] for s in sessions],
        "species_flagged_junk": [s["species_flagged_junk"] for s in sessions],
        "recommended": [s["recommended"] for s in sessions],
        "speed": speed,
    }
    return {"summary": summary, "sessions": sessions}
