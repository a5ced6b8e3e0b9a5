"""The novelty index: built from a structure and the junk prototypes, saved and opened
again, it finds a structure's views (low Novelty), leaves another structure far (high
Novelty), flags junk as junk, and learns a structure added later."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from causalscope.actors.novelty import INDEX_PIXEL_ANGSTROM, NoveltyIndex, junk_entries, map_entries
from causalscope.models.classification._grids import rotate_images
from causalscope.models.novelty import junk_images, map_views
from causalscope.models.simulate.density import specimen_map
from causalscope.models.simulate.specimen import elongated_phantom_specimen, phantom_specimen

APIX = INDEX_PIXEL_ANGSTROM


def _volume(specimen: object) -> np.ndarray:
    return specimen_map(specimen, box_px=48, pixel_size_angstrom=APIX).numpy()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def index_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("novelty") / "index"
    index = NoveltyIndex(folder)
    for label, vectors in junk_entries(12, seed=0).items():
        index.add(label, "junk", vectors, source="simulator")
    index.add(
        "phantom",
        "structure",
        map_entries(_volume(phantom_specimen()), pixel_size_angstrom=APIX, views=60),
    )
    return folder


def _class_like(volume: np.ndarray, n: int, seed: int) -> torch.Tensor:
    """Views of ``volume`` the index was not built from, turned in plane, with noise (32 px:
    a tight box, so that the query uses a small mask)."""
    rng = np.random.default_rng(seed)
    images = torch.as_tensor(map_views(volume, views=97)[rng.choice(97, n, replace=False)])
    images = rotate_images(images, torch.as_tensor(rng.uniform(0, 6.28, n), dtype=torch.float32))
    images = images[:, 8:40, 8:40]
    return images + 0.05 * images.std() * torch.randn(
        images.shape, generator=torch.Generator().manual_seed(seed)
    )


def test_a_structure_in_the_index_is_known_and_another_is_new(index_folder: Path) -> None:
    index = NoveltyIndex(index_folder)  # opened from its files
    assert [x["name"] for x in index.labels] == ["ice", "carbon", "aggregate", "empty", "phantom"]
    assert index.entries("structure") == 60 * 11
    known = index.classify(
        _class_like(_volume(phantom_specimen()), 8, 1).numpy(), pixel_size_angstrom=APIX, scale=0.8
    )
    new = index.classify(
        _class_like(_volume(elongated_phantom_specimen()), 8, 2).numpy(),
        pixel_size_angstrom=APIX,
        scale=0.8,
    )
    assert all(k.nearest == "phantom" and k.nearest_kind == "structure" for k in known)
    assert max(k.novelty for k in known) < 0.3
    assert min(k.novelty for k in new) > 0.8
    assert all(k.structure == "phantom" for k in new)  # the only structure, far away


def test_junk_is_flagged_as_junk(index_folder: Path) -> None:
    index = NoveltyIndex(index_folder)
    images, labels = junk_images(10, seed=7, pixel_size_angstrom=APIX, box_px=48)  # fresh draws
    found = index.classify(images, pixel_size_angstrom=APIX, scale=0.8)
    assert np.mean([f.is_junk for f in found]) >= 0.9
    assert all(
        f.nearest_kind == "junk" for f, label in zip(found, labels, strict=True) if label == "empty"
    )


def test_a_class_its_particles_do_not_make_is_junk_too_few_to_judge(index_folder: Path) -> None:
    """A class whose average is a seed or the prior (Class2D.unsupported) is flagged as junk
    ("empty") and rejected, whatever its average resembles: here a view of the structure in
    the index."""
    from causalscope.models.novelty import recommend_class

    index = NoveltyIndex(index_folder)
    views = _class_like(_volume(phantom_specimen()), 8, 2).numpy()[:2]
    found = index.classify(
        views, pixel_size_angstrom=APIX, scale=0.8, unsupported=np.array([False, True])
    )
    assert not found[0].is_junk and found[0].nearest == "phantom"
    assert found[1].too_few and found[1].is_junk and found[1].nearest == "empty"
    assert found[1].nearest_kind == "junk" and found[1].structure == "phantom"
    verdict, reason = recommend_class(
        particles=6, junk_score=0.1, auto_selected=False, label=None, novelty=found[1]
    )
    assert verdict == "reject" and "too few particles" in reason and "6 assigned" in reason
    assert recommend_class(
        particles=6, junk_score=0.1, auto_selected=False, label="select", novelty=found[1]
    ) == ("accept", "selected by you")
    with pytest.raises(ValueError, match="unsupported must flag 2 classes, got 3"):
        index.classify(views, pixel_size_angstrom=APIX, scale=0.8, unsupported=np.ones(3, bool))


def test_a_structure_added_later_is_found(index_folder: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(index_folder, folder)
    index = NoveltyIndex(folder)
    before = index.stamp()
    elongated = _volume(elongated_phantom_specimen())
    index.add("elongated", "structure", map_entries(elongated, pixel_size_angstrom=APIX, views=60))
    assert NoveltyIndex(folder).stamp() >= before
    found = NoveltyIndex(folder).classify(
        _class_like(elongated, 6, 3).numpy(), pixel_size_angstrom=APIX, scale=0.8
    )
    assert all(f.nearest == "elongated" and f.novelty < 0.3 for f in found)


def test_bad_entries_are_refused(tmp_path: Path) -> None:
    index = NoveltyIndex(tmp_path / "x")
    with pytest.raises(ValueError, match="kind"):
        index.add("a", "other", {})
    with pytest.raises(ValueError, match="every mask radius"):
        index.add("a", "junk", {40.0: np.zeros((1, 128))})
    assert (
        index.classify(np.zeros((2, 32, 32), np.float32), pixel_size_angstrom=4.0, scale=0.8)[
            0
        ].nearest_kind
        is None
    )


def test_a_map_is_scored_against_the_index(index_folder: Path) -> None:
    index = NoveltyIndex(index_folder)
    # the running map: at its own sampling (3 A/px), not the index's
    known = specimen_map(phantom_specimen(), box_px=64, pixel_size_angstrom=3.0).numpy()
    new = specimen_map(elongated_phantom_specimen(), box_px=64, pixel_size_angstrom=3.0).numpy()
    found = index.map_novelty(known, pixel_size_angstrom=3.0, scale=0.8)
    assert found.nearest == "phantom" and found.novelty < 0.3
    other = index.map_novelty(new, pixel_size_angstrom=3.0, scale=0.8)
    assert other.structure == "phantom" and other.novelty > 0.8


def test_the_maps_novelty_enters_its_score() -> None:
    import dataclasses

    from causalscope.actors.scoring import SessionScorer
    from causalscope.config import default_settings
    from tests.daemon.test_evaluation import _update

    update = _update(2)
    assert update.map is not None
    scorer = SessionScorer(default_settings().processing.scoring)
    plain = scorer.score_reconstruction(update)
    assert plain is not None and plain.components.novelty is None
    novel = dataclasses.replace(update, map=dataclasses.replace(update.map, novelty=0.9))
    scored = scorer.score_reconstruction(novel)
    assert scored is not None and scored.components.novelty == 0.9
    assert scored.score is not None and plain.score is not None
    assert "novelty" in scored.score.terms and "novelty" not in plain.score.terms


def test_an_unreadable_index_is_named(tmp_path: Path) -> None:
    from causalscope.models.errors import InputError

    (tmp_path / "index.json").write_text('{"format": 99}')
    with pytest.raises(InputError, match="index format 99"):
        NoveltyIndex(tmp_path)
    (tmp_path / "index.json").write_text("not json")
    with pytest.raises(InputError, match=r"index\.json"):
        NoveltyIndex(tmp_path)
