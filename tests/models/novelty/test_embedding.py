"""The novelty embedding is invariant to what must not matter (in-plane rotation, mirror,
shift, contrast, pixel size) and tells structures apart; Novelty and the class
recommendation follow their rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from causalscope.models.classification._grids import rotate_images
from causalscope.models.novelty import (
    ClassNovelty,
    embed_images,
    ladder_radius,
    map_views,
    novelty_from_distance,
    recommend_class,
    viewing_directions,
)
from causalscope.models.reconstruction.resample import fourier_crop
from causalscope.models.simulate.density import specimen_map
from causalscope.models.simulate.specimen import elongated_phantom_specimen, phantom_specimen

APIX = 4.0


@pytest.fixture(scope="module")
def views() -> dict[str, np.ndarray]:
    out = {}
    for name, specimen in (
        ("phantom", phantom_specimen()),
        ("elongated", elongated_phantom_specimen()),
    ):
        volume = specimen_map(specimen, box_px=48, pixel_size_angstrom=APIX)
        out[name] = map_views(volume, views=40)
    return out


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1)


def test_embeddings_are_unit_vectors_of_the_stated_length(views: dict[str, np.ndarray]) -> None:
    e = embed_images(views["elongated"], pixel_size_angstrom=APIX)
    assert e.shape == (40, 128)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert not embed_images(np.zeros((1, 32, 32)), pixel_size_angstrom=APIX).any()  # no signal


def test_invariant_to_rotation_mirror_shift_contrast_and_pixel_size(
    views: dict[str, np.ndarray],
) -> None:
    images = torch.as_tensor(views["elongated"][:8])
    base = embed_images(images, pixel_size_angstrom=APIX)
    # a quarter turn and a mirror are exact on the grid (up to the centre pixel and the rings'
    # interpolation)
    for moved in (torch.rot90(images, 1, dims=(-2, -1)), torch.flip(images, dims=(-1,))):
        assert _distance(base, embed_images(moved, pixel_size_angstrom=APIX)).max() < 0.01
    turned = rotate_images(images, torch.full((8,), math.radians(37.0)))
    assert _distance(base, embed_images(turned, pixel_size_angstrom=APIX)).max() < 0.05
    shifted = torch.roll(images, shifts=(3, -2), dims=(-2, -1))
    assert _distance(base, embed_images(shifted, pixel_size_angstrom=APIX)).max() < 0.05
    scaled = 7.0 * images + 3.0
    assert _distance(base, embed_images(scaled, pixel_size_angstrom=APIX)).max() < 1e-4
    # the same views at 2 A/px (twice the box) embed as at 4 A/px
    volume = specimen_map(elongated_phantom_specimen(), box_px=96, pixel_size_angstrom=2.0)
    fine = map_views(volume, views=40)[:8]
    assert _distance(base, embed_images(fine, pixel_size_angstrom=2.0)).max() < 0.05
    binned = fourier_crop(torch.as_tensor(fine), 48)
    assert _distance(base, embed_images(binned, pixel_size_angstrom=APIX)).max() < 0.05


def test_different_structures_lie_far_apart(views: dict[str, np.ndarray]) -> None:
    a = embed_images(views["phantom"], pixel_size_angstrom=APIX)
    b = embed_images(views["elongated"], pixel_size_angstrom=APIX)
    between = _distance(b[:, None], a[None]).min(axis=1)  # each elongated view to the phantom
    within = np.sort(_distance(b[:, None], b[None]), axis=1)[:, 1]  # to its nearest other view
    assert between.min() > 1.0
    assert np.median(within) < 0.3


def test_viewing_directions_cover_the_hemisphere_evenly() -> None:
    d = viewing_directions(500)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    assert (d[:, 2] > 0).all()
    # equal areas: z is uniform on (0, 1], so a quarter of the views lie above z = 0.75
    assert abs((d[:, 2] > 0.75).mean() - 0.25) < 0.01
    # the farthest any direction on the hemisphere is from a view: within 7 degrees
    probe = np.random.default_rng(0).normal(size=(2000, 3))
    probe[:, 2] = np.abs(probe[:, 2])
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    gap = np.degrees(np.arccos(np.clip(probe @ d.T, -1, 1).max(axis=1)))
    assert gap.max() < 7.0


def test_the_mask_radius_fits_the_box() -> None:
    assert ladder_radius(32, 4.0) == 56.0  # 0.95 * 64 A = 60.8 A
    assert ladder_radius(200, 4.0) == 192.0
    assert ladder_radius(16, 1.0) == 40.0  # none fits: the smallest


def test_novelty_from_distance() -> None:
    assert novelty_from_distance(0.0) == 0.0
    assert novelty_from_distance(0.8) == pytest.approx(1 - math.exp(-1))
    assert novelty_from_distance(None) == 1.0
    assert novelty_from_distance(0.45) < 0.3 < 0.9 < novelty_from_distance(1.3)
    with pytest.raises(ValueError, match="distance"):
        novelty_from_distance(-1.0)


def _near(structure: float | None, junk: float | None) -> ClassNovelty:
    return ClassNovelty(
        structure=None if structure is None else "6z6u",
        structure_distance=structure,
        junk=None if junk is None else "ice",
        junk_distance=junk,
        novelty=novelty_from_distance(structure),
    )


@pytest.mark.parametrize(
    ("auto", "label", "near", "expected", "words"),
    [
        (True, None, _near(0.4, 0.7), "accept", "like 6z6u"),
        (True, None, _near(1.3, 1.5), "accept", "new: far from every known structure"),
        (False, None, _near(1.3, 0.3), "reject", "nearest known entry is junk"),
        (True, None, _near(1.3, 0.3), "look", "the classifier keeps it"),
        (False, None, _near(0.4, 0.7), "look", "rejects it, but it is nearest a known structure"),
        (True, None, None, "accept", "no index"),
        (False, None, None, "reject", "no index"),
        (False, "select", _near(1.3, 0.3), "accept", "selected by you"),
        (True, "reject", _near(0.4, 0.7), "reject", "rejected by you"),
    ],
)
def test_recommendation_rules(
    auto: bool, label: str | None, near: ClassNovelty | None, expected: str, words: str
) -> None:
    got, reason = recommend_class(
        particles=50, junk_score=0.2 if auto else 0.8, auto_selected=auto, label=label, novelty=near
    )
    assert got == expected and words in reason
    if near is not None and label is None:
        assert f"{near.junk_distance:.2f}" in reason  # the distances are stated


def test_an_empty_class_is_rejected() -> None:
    assert recommend_class(
        particles=0, junk_score=0.0, auto_selected=True, label=None, novelty=_near(0.4, 0.7)
    ) == ("reject", "no particles")
