"""Blob and template picking against simulated truth; NMS, extraction and matching identities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from causalscope.models.picking import (
    Picks,
    extract_particles,
    match_picks,
    normalise_particles,
    pick_blobs,
    pick_template,
    project_templates,
)
from causalscope.models.restoration import CtfParameters, phase_flip
from causalscope.models.simulate.exposure import (
    ExposureParameters,
    SimulatedExposure,
    simulate_exposure,
)
from causalscope.models.simulate.specimen import phantom_specimen

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "picking"


@pytest.fixture(scope="module")
def exposure() -> SimulatedExposure:
    params = ExposureParameters(
        size_px=1024,
        n_frames=1,
        drift_total_px=0.0,
        drift_jitter_px=0.0,
        local_motion_px=0.0,
        intra_frame_blur=False,
        n_particles=20,
        dose_e_per_a2=40.0,
        ice_thickness_nm=30.0,
        seed=11,
    )
    return simulate_exposure(params, specimen=phantom_specimen())


def _truth(exposure: SimulatedExposure) -> tuple[np.ndarray, float]:
    return np.asarray(exposure.truth["particles"]), exposure.truth["particle_radius_angstrom"]


def test_blob_picker_finds_the_simulated_particles(exposure: SimulatedExposure) -> None:
    truth, radius = _truth(exposure)
    image = torch.from_numpy(exposure.frames[0].astype(np.float32))
    picks = pick_blobs(image, pixel_size_angstrom=1.0, particle_diameter_angstrom=2 * radius)
    match = match_picks(picks.xy_px, truth, radius_px=0.5 * radius)
    assert match.f1 >= 0.9, match
    # the scores rank: every matched pick outscores the median unmatched one
    assert torch.all(picks.scores[:-1] >= picks.scores[1:])


def test_template_picker_finds_the_simulated_particles(exposure: SimulatedExposure) -> None:
    truth, radius = _truth(exposure)
    image = torch.from_numpy(exposure.frames[0].astype(np.float32))
    ctf = CtfParameters(
        defocus_u_angstrom=15_000.0,
        defocus_v_angstrom=14_600.0,
        defocus_angle_deg=30.0,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
    )
    flipped = phase_flip(image, pixel_size_angstrom=1.0, **ctf.kwargs())
    templates = project_templates(
        phantom_specimen().coords_angstrom, pixel_size_angstrom=1.0, box_px=160, n_views=6
    )
    picks = pick_template(
        flipped, templates, pixel_size_angstrom=1.0, particle_diameter_angstrom=2 * radius
    )
    assert match_picks(picks.xy_px, truth, radius_px=0.5 * radius).f1 >= 0.9


@pytest.mark.parametrize("min_distance", [20.0, 45.0, 90.0])
def test_nms_never_returns_picks_closer_than_the_minimum(min_distance: float) -> None:
    image = torch.randn(512, 512, generator=torch.Generator().manual_seed(0))
    picks = pick_blobs(
        image,
        pixel_size_angstrom=1.0,
        particle_diameter_angstrom=40.0,
        threshold=-5.0,
        min_distance_angstrom=min_distance,
    )
    assert len(picks) > 10
    distance = torch.cdist(picks.xy_px, picks.xy_px) + torch.eye(len(picks)) * 1e9
    assert float(distance.min()) >= min_distance
    edge = 20.0
    assert float(picks.xy_px.min()) >= edge - 6 and float(picks.xy_px.max()) <= 511 - edge + 6


def test_extraction_normalises_the_background_and_centres_the_box() -> None:
    rng = torch.Generator().manual_seed(1)
    image = 100.0 + 7.0 * torch.randn(256, 256, generator=rng)
    image[100, 60] = 1e4  # a marker at (x=60, y=100)
    xy = torch.tensor([[60.0, 100.0], [128.4, 127.6], [3.0, 250.0]])
    boxes = extract_particles(image, xy, box_px=32, normalise=False)
    assert boxes.shape == (3, 32, 32)
    assert float(boxes[0, 16, 16]) == 1e4  # the centre pixel is box // 2
    torch.testing.assert_close(boxes[1], image[112:144, 112:144])
    normalised = extract_particles(image, xy, box_px=32, background_radius_px=12.0)
    coords = torch.arange(32) - 16
    outside = (coords[:, None] ** 2 + coords[None, :] ** 2) > 144
    background = normalised[:, outside]
    torch.testing.assert_close(background.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(background.std(1), torch.ones(3), atol=1e-5, rtol=0)
    # RELION's default: 75 % of half the box
    torch.testing.assert_close(
        extract_particles(image, xy, box_px=32),
        normalise_particles(boxes, background_radius_px=12.0),
    )


def test_extraction_with_phase_flip_and_inversion() -> None:
    image = torch.randn(128, 128, generator=torch.Generator().manual_seed(2))
    ctf = CtfParameters(
        defocus_u_angstrom=12_000.0,
        defocus_v_angstrom=12_000.0,
        defocus_angle_deg=0.0,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.1,
    )
    xy = torch.tensor([[64.0, 64.0]])
    plain = extract_particles(image, xy, box_px=32, normalise=False)
    flipped = extract_particles(
        image,
        xy,
        box_px=32,
        normalise=False,
        ctf=ctf,
        pixel_size_angstrom=1.0,
        invert_contrast=True,
    )
    torch.testing.assert_close(flipped, -phase_flip(plain, pixel_size_angstrom=1.0, **ctf.kwargs()))
    with pytest.raises(ValueError, match="pixel_size_angstrom"):
        extract_particles(image, xy, box_px=32, ctf=ctf)


def test_match_picks_on_hand_made_cases() -> None:
    truth = np.array([[10.0, 10.0], [50.0, 50.0], [90.0, 10.0]])
    picks = np.array([[12.0, 10.0], [50.0, 57.0], [200.0, 200.0], [11.0, 11.0]])
    match = match_picks(picks, truth, radius_px=5.0)
    # (12,10) and (11,11) both near truth 0: one match; (50,57) is 7 px away: none
    assert match.n_true_positive == 1
    assert match.precision == pytest.approx(1 / 4) and match.recall == pytest.approx(1 / 3)
    assert match.f1 == pytest.approx(2 * (1 / 4) * (1 / 3) / (1 / 4 + 1 / 3))
    assert match.pairs.tolist() == [[3, 0]]  # the closer of the two
    # the assignment maximises the count: a greedy nearest-first match would get only one
    chain = match_picks(
        np.array([[0.0, 0.0], [4.0, 0.0]]), np.array([[2.0, 0.0], [6.5, 0.0]]), radius_px=3.0
    )
    assert chain.n_true_positive == 2
    empty = match_picks(np.zeros((0, 2)), truth, radius_px=5.0)
    assert (empty.precision, empty.recall, empty.f1) == (0.0, 0.0, 0.0)


def test_picks_validate_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        Picks(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="h, w"):
        pick_blobs(torch.zeros(3, 64, 64), pixel_size_angstrom=1.0, particle_diameter_angstrom=20.0)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/picking is absent")
def test_cryoppp_expert_masks_are_recovered() -> None:
    import imagecodecs

    from causalscope.daemon.bench.picking import cryoppp_truth

    folder = SHARED / "cryoppp_10028"
    name = "311_10028.png"
    image = imagecodecs.png_decode((folder / "images" / name).read_bytes()).astype(np.float32)
    truth = cryoppp_truth(imagecodecs.png_decode((folder / "labels" / name).read_bytes()))
    assert 80 <= len(truth) <= 110
    picks = pick_blobs(
        torch.from_numpy(image), pixel_size_angstrom=1.0, particle_diameter_angstrom=57.0
    )
    match = match_picks(picks.xy_px, truth, radius_px=57.0 / 4)
    assert match.precision >= 0.7 and match.recall >= 0.8, match


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/picking is absent")
def test_magellon_micrograph_gives_about_the_documented_count() -> None:
    import mrcfile

    with mrcfile.open(SHARED / "magellon_apoferritin_ds8.mrc") as mrc:
        image = torch.from_numpy(np.asarray(mrc.data, dtype=np.float32).copy())
    picks = pick_blobs(image, pixel_size_angstrom=6.3, particle_diameter_angstrom=120.0)
    # the data README: "about 100 particles and one ice contaminant"
    assert 50 <= len(picks) <= 150


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/picking is absent")
def test_magellon_topaz_picks_do_not_land_on_this_micrograph() -> None:
    import json

    import mrcfile

    from causalscope.daemon.bench.picking import topaz_convention_check

    with mrcfile.open(SHARED / "magellon_apoferritin_ds8.mrc") as mrc:
        image = np.asarray(mrc.data, dtype=np.float32).copy()
    records = json.loads((SHARED / "magellon_apoferritin_ds8_topaz_picks.json").read_text())
    topaz = np.array([[p["x"], p["y"]] for p in records], dtype=np.float64)
    # the file's range fits the 4096^2 original the MRC header names (8x this image)
    assert topaz.max() < 4096 and topaz.max() > 3 * 512 and np.all(topaz % 8 == 0)
    picks = pick_blobs(
        torch.from_numpy(image), pixel_size_angstrom=6.3, particle_diameter_angstrom=120.0
    )
    check = topaz_convention_check(
        image, topaz / 8.0, picks.xy_px.numpy(), apix=6.3, diameter=120.0
    )
    assert check["mean_z_ours"] > 2.0
    # under no flip or transpose do they sit on blobs: within 2 standard errors of random
    # positions or below, far under our picks' response
    conventions = [key for key in check if not key.startswith("mean_z")]
    assert len(conventions) == 8
    for name in conventions:
        assert check[name]["sd_above_random"] < 2.0, (name, check[name])
        assert check[name]["mean_z"] < 0.5, (name, check[name])
