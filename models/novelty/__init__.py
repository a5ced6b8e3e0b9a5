"""Novelty of 2D classes and maps against an index of known structures and junk.

- :func:`embed_images`, :func:`embed_map`, :class:`EmbeddingSettings` (:mod:`.embedding`):
  rotation-, shift- and mirror-invariant embeddings (rotational power spectra of centred,
  band-passed images; a map as its projections over a hemisphere of views).
- :func:`junk_images` (:mod:`.prototypes`): ice, carbon edges, aggregates and empty boxes.
- :func:`novelty_from_distance`, :func:`recommend_class` (:mod:`.curation`): Novelty from
  the distances to the nearest structure and junk, and the per-class recommendation.
"""

from causalscope.models.novelty.curation import (
    NOVELTY_SCALE,
    ClassNovelty,
    novelty_from_distance,
    recommend_class,
)
from causalscope.models.novelty.embedding import (
    MASK_RADII_ANGSTROM,
    EmbeddingSettings,
    embed_images,
    embed_map,
    ladder_radius,
    map_views,
    viewing_directions,
)
from causalscope.models.novelty.prototypes import JUNK_LABELS, junk_images

__all__ = [
    "JUNK_LABELS",
    "MASK_RADII_ANGSTROM",
    "NOVELTY_SCALE",
    "ClassNovelty",
    "EmbeddingSettings",
    "embed_images",
    "embed_map",
    "junk_images",
    "ladder_radius",
    "map_views",
    "novelty_from_distance",
    "recommend_class",
    "viewing_directions",
]
