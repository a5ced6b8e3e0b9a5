"""Where not to pick, against the simulator's truth: its contamination (carbon film, ice balls,
aggregates) and cracks change the expected counts by a known factor (``transmission``); and the
learned picker's particles in the clean ice beside them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from causalscope.models.picking import match_picks, pick_blobs
from causalscope.models.picking.exclusion import exclusion_mask
from causalscope.models.picking.learned import canonical_micrograph, default_picker, pick_learned
from causalscope.models.picking.learned.preprocess import gaussian_blur
from causalscope.models.simulate.triage_scenes import simulate_triage_micrograph

APIX = 4.0
DIAMETER = 120.0  # the built-in phantom's
RADIUS_PX = round(DIAMETER / 2 / APIX)


def _regions(scene):  # type: ignore[no-untyped-def]
    """Truly affected pixels (the counts changed by more than 3 %), those within a radius of
    them, and the interior (a radius from the edge)."""
    assert scene.transmission is not None
    bad = np.abs(scene.transmission - 1.0) > 0.03
    near = ndimage.binary_dilation(bad, iterations=RADIUS_PX) if bad.any() else bad
    inner = ndimage.binary_erosion(np.ones_like(bad), iterations=RADIUS_PX, border_value=0)
    return bad, near, inner


@pytest.mark.parametrize(
    ("detail", "reason"),
    [("carbon_edge", "dense"), ("ice_blobs", "dense"), ("aggregates", "dense"), ("crack", "thin")],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_contamination_and_cracks_are_excluded(detail: str, reason: str, seed: int) -> None:
    scene = simulate_triage_micrograph(
        "contaminated", size_px=512, pixel_size_angstrom=APIX, seed=seed, detail=detail
    )
    found = exclusion_mask(
        torch.from_numpy(scene.image), pixel_size_angstrom=APIX, particle_diameter_angstrom=DIAMETER
    )
    bad, near, inner = _regions(scene)
    masked = found.mask.numpy() & inner
    recall = (masked & bad & inner).sum() / (bad & inner).sum()
    false = (masked & ~near & inner).sum() / (~near & inner).sum()
    # aggregates' faint outskirts (3-5 % of the counts) are partly kept: 0.78-0.83 measured
    assert recall >= (0.75 if detail == "aggregates" else 0.98), recall
    assert false <= 0.02, false  # beyond a radius of the edges: 0-0.1 % measured
    other = "thin" if reason == "dense" else "dense"
    assert found.fractions[reason] > 0.1 and found.fractions[other] < 0.01, found.fractions


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_ice_with_particles_is_not_excluded(seed: int) -> None:
    """Particles (phase contrast) do not move the local mean: only the border is excluded."""
    scene = simulate_triage_micrograph("usable", size_px=512, pixel_size_angstrom=APIX, seed=seed)
    found = exclusion_mask(
        torch.from_numpy(scene.image), pixel_size_angstrom=APIX, particle_diameter_angstrom=DIAMETER
    )
    bad, near, inner = _regions(scene)
    assert (found.mask.numpy() & inner & ~near).sum() == 0
    assert found.fractions["dense"] == pytest.approx(bad.mean(), abs=0.02)
    expected_border = 1.0 - (1.0 - 2 * DIAMETER / 2 / APIX / 512) ** 2
    assert found.fractions["border"] == pytest.approx(expected_border, abs=0.01)
    xy = torch.tensor(scene.truth["particles"], dtype=torch.float64)
    inside = (xy >= RADIUS_PX).all(1) & (xy <= 511 - RADIUS_PX).all(1)
    assert bool(found.keeps(xy[inside]).all())


def test_picks_on_carbon_are_dropped() -> None:
    """Blob picks on a micrograph a third covered by carbon: the mask leaves at most 2 % of them
    on the carbon (the issue's bound), and keeps most of those on the ice."""
    scene = simulate_triage_micrograph(
        "contaminated", size_px=512, pixel_size_angstrom=APIX, seed=1, detail="carbon_edge"
    )
    image = torch.from_numpy(scene.image)
    picks = pick_blobs(
        image.max() - image, pixel_size_angstrom=APIX, particle_diameter_angstrom=DIAMETER
    )
    found = exclusion_mask(image, pixel_size_angstrom=APIX, particle_diameter_angstrom=DIAMETER)
    bad, _, _ = _regions(scene)
    x = picks.xy_px[:, 0].round().long().clamp(0, 511)
    y = picks.xy_px[:, 1].round().long().clamp(0, 511)
    on_bad = torch.from_numpy(bad)[y, x]
    keep = found.keeps(picks.xy_px)
    assert int(on_bad.sum()) >= 5  # without the mask, the carbon is picked
    assert int((keep & on_bad).sum()) <= 0.02 * int(keep.sum())
    # those within reach of the film's edge and the border go too: 33 of 43 kept
    assert int((keep & ~on_bad).sum()) >= 0.7 * int((~on_bad).sum())


def test_an_image_that_is_not_counts_is_refused() -> None:
    image = torch.randn(256, 256)
    image -= image.mean() + 1.0
    with pytest.raises(ValueError, match="image of counts"):
        exclusion_mask(image, pixel_size_angstrom=1.0, particle_diameter_angstrom=100.0)


def test_the_canonical_background_steps_with_an_edge() -> None:
    # a step of 20 noise spreads, as the counts jump at a carbon edge: a mean background (a
    # Gaussian of two diameters) leaves several spreads of the step on the ice beside it
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 1.0, (480, 480)).astype(np.float32)
    image[:, 240:] += 20.0
    canonical, _ = canonical_micrograph(torch.from_numpy(image), diameter_px=48.0)
    # 240 x 240 canonical px, the edge at column 120, a diameter is 24 px
    left, right = canonical[:, : 120 - 24], canonical[:, 120 + 24 :]
    assert abs(float(left.mean())) < 0.2 and abs(float(right.mean())) < 0.2
    gaussian = torch.from_numpy(image[::2, ::2].copy())
    gaussian = gaussian - gaussian_blur(gaussian, 48.0)
    assert float(gaussian[:, 120 - 24 : 120 - 12].mean()) < -2.0  # the old background's offset


