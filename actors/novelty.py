"""The novelty index: embeddings of known structures and known junk in a vector index.

The vector index is usearch's HNSW graph (a pip wheel; it saves to a file and opens it
memory-mapped, and scales to 10^7+ vectors: its query time grows with log n). DuckDB's ``vss``
extension would keep the index inside DuckDB, but it is downloaded at run time from
extensions.duckdb.org, which sites without internet access cannot reach; faiss-cpu is a much
larger wheel for the same job. The embeddings are :mod:`models.novelty`'s (128 numbers, 20 A,
rotation- and shift-invariant); vectors are stored as 16-bit floats (half the memory of
32-bit ones, distances within 1e-3; usearch's 8-bit integers would return distances on
their own quantised scale).

An index is a folder: ``index.json`` (its labels: name, kind 'structure' | 'junk', source
file, entries) and per kind and mask radius (:data:`models.novelty.MASK_RADII_ANGSTROM`) a
usearch file ``{kind}_{radius}.usearch`` with the label of each entry in
``{kind}_{radius}.npy``. A map (or a model, as its map) enters as its projections over
``views`` directions of a hemisphere at 4 A/px, each embedded under every mask radius; junk as
:func:`models.novelty.junk_images`. A query embeds a class average under the mask radius that
fits its box and asks the structures' and the junk's index of that radius for the nearest.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from causalscope.models.errors import InputError
from causalscope.models.novelty import (
    MASK_RADII_ANGSTROM,
    ClassNovelty,
    EmbeddingSettings,
    embed_images,
    junk_images,
    ladder_radius,
    map_views,
    novelty_from_distance,
)

__all__ = ["INDEX_PIXEL_ANGSTROM", "NoveltyIndex", "map_entries"]

#: the sampling (A/px) of the projections the index is built from
INDEX_PIXEL_ANGSTROM = 4.0
_FORMAT = 1
_KINDS = ("structure", "junk")


def _new_hnsw(dimension: int) -> Any:
    from usearch.index import Index

    return Index(
        ndim=dimension,
        metric="l2sq",
        dtype="f16",
        connectivity=8,
        expansion_add=32,
        expansion_search=256,
    )


def map_entries(
    volume: np.ndarray,
    *,
    pixel_size_angstrom: float,
    views: int = 300,
    settings: EmbeddingSettings | None = None,
) -> dict[float, np.ndarray]:
    """A map's entries: its projections' embeddings under each mask radius, after
    resampling to :data:`INDEX_PIXEL_ANGSTROM` in a box that holds the largest mask."""
    import torch

    from causalscope.models.reconstruction.resample import rescale_map

    v = torch.as_tensor(np.asarray(volume), dtype=torch.float32)
    extent = v.shape[-1] * pixel_size_angstrom / INDEX_PIXEL_ANGSTROM
    box = max(
        2 * int(np.ceil(max(MASK_RADII_ANGSTROM) / 0.95 / INDEX_PIXEL_ANGSTROM)),
        2 * int(extent / 2),
    )
    resampled = rescale_map(
        v, from_pixel_angstrom=pixel_size_angstrom, to_pixel_angstrom=INDEX_PIXEL_ANGSTROM,
        box_px=box,
    )  # fmt: skip
    images = map_views(resampled, views=views)
    return {
        r: embed_images(
            images,
            pixel_size_angstrom=INDEX_PIXEL_ANGSTROM,
            mask_radius_angstrom=r,
            settings=settings,
        )
        for r in MASK_RADII_ANGSTROM
    }


def junk_entries(
    per_kind: int = 64, *, seed: int = 0, settings: EmbeddingSettings | None = None
) -> dict[str, dict[float, np.ndarray]]:
    """The junk prototypes' entries by label, each under every mask radius."""
    images, labels = junk_images(per_kind, seed=seed, pixel_size_angstrom=INDEX_PIXEL_ANGSTROM)
    out: dict[str, dict[float, np.ndarray]] = {}
    for label in dict.fromkeys(labels.tolist()):
        chosen = images[labels == label]
        out[str(label)] = {
            r: embed_images(
                chosen,
                pixel_size_angstrom=INDEX_PIXEL_ANGSTROM,
                mask_radius_angstrom=r,
                settings=settings,
            )
            for r in MASK_RADII_ANGSTROM
        }
    return out


