"""Novelty from the distances to the index, and a recommendation per 2D class.

Embeddings are unit vectors (:mod:`.embedding`), so distances lie in ``[0, 2]``. A class
average of a structure in the index lands about 0.2 from its nearest view (the gap is what
a CTF-corrected, noisy average still differs by from a clean projection); one of a
structure not in the index 0.6-1.1 from every view (``bench novelty``'s simulated sessions,
see the README). Novelty is ``1 - exp(-(d / scale)^2)`` of the distance ``d`` to the nearest
structure (``scale`` 0.8: about 0.06 in the index and 0.43-0.85 outside it). A class whose
nearest entry is junk is flagged as junk, and so is one whose average its particles do not
make (``too_few``: under two particles' weight in a half set, a class the classifier
re-seeded after its particles left or one nearly empty): its average is a seed or a low-pass
prior, round whatever its few remaining particles are, and read as a round particle (in
``bench novelty``, seeds 0-5: 8 of the 9 junk classes that distance alone missed were such,
1-10 particles nearest apoferritin; so were 3 of 93 species classes of 7-11 particles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["NOVELTY_SCALE", "ClassNovelty", "novelty_from_distance", "recommend_class"]

#: the distance at which Novelty reaches 1 - 1/e
NOVELTY_SCALE = 0.8


def novelty_from_distance(distance: float | None, *, scale: float = NOVELTY_SCALE) -> float:
    """``1 - exp(-(d / scale)^2)``: 0 on a known structure, towards 1 far from every one
    (1 where the index holds no structure: ``distance`` None)."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if distance is None:
        return 1.0
    if not math.isfinite(distance) or distance < 0:
        raise ValueError(f"distance must be finite and >= 0, got {distance}")
    return 1.0 - math.exp(-((distance / scale) ** 2))


@dataclass(frozen=True)
class ClassNovelty:
    """A class average against the index: the nearest structure and the nearest junk
    (label and distance; None where the index holds none of that kind)."""

    structure: str | None
    structure_distance: float | None
    junk: str | None
    junk_distance: float | None
    novelty: float
    #: the average is not its particles' (module docstring): judged junk, ``empty`` nearest
    too_few: bool = False

    @property
    def is_junk(self) -> bool:
        """Whether the nearest entry is junk, or the class too empty to judge."""
        if self.too_few:
            return True
        if self.junk_distance is None:
            return False
        return self.structure_distance is None or self.junk_distance < self.structure_distance

    @property
    def nearest(self) -> str | None:
        """The nearest entry's label (``empty`` for a class too empty to judge)."""
        if self.too_few:
            return "empty"
        return self.junk if self.is_junk else self.structure

    @property
    def nearest_kind(self) -> str | None:
        """``junk`` or ``structure`` (None for an empty index)."""
        if self.is_junk:
            return "junk"
        return None if self.structure is None else "structure"


def _distances(n: ClassNovelty) -> str:
    parts = []
    if n.structure is not None and n.structure_distance is not None:
        parts.append(f"{n.structure} at {n.structure_distance:.2f}")
    if n.junk is not None and n.junk_distance is not None:
        parts.append(f"junk '{n.junk}' at {n.junk_distance:.2f}")
    return "; ".join(parts)


def recommend_class(
    *,
    particles: int,
    junk_score: float,
    auto_selected: bool,
    label: str | None,
    novelty: ClassNovelty | None,
) -> tuple[str, str]:
    """``accept``, ``reject`` or ``look`` for one 2D class, with the reason an operator reads.

    The operator's label decides; else a class the classifier keeps (junk score below its
    threshold) and the index does not call junk is accepted, one both call junk is rejected,
    and one where they disagree is to be looked at; one too empty to judge (``too_few``) is
    rejected. Without an index the classifier decides.
    """
    if particles <= 0:
        return "reject", "no particles"
    if label == "select":
        return "accept", "selected by you"
    if label == "reject":
        return "reject", "rejected by you"
    if novelty is None or novelty.nearest_kind is None:
        if auto_selected:
            return "accept", f"junk score {junk_score:.2f} (no index of known structures)"
        return "reject", f"junk score {junk_score:.2f} (no index of known structures)"
    near = _distances(novelty)
    if novelty.too_few:
        return "reject", (
            f"too few particles to show anything: its average is not theirs ({particles} "
            f"assigned, under 2 of their weight in a half set); junk score {junk_score:.2f}"
        )
    if novelty.is_junk:
        if auto_selected:
            return "look", (
                f"the classifier keeps it (junk score {junk_score:.2f}) but its nearest known "
                f"entry is junk: {near}"
            )
        return "reject", f"nearest known entry is junk ({near}); junk score {junk_score:.2f}"
    if not auto_selected:
        return "look", (
            f"junk score {junk_score:.2f} rejects it, but it is nearest a known structure: {near}"
        )
    if novelty.novelty >= 0.5:
        return "accept", (
            f"new: far from every known structure (Novelty {novelty.novelty:.2f}; {near}); "
            f"junk score {junk_score:.2f}"
        )
    return "accept", (
        f"like {novelty.structure} (Novelty {novelty.novelty:.2f}; {near}); junk score "
        f"{junk_score:.2f}"
    )