def _at_2a(detail: str, *, seed: int):  # type: ignore[no-untyped-def]
    """A contaminated 1024^2 micrograph at 2 A/px and 40 e/A^2."""
    return simulate_triage_micrograph(
        "contaminated",
        size_px=1024,
        pixel_size_angstrom=2.0,
        dose_e_per_a2=40.0,
        seed=seed,
        detail=detail,
    )


def _clean_truth(scene) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The particles centred in clean ice (within 3 % of its counts), half a diameter (2 A/px)
    from the edge."""
    assert scene.transmission is not None
    diameter = DIAMETER / 2.0
    truth = np.asarray(scene.truth["particles"], dtype=np.float64).reshape(-1, 2)
    ij = np.clip(np.round(truth[:, ::-1]).astype(int), 0, np.array(scene.image.shape) - 1)
    clean = np.abs(scene.transmission[ij[:, 0], ij[:, 1]] - 1.0) <= 0.03
    inner = np.all(
        (truth > diameter / 2) & (truth < np.array(scene.image.shape)[::-1] - 1 - diameter / 2),
        axis=1,
    )
    return truth[clean & inner]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("detail", "least_recall", "least_precision"),
    [("ice_blobs", 0.95, 0.95), ("crack", 0.95, 0.93)],
)
def test_particles_beside_contamination_are_found(
    detail: str, least_recall: float, least_precision: float
) -> None:
    # the live path (the exclusion mask, the shipped picker counting outside it with the
    # background of the ice taken apart from the crack) on the particles in clean ice of a
    # contaminated micrograph (2 A/px, 40 e/A^2, seed 0): with a mean background it found 70 %
    # of them beside the ice balls and 64 % beside the crack; with the median 100 % and 86 %
    # (precision 0.92 beside the crack); with the crack apart 100 % and 98 % (precision 0.96)
    scene = _at_2a(detail, seed=0)
    truth = _clean_truth(scene)
    assert len(truth) >= 30
    image = torch.from_numpy(scene.image.astype(np.float32))
    mask = exclusion_mask(image, pixel_size_angstrom=2.0, particle_diameter_angstrom=DIAMETER)
    diameter = DIAMETER / 2.0
    picks = pick_learned(
        image, default_picker(), diameter_px=diameter, counted=mask.keeps, ice_free=mask.thin
    )
    xy = picks.xy_px[mask.keeps(picks.xy_px)].numpy()
    match = match_picks(xy, truth, radius_px=0.25 * diameter)
    assert match.recall >= least_recall
    assert match.precision >= least_precision


@pytest.mark.parametrize("width_px", [96, 144, 192])
def test_the_ice_beside_a_known_crack_keeps_its_level(width_px: int) -> None:
    # a band 2-4 diameters wide, 20 noise spreads brighter (a crack's missing ice): the running
    # median, whose window holds up to half of it, leans toward it and leaves the ice beside it
    # 3.2-3.5 spreads dark; given the band, the ice's level comes from the ice alone
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 1.0, (576, 576)).astype(np.float32)
    image[:, 216 : 216 + width_px] += 20.0
    crack = torch.zeros(576, 576, dtype=torch.bool)
    crack[:, 216 : 216 + width_px] = True
    # canonical: 288 x 288 px, a diameter 24 px, the band from column 108 to 108 + width / 2
    end = 108 + width_px // 2
    leaning, _ = canonical_micrograph(torch.from_numpy(image), diameter_px=48.0)
    assert float(leaning[:, 84:106].mean()) < -2.0
    canonical, _ = canonical_micrograph(torch.from_numpy(image), diameter_px=48.0, ice_free=crack)
    for beside in (canonical[:, 84:106], canonical[:, end + 2 : end + 24]):
        assert abs(float(beside.mean())) < 0.1  # measured at most 0.054
    assert abs(float(canonical[:, 112 : end - 4].mean())) < 0.1  # the band on its own level
    with pytest.raises(ValueError, match="ice_free must have the image's shape"):
        canonical_micrograph(torch.from_numpy(image), diameter_px=48.0, ice_free=crack[:100])


@pytest.mark.slow
def test_a_wide_crack_leaves_the_ice_level_on_the_ice() -> None:
    # a crack over 22 % of the field (2 A/px, 40 e/A^2, seed 10) lifted the 75th percentile of
    # the local mean off the ice: 8 % of the field was called dense, 82 % of the particles in
    # clean ice lay under the mask and the live path found 11 % of them; taken again without
    # the crack, the level masks 6 % of them (touching the crack) and 84 % are found
    scene = _at_2a("crack", seed=10)
    truth = _clean_truth(scene)
    image = torch.from_numpy(scene.image.astype(np.float32))
    mask = exclusion_mask(image, pixel_size_angstrom=2.0, particle_diameter_angstrom=DIAMETER)
    assert mask.fractions["thin"] > 0.2 and mask.fractions["dense"] < 0.01
    assert float((~mask.keeps(torch.from_numpy(truth))).float().mean()) < 0.1
    assert bool(mask.thin.any()) and not bool((mask.thin & ~mask.mask).any())


@pytest.mark.slow
def test_a_crowded_field_is_picked_particle_by_particle() -> None:
    # particles over 45 % of the field (2 A/px, 12 e/A^2), placed at least a diameter apart:
    # many touch, and each gives its own pick
    scene = simulate_triage_micrograph(
        "usable", size_px=1024, pixel_size_angstrom=2.0, dose_e_per_a2=12.0, seed=1, coverage=0.45
    )
    diameter = DIAMETER / 2.0
    truth = np.asarray(scene.truth["particles"], dtype=np.float64).reshape(-1, 2)
    assert len(truth) >= 0.95 * 0.45 * 1024**2 / (np.pi * (diameter / 2) ** 2)
    gaps = np.hypot(*(truth[:, None] - truth[None]).transpose(2, 0, 1))
    np.fill_diagonal(gaps, np.inf)
    nearest = gaps.min(axis=1)
    assert nearest.min() >= diameter - 1e-6 and (nearest < 1.1 * diameter).mean() > 0.3
    inner = np.all((truth > diameter / 2) & (truth < 1024 - 1 - diameter / 2), axis=1)
    image = torch.from_numpy(scene.image.astype(np.float32))
    picks = pick_learned(image, default_picker(), diameter_px=diameter)
    match = match_picks(picks.xy_px.numpy(), truth[inner], radius_px=0.25 * diameter)
    assert match.recall >= 0.95 and match.precision >= 0.95  # measured 0.994 and 0.988


def test_coverage_outside_a_plane_s_packing_is_refused() -> None:
    with pytest.raises(ValueError, match="coverage"):
        simulate_triage_micrograph("usable", coverage=0.7)