class NoveltyIndex:
    """The index in ``folder`` (module docstring): created empty when it has none."""

    def __init__(self, folder: str | Path, *, settings: EmbeddingSettings | None = None) -> None:
        self.folder = Path(folder)
        manifest = self.folder / "index.json"
        self.labels: list[dict[str, Any]] = []
        self.settings = settings or EmbeddingSettings()
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
                found = data.get("format")
                if found != _FORMAT:
                    raise ValueError(f"index format {found}, this causalscope reads {_FORMAT}")
                self.settings = EmbeddingSettings(**data["embedding"])
                self.labels = list(data["labels"])
            except (ValueError, TypeError, KeyError, AttributeError) as error:
                raise InputError(
                    "Unreadable novelty index", f"{manifest}: {error}", path=manifest
                ) from error
        self._hnsw: dict[tuple[str, float], Any] = {}
        self._keys: dict[tuple[str, float], np.ndarray] = {}

    @staticmethod
    def exists(folder: str | Path) -> bool:
        """Whether ``folder`` holds an index."""
        return (Path(folder) / "index.json").is_file()

    def stamp(self) -> float:
        """The manifest's modification time (an index added to since it was opened has a
        newer one)."""
        manifest = self.folder / "index.json"
        return manifest.stat().st_mtime if manifest.is_file() else 0.0

    def _files(self, kind: str, radius: float) -> tuple[Path, Path]:
        stem = f"{kind}_{round(radius)}"
        return self.folder / f"{stem}.usearch", self.folder / f"{stem}.npy"

    def _load(self, kind: str, radius: float) -> tuple[Any, np.ndarray] | None:
        key = (kind, radius)
        if key not in self._hnsw:
            graph, keys = self._files(kind, radius)
            if not graph.is_file():
                return None
            hnsw = _new_hnsw(self.settings.dimension)
            hnsw.load(str(graph))
            self._hnsw[key] = hnsw
            self._keys[key] = np.load(keys)
        return self._hnsw[key], self._keys[key]

    def entries(self, kind: str | None = None) -> int:
        """Entries (over every mask radius) of ``kind`` or of both."""
        return sum(int(x["entries"]) for x in self.labels if kind in (None, x["kind"]))

    def add(
        self, name: str, kind: str, vectors: dict[float, np.ndarray], *, source: str = ""
    ) -> None:
        """Add one label's entries (``vectors``: mask radius -> ``(m, d)`` embeddings) and
        save the index."""
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        if set(vectors) != set(MASK_RADII_ANGSTROM):
            raise ValueError(f"entries needed for every mask radius {MASK_RADII_ANGSTROM}")
        self.folder.mkdir(parents=True, exist_ok=True)
        label_id = len(self.labels)
        count = 0
        for radius, block in vectors.items():
            block = np.asarray(block, dtype=np.float32)
            if block.ndim != 2 or block.shape[1] != self.settings.dimension:
                raise ValueError(
                    f"entries must be (m, {self.settings.dimension}), got {block.shape}"
                )
            found = self._load(kind, radius)
            hnsw, keys = (
                found
                if found is not None
                else (_new_hnsw(self.settings.dimension), np.zeros(0, np.int32))
            )
            start = len(keys)
            hnsw.add(np.arange(start, start + len(block), dtype=np.uint64), block)
            keys = np.concatenate([keys, np.full(len(block), label_id, dtype=np.int32)])
            graph, key_file = self._files(kind, radius)
            hnsw.save(str(graph))
            np.save(key_file, keys)
            self._hnsw[(kind, radius)], self._keys[(kind, radius)] = hnsw, keys
            count += len(block)
        self.labels.append({"name": name, "kind": kind, "source": source, "entries": count})
        self._write_manifest()

    def _write_manifest(self) -> None:
        manifest = self.folder / "index.json"
        partial = manifest.with_name(f".index.json.{os.getpid()}.part")
        data = {"format": _FORMAT, "embedding": asdict(self.settings), "labels": self.labels}
        partial.write_text(json.dumps(data, indent=1), encoding="utf-8")
        partial.replace(manifest)

    def nearest(
        self, vectors: np.ndarray, radius: float, kind: str
    ) -> list[tuple[str | None, float | None]]:
        """(label, distance) of the nearest entry of ``kind`` to each embedding under mask
        ``radius`` ((None, None) where the index holds none)."""
        n = len(vectors)
        found = self._load(kind, radius)
        if found is None or n == 0:
            return [(None, None)] * n
        hnsw, keys = found
        result = hnsw.search(np.asarray(vectors, dtype=np.float32), 1)
        matched = np.asarray(result.keys).reshape(n, -1)[:, 0]
        distances = np.asarray(result.distances, dtype=np.float64).reshape(n, -1)[:, 0]
        out: list[tuple[str | None, float | None]] = []
        for key, d in zip(matched, distances, strict=True):
            if key >= len(keys):  # usearch's "no match"
                out.append((None, None))
            else:
                out.append((str(self.labels[int(keys[key])]["name"]), float(np.sqrt(max(d, 0.0)))))
        return out

    def classify(
        self,
        averages: np.ndarray,
        *,
        pixel_size_angstrom: float,
        scale: float,
        unsupported: np.ndarray | None = None,
    ) -> list[ClassNovelty]:
        """Each class average's nearest structure and junk, and its Novelty; the classes
        ``unsupported`` marks (:meth:`Class2D.unsupported`: an average its particles do not
        make) are flagged as too few to judge."""
        averages = np.asarray(averages, dtype=np.float32)
        if averages.ndim != 3 or len(averages) == 0:
            return []
        radius = ladder_radius(averages.shape[-1], pixel_size_angstrom)
        vectors = embed_images(
            averages, pixel_size_angstrom=pixel_size_angstrom, mask_radius_angstrom=radius,
            settings=self.settings,
        )  # fmt: skip
        structures = self.nearest(vectors, radius, "structure")
        junk = self.nearest(vectors, radius, "junk")
        few = np.zeros(len(averages), dtype=bool) if unsupported is None else unsupported
        if len(few) != len(averages):
            raise ValueError(f"unsupported must flag {len(averages)} classes, got {len(few)}")
        return [
            ClassNovelty(
                structure=s,
                structure_distance=sd,
                junk=j,
                junk_distance=jd,
                novelty=novelty_from_distance(sd, scale=scale),
                too_few=bool(f),
            )
            for (s, sd), (j, jd), f in zip(structures, junk, few, strict=True)
        ]

    def map_novelty(
        self, volume: np.ndarray, *, pixel_size_angstrom: float, scale: float, views: int = 50
    ) -> ClassNovelty:
        """A map against the index: its projections over ``views`` directions, each asked
        for its nearest structure and junk; the median distances and the most common labels."""
        images = map_views(volume, views=views)
        radius = ladder_radius(images.shape[-1], pixel_size_angstrom)
        vectors = embed_images(
            images, pixel_size_angstrom=pixel_size_angstrom, mask_radius_angstrom=radius,
            settings=self.settings,
        )  # fmt: skip
        parts: list[tuple[str | None, float | None]] = []
        for kind in _KINDS:
            found = [
                (label, d) for label, d in self.nearest(vectors, radius, kind) if d is not None
            ]
            if not found:
                parts.append((None, None))
                continue
            names = [label for label, _ in found]
            parts.append(
                (max(set(names), key=names.count), float(np.median([d for _, d in found])))
            )
        (structure, sd), (junk, jd) = parts
        return ClassNovelty(
            structure=structure, structure_distance=sd, junk=junk, junk_distance=jd,
            novelty=novelty_from_distance(sd, scale=scale),
        )  # fmt: skip
