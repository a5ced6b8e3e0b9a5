"""The learned picker: PU risk by hand, canonical preprocessing, NMS on touching particles,
disc-centre recovery from masks, and training on simulated micrographs against their truth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from causalscope.models.picking import match_picks
from causalscope.models.picking.discs import disc_centres, disc_iou, draw_discs
from causalscope.models.picking.learned import (
    LabelledMicrograph,
    PickerNet,
    best_f1,
    calibrate_picker,
    canonical_micrograph,
    class_prior,
    fit_platt,
    load_picker,
    nnpu_loss,
    pick_learned,
    positive_map,
    prepare_micrograph,
    save_picker,
    train_picker,
    training_rows,
)
from causalscope.models.picking.learned.calibration import (
    MAX_COUNT_RATIO,
    MIN_COUNT_Z,
    MIN_PEAKS_TO_FIT,
    micrograph_cut,
    mirrored_cut,
)
from causalscope.models.picking.learned.inference import peaks_from_probability, refined
from causalscope.models.picking.learned.training import binned_copies, noisier


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_nnpu_loss_matches_the_hand_computed_risk() -> None:
    logits = torch.tensor([[0.0, 1.0], [-1.0, 2.0]])
    positive = torch.tensor([[True, False], [False, False]])
    prior = 0.25
    objective, risk = nnpu_loss(logits, positive, prior)
    positive_risk = prior * _softplus(-0.0)
    unlabelled = (_softplus(0.0) + _softplus(1.0) + _softplus(-1.0) + _softplus(2.0)) / 4
    negative_risk = unlabelled - prior * _softplus(0.0)
    assert negative_risk > 0
    assert float(objective) == pytest.approx(positive_risk + negative_risk, rel=1e-6)
    assert float(risk) == pytest.approx(positive_risk + negative_risk, rel=1e-6)


def test_nnpu_loss_turns_a_negative_risk_into_its_correction() -> None:
    # positives scored as negatives and unlabelled scored as negatives: E_U - pi E_P < 0
    logits = torch.tensor([5.0, -9.0, -9.0, -9.0])
    positive = torch.tensor([True, False, False, False])
    objective, risk = nnpu_loss(logits, positive, 0.5)
    negative_risk = (_softplus(5.0) + 3 * _softplus(-9.0)) / 4 - 0.5 * _softplus(5.0)
    assert negative_risk < 0
    assert float(objective) == pytest.approx(-negative_risk, rel=1e-6)
    assert float(risk) == pytest.approx(0.5 * _softplus(-5.0), rel=1e-6)


def test_platt_fit_recovers_a_known_logistic_law() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 2.0, 20_000)
    outcome = rng.random(20_000) < 1.0 / (1.0 + np.exp(-(1.7 * logits - 0.8)))
    slope, offset = fit_platt(logits, outcome)
    assert slope == pytest.approx(1.7, abs=0.1) and offset == pytest.approx(-0.8, abs=0.1)


def test_best_f1_by_hand() -> None:
    # cuts at 0.9, 0.8, 0.3 keep 1, 2, 3 peaks with 1, 2, 2 hits of 3 particles:
    # F1 = 2/4, 4/5, 4/6
    assert best_f1(np.array([0.3, 0.9, 0.8]), np.array([0, 1, 1]), 3) == pytest.approx(0.8)
    # tied peaks are kept or dropped together: keeping the four at 0.5 gives F1 4/7 < 2/3,
    # though the first of them alone (a hit) would give 1
    peaks = np.array([0.9, 0.5, 0.5, 0.5, 0.5])
    assert best_f1(peaks, np.array([1, 1, 0, 0, 0]), 2) == pytest.approx(2.0 / 3.0)


def test_half_the_best_f1_is_where_calibrated_scores_reach_it() -> None:
    """Lipton et al. (2014): for calibrated scores the F1-optimal cut is half the best F1. The
    F1 curve is flat there, so the place of its maximum is noisy (within 0.02 even among 200,000
    peaks) while the F1 at half the best F1 is the best to 0.002."""
    rng = np.random.default_rng(2)
    for a, b in ((0.5, 2.0), (0.3, 0.6), (1.0, 4.0), (2.0, 2.0)):
        p = rng.beta(a, b, 200_000)
        hit = rng.random(p.size) < p  # calibrated: a peak of score p is a particle with chance p
        n_truth = int(hit.sum())
        order = np.argsort(-p)
        f1 = 2.0 * np.cumsum(hit[order]) / (np.arange(1, p.size + 1) + n_truth)
        best = best_f1(p, hit.astype(float), n_truth)
        assert best == pytest.approx(float(f1.max()))
        assert float(p[order][int(np.argmax(f1))]) == pytest.approx(0.5 * best, abs=0.02)
        assert _f1_at(0.5 * best, p, hit) == pytest.approx(best, abs=0.002)


def _f1_at(cut: float, logits: np.ndarray, particle: np.ndarray) -> float:
    kept = logits >= cut
    return 2.0 * float(particle[kept].sum()) / (int(kept.sum()) + int(particle.sum()))


def _contrasts(rng: np.random.Generator, n_particles: int, n_background: int) -> np.ndarray:
    # local means at the peaks: particles darker than the ice, background either side of it
    return np.r_[rng.normal(-0.3, 0.12, n_particles), rng.normal(0.0, 0.15, n_background)]


def test_mirrored_cut_counts_the_particles_by_the_brighter_background_peaks() -> None:
    rng = np.random.default_rng(5)
    # 500 particles trailing far into 700 background peaks, as on a data set the model never
    # saw: no Gaussian mixture of the logits alone finds where they end
    logits = np.r_[rng.normal(-3.0, 3.0, 500), rng.normal(-12.0, 4.0, 700)]
    particle = np.r_[np.ones(500), np.zeros(700)]
    contrast = torch.from_numpy(_contrasts(rng, 500, 700))
    cut = mirrored_cut(torch.from_numpy(logits), contrast)
    assert cut is not None
    oracle = max(_f1_at(c, logits, particle) for c in logits)
    assert _f1_at(cut, logits, particle) >= oracle - 0.02, (cut, oracle)
    # half of the peaks above it are particles by the count (twice the brighter ones are not)
    kept = logits >= cut
    estimate = kept.sum() - 2 * (contrast.numpy()[kept] > 0).sum()
    assert abs(estimate - particle[kept].sum()) <= 0.1 * particle[kept].sum()
    # no particle: all brighter than the ice, or either side of it by chance (five draws)
    background = torch.from_numpy(rng.normal(-8.0, 4.0, 400))
    assert mirrored_cut(background, torch.from_numpy(rng.normal(0.0, 0.15, 400)).abs()) is None
    for _ in range(5):
        assert mirrored_cut(background, torch.from_numpy(rng.normal(0.0, 0.15, 400))) is None
    # as beside aggregates: 16 particles on top, 60 peaks on a darker haze below them, then 180
    # background peaks on the clean ice, which lies above the image's zero; above the haze's
    # last peak 76 would count as particles, but 180 of 256 peaks are brighter, more than the
    # premise allows (at most half), so nothing is counted
    logits = np.r_[rng.normal(6.0, 1.0, 16), np.linspace(-2.0, -10.0, 60), rng.normal(-14, 1, 180)]
    haze = np.r_[rng.normal(-0.3, 0.1, 16), rng.normal(-0.1, 0.02, 60), rng.normal(0.3, 0.05, 180)]
    above = logits >= -10.0
    assert above.sum() - 2 * (haze[above] > 0).sum() == 76
    assert (haze > 0).sum() == 180 > 128 + MIN_COUNT_Z * np.sqrt(256) / 2
    assert mirrored_cut(torch.from_numpy(logits), torch.from_numpy(haze)) is None
    with pytest.raises(ValueError, match="3 peak logits but 2"):
        mirrored_cut(torch.zeros(3), torch.zeros(2))


def test_micrograph_cut_drops_to_the_peaks_own_f1_cut_when_the_model_is_under_confident() -> None:
    # a data set the model never saw: its 500 particles peak far below the calibrated cut (0),
    # which keeps 2 % of them; 700 background peaks spread well below
    rng = np.random.default_rng(3)
    particle_logits = rng.normal(-3.0, 1.5, 500)
    logits = np.concatenate([particle_logits, rng.normal(-12.0, 4.0, 700)])
    particle = np.r_[np.ones(500), np.zeros(700)]
    contrast = torch.from_numpy(_contrasts(rng, 500, 700))
    oracle = max(_f1_at(c, logits, particle) for c in logits)
    peaks = torch.from_numpy(logits)
    cut = micrograph_cut(peaks, 0.0, lambda: (peaks, contrast))
    assert cut < -1.0
    assert _f1_at(0.0, logits, particle) < 0.1
    assert _f1_at(cut, logits, particle) >= oracle - 0.03, (cut, oracle)
    # 150 more peaks on dense contamination, darker than the ice as particles are, scored
    # below most particles: counted, they pass for particles and the cut drops too far; left
    # out of the count (an area not to pick), the cut is the clean micrograph's
    dirty = np.r_[logits, rng.normal(-8.0, 2.0, 150)]
    dirty_contrast = torch.cat([contrast, torch.from_numpy(rng.normal(-0.5, 0.2, 150))])
    with_them = micrograph_cut(
        torch.from_numpy(dirty), 0.0, lambda: (torch.from_numpy(dirty), dirty_contrast)
    )
    without = micrograph_cut(torch.from_numpy(dirty), 0.0, lambda: (peaks, contrast))
    assert without == cut and with_them < cut - 1.0, (with_them, without, cut)


def test_micrograph_cut_keeps_the_calibrated_cut_where_it_agrees_or_cannot_judge() -> None:
    rng = np.random.default_rng(4)

    def cut(logits: np.ndarray, calibrated: float, contrast: np.ndarray | None = None) -> float:
        dark = rng.normal(-0.3, 0.12, len(logits)) if contrast is None else contrast
        peaks = torch.from_numpy(logits)
        return micrograph_cut(peaks, calibrated, lambda: (peaks, torch.from_numpy(dark)))

    # the calibrated cut (-1) keeps all 100 particles, more than the mixture expects
    agreeing = np.concatenate([rng.normal(1.0, 0.7, 100), rng.normal(-12.0, 5.0, 400)])
    assert cut(agreeing, -1.0) == -1.0
    # one broad spread of peaks (a sparse micrograph): no second group to count
    assert cut(rng.normal(-8.0, 6.0, 1000), 2.0) == 2.0
    # beside an ice ball: its peaks form a low group, the clean ice's peaks most of the rest
    # (measured on the simulator: upper group 93-96 % of the peaks, mean -16, sd 9-13)
    ice_ball = np.concatenate([rng.normal(-60.0, 8.0, 25), rng.normal(-16.0, 10.0, 350)])
    assert cut(ice_ball, -0.1) == -0.1
    # ice without particles whose background peaks split in two, far below the calibrated cut
    # (simulated: groups at -14 and -5, the cut at -0.1)
    ice = np.concatenate([rng.normal(-14.0, 3.0, 340), rng.normal(-5.0, 1.5, 130)])
    assert cut(ice, -0.1) == -0.1
    # near a lower cut the mixture counts, and the peaks' contrast decides: as many brighter
    # than the ice as darker, so no particle; the upper group darker, so particles
    assert cut(ice, -3.0, rng.normal(0.0, 0.15, len(ice))) == -3.0
    assert cut(ice, -3.0, _contrasts(rng, 130, 340)[::-1].copy()) < -3.0
    # every peak darker: 470 counted where the mixture expects 130, more than MAX_COUNT_RATIO
    # times (background peaks on darker ice), so neither count is trusted
    assert cut(ice, -3.0) == -3.0 and 470 > MAX_COUNT_RATIO * 130
    # too few peaks to fit
    few = np.r_[rng.normal(-3.0, 0.5, 6), rng.normal(-15.0, 1.0, MIN_PEAKS_TO_FIT - 7)]
    assert cut(few, 0.0) == 0.0


def test_noisier_crops_keep_unit_spread_at_the_contrast_the_noise_leaves() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(512, 512, generator=generator)
    out = noisier(image, 2.0, generator)
    assert float(out.std()) == pytest.approx(1.0, abs=0.02)
    # the original signal's share: 1 / sqrt(1 + sigma^2)
    correlation = float(torch.corrcoef(torch.stack([image.flatten(), out.flatten()]))[0, 1])
    assert correlation == pytest.approx(1.0 / math.sqrt(5.0), abs=0.01)


def test_binned_copies_move_picks_with_the_pixels() -> None:
    image = torch.zeros(101, 130)
    image[40:48, 64:72] = 1.0  # an 8 px square centred at x = 67.5, y = 43.5
    xy = torch.tensor([[67.5, 43.5], [129.0, 10.0]])
    copies = binned_copies(image, xy, 56.0)
    assert [c[0] for c in copies] == [2, 4]  # 56 / 8 = 7 px is below the 12 px floor
    for factor, small, moved, diameter in copies:
        assert diameter == 56.0 / factor
        assert small.shape == (101 // factor, 130 // factor)
        ys, xs = torch.nonzero(small > 0, as_tuple=True)
        weights = small[ys, xs]
        centre = [
            float((xs * weights).sum() / weights.sum()),
            float((ys * weights).sum() / weights.sum()),
        ]
        assert moved[0].tolist() == pytest.approx(centre, abs=1e-9)
        # x = 129 lies in the last, dropped column when binned by 2 and by 4
        assert len(moved) == 1
    assert binned_copies(image, xy, 20.0) == []


def test_refined_peaks_sit_at_the_centre_of_the_marked_disc() -> None:
    # the network marks a disc of about 2 map pixels' radius around a centre off the grid
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(50.0), indexing="ij")
    centres = [(10.3, 20.6), (25.8, 7.45)]
    probability = torch.zeros(40, 50)
    for cy, cx in centres:
        probability = torch.maximum(
            probability, torch.exp(-0.5 * ((ys - cy) ** 2 + (xs - cx) ** 2) / 1.5**2)
        )
    peaks = torch.tensor([[10, 21], [26, 7]])
    out = refined(probability, peaks)
    for (cy, cx), (y, x), (py, px) in zip(centres, out.tolist(), peaks.tolist(), strict=True):
        error, grid_error = math.hypot(y - cy, x - cx), math.hypot(py - cy, px - cx)
        # the window's edge pulls the centroid a little towards the peak pixel
        assert error < 0.2 and error < 0.5 * grid_error, (y, x, cy, cx)


def test_class_prior_scales_the_labelled_share_to_the_expected_count() -> None:
    assert class_prior(40, 10, 90, 10_000) == pytest.approx(90 / 10 * 40 / 10_000)
    with pytest.raises(ValueError, match="fewer than labelled"):
        class_prior(5, 10, 90, 10_000)


def test_positive_map_marks_the_output_pixels_near_a_pick() -> None:
    # output pixel (i, j) is centred at canonical (2 j + 0.5, 2 i + 0.5)
    found = positive_map(torch.tensor([[10.5, 20.5]]), (20, 20), stride=2, radius_px=2.0)
    assert found.sum() == 5  # the centre pixel and its four neighbours at distance 2
    assert found[10, 5] and found[9, 5] and found[11, 5] and found[10, 4] and found[10, 6]


def test_canonical_image_is_invariant_to_grey_level_encoding() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 7.0, (300, 280)).astype(np.float32)
    png_like = (image - 60.0) * 3.1  # an affine re-encoding, as an 8-bit export makes
    a, scale = canonical_micrograph(torch.from_numpy(image), diameter_px=48.0)
    b, _ = canonical_micrograph(torch.from_numpy(png_like), diameter_px=48.0)
    assert a.shape == (150, 140) and scale == pytest.approx(0.5)
    torch.testing.assert_close(a, b, atol=1e-3, rtol=0)
    assert float(a.median()) == pytest.approx(0.0, abs=0.05)


def test_nms_separates_touching_particles_and_maps_back_to_input_pixels() -> None:
    # a probability map (stride 2 on a grid of 24 px diameters) with two peaks 0.8 d apart
    diameter_px, scale = 60.0, 24.0 / 60.0
    centres = np.array([[200.0, 210.0], [200.0 + 0.8 * diameter_px, 210.0]])
    ys, xs = torch.meshgrid(torch.arange(100.0), torch.arange(100.0), indexing="ij")
    probability = torch.zeros(100, 100)
    for x, y in centres:
        # map coordinates of input (x, y): ((x + 0.5) * scale - 0.5 - 0.5) / 2
        mx, my = ((x + 0.5) * scale - 1.0) / 2, ((y + 0.5) * scale - 1.0) / 2
        probability += 0.9 * torch.exp(-((xs - mx) ** 2 + (ys - my) ** 2) / (2 * 1.5**2))
    picks = peaks_from_probability(probability, scale=scale, diameter_px=diameter_px, threshold=0.5)
    assert len(picks) == 2
    found = picks.xy_px.numpy()[np.argsort(picks.xy_px[:, 0].numpy())]
    np.testing.assert_allclose(found, centres, atol=0.5 / scale * 2)
    # with a minimum distance of one diameter the clump gives one pick
    assert (
        len(
            peaks_from_probability(
                probability,
                scale=scale,
                diameter_px=diameter_px,
                threshold=0.5,
                min_distance_diameters=1.0,
            )
        )
        == 1
    )


def test_disc_centres_recover_overlapping_discs() -> None:
    truth = np.array([[40.0, 40.0], [40.0 + 0.8 * 20, 40.0], [48.0, 40 + 0.75 * 20], [90, 85]])
    mask = draw_discs((128, 128), truth, radius_px=10.0)
    found = disc_centres(mask, radius_px=10.0)
    assert len(found) == len(truth)
    match = match_picks(found, truth, radius_px=1.5)
    assert match.n_true_positive == len(truth)
    assert disc_iou(mask, found, radius_px=10.0) > 0.95
    # the centroid of the merged component would be one centre for three particles
    assert disc_iou(mask, truth[[3]], radius_px=10.0) < 0.3


@pytest.fixture(scope="module")
def simulated() -> list[tuple[np.ndarray, np.ndarray, float]]:
    from causalscope.daemon.bench._common import still_micrograph

    out = []
    for seed in range(4):
        image, truth = still_micrograph(
            512, particles_per_1024=40, seed=70 + seed, dose_e_per_a2=40.0, ice_thickness_nm=30.0
        )
        out.append((image, np.asarray(truth["particles"]), 2 * truth["particle_radius_angstrom"]))
    return out


def test_training_on_simulated_micrographs_recovers_held_out_particles(
    simulated: list[tuple[np.ndarray, np.ndarray, float]],
) -> None:
    torch.manual_seed(0)
    data = [
        prepare_micrograph(torch.from_numpy(im), torch.from_numpy(xy), diameter_px=d)
        for im, xy, d in simulated[:3]
    ]
    model = PickerNet()
    report = train_picker(model, data, steps=_STEPS, crop_px=64, batch=4, lr=4e-3, seed=0)
    assert report.final_risk < report.first_risk
    slope, _, n_peaks = calibrate_picker(model, [(d.image, d.xy_canonical) for d in data])
    assert slope > 0 and n_peaks >= sum(d.n_labelled for d in data) // 2
    assert 0.0 < model.threshold() < 1.0
    image, truth, diameter = simulated[3]
    picks = pick_learned(torch.from_numpy(image), model, diameter_px=diameter)
    # truth within half a diameter of the border is not pickable by design
    inner = np.all((truth > diameter / 2) & (truth < 511 - diameter / 2), axis=1)
    match = match_picks(picks.xy_px, truth[inner], radius_px=0.5 * diameter)
    assert match.f1 >= 0.8, (match.precision, match.recall)
    assert bool(((picks.scores >= 0.5) & (picks.scores <= 1.0)).all())
    # the weights round-trip to the same picks
    again = pick_learned(
        torch.from_numpy(image), load_picker(save_picker(model)), diameter_px=diameter
    )
    torch.testing.assert_close(again.xy_px, picks.xy_px)


_STEPS = 200


def test_held_out_rows_never_reach_training() -> None:
    # NaN in the held-out rows would make any loss that saw them NaN
    image = torch.randn(128, 128)
    positive = torch.zeros(64, 64, dtype=torch.bool)
    positive[10, 10] = positive[20, 30] = True
    item = LabelledMicrograph(image, positive, 0.01, 2, torch.tensor([[20.5, 20.5], [60.5, 40.5]]))
    assert training_rows(item, 0.25) == 48
    image[2 * 48 :] = float("nan")
    report = train_picker(PickerNet(), [item], steps=5, crop_px=64, batch=2, holdout_fraction=0.25)
    assert all(math.isfinite(r) for r in report.risks)
    with pytest.raises(ValueError, match="held-out"):
        # 112 canonical rows fit the image (128) but not its 96 training rows
        train_picker(PickerNet(), [item], steps=1, crop_px=112, holdout_fraction=0.25)


def test_pick_learned_rejects_bad_diameters() -> None:
    image = torch.zeros(64, 64)
    model = PickerNet()
    with pytest.raises(ValueError, match="got 3"):
        pick_learned(image, model, diameter_px=3.0)
    with pytest.raises(ValueError, match="got 65"):
        pick_learned(image, model, diameter_px=65.0)
    assert len(draw_discs((4, 4), np.zeros((0, 2)), radius_px=1.0).nonzero()[0]) == 0


SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "picking"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/picking is absent")
def test_shipped_picker_on_a_real_micrograph_it_never_saw() -> None:
    import imagecodecs

    from causalscope.models.picking.learned import default_picker

    folder = SHARED / "cryoppp_10028"
    image = imagecodecs.png_decode((folder / "images" / "311_10028.png").read_bytes())
    mask = imagecodecs.png_decode((folder / "labels" / "311_10028.png").read_bytes()) > 127
    truth = disc_centres(mask, radius_px=28.0)
    assert disc_iou(mask, truth, radius_px=28.0) > 0.95
    picks = pick_learned(
        torch.from_numpy(image.astype(np.float32)), default_picker(), diameter_px=56.0
    )
    match = match_picks(picks.xy_px, truth, radius_px=28.0)
    # bench picking measured 0.77 / 0.98 / 0.86 here; the blob picker 0.86
    assert match.f1 >= 0.8 and match.recall >= 0.9, match


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/picking is absent")
def test_shipped_picker_counts_the_particles_of_a_crowded_data_set_it_never_saw() -> None:
    # EMPIAR-10059 (TRPV1, 36 px, about 590 particles packed on a 1024^2 micrograph): the
    # network, never trained on it, scores most of its particles far below its calibrated
    # cut; the cut drops to where the peaks darker than the ice outnumber the background
    from causalscope.daemon.bench._cryoppp import load_cryoppp
    from causalscope.models.picking.learned import default_picker

    (m,) = load_cryoppp(SHARED / "cryoppp_10059_train", ["stack_0003_2x_dfpt_10059.png"])
    model = default_picker()
    image = torch.from_numpy(m.image)
    picks = pick_learned(image, model, diameter_px=m.diameter_px)
    calibrated = pick_learned(image, model, diameter_px=m.diameter_px, threshold=model.threshold())
    match = match_picks(picks.xy_px, m.truth_xy_px, radius_px=m.diameter_px / 2)
    alone = match_picks(calibrated.xy_px, m.truth_xy_px, radius_px=m.diameter_px / 2)
    # measured: F1 0.76 (P 0.73, R 0.79) against 0.35 at the calibrated cut alone and 0.65
    # where the logits' own mixture placed the cut
    assert alone.f1 < 0.45 and match.f1 >= 0.72 and match.recall >= 0.7, (alone, match)
    assert picks.threshold is not None and picks.threshold < model.threshold()


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/picking is absent")
def test_shipped_picker_on_a_binned_micrograph_of_another_data_set() -> None:
    # a real apoferritin micrograph binned to 6.3 A/px: particles (dark shells, 120 A) span
    # 19 px, so the canonical grid upsamples it; the data set's README counts about 100
    import mrcfile

    from causalscope.models.picking.learned import default_picker
    from causalscope.models.picking.learned.preprocess import gaussian_blur

    with mrcfile.open(SHARED / "magellon_apoferritin_ds8.mrc") as mrc:
        image = torch.from_numpy(np.asarray(mrc.data, dtype=np.float32).copy())
    picks = pick_learned(image, default_picker(), diameter_px=120.0 / 6.3)
    # a model trained without binned copies picked 629 peaks here, as dark as random points
    assert 70 <= len(picks) <= 150, len(picks)
    flat = image - gaussian_blur(image, 40.0)
    z = (flat - flat.median()) / ((flat - flat.median()).abs().median() * 1.4826)
    yy, xx = torch.meshgrid(torch.arange(-12, 13), torch.arange(-12, 13), indexing="ij")
    shell = ((yy**2 + xx**2) >= 36) & ((yy**2 + xx**2) <= 100)

    def shell_z(xy: torch.Tensor) -> float:
        values = [
            float(z[y - 12 : y + 13, x - 12 : x + 13][shell].mean())
            for x, y in xy.round().long().tolist()
            if 12 <= x < image.shape[1] - 12 and 12 <= y < image.shape[0] - 12
        ]
        return sum(values) / len(values)

    random_xy = torch.rand(300, 2, generator=torch.Generator().manual_seed(0)) * 487 + 12
    # measured: picks -0.43 robust z, random points 0.01
    assert shell_z(picks.xy_px) < -0.3
    assert abs(shell_z(random_xy)) < 0.1


def test_a_smaller_mask_is_brought_to_the_micrographs_pixels_without_a_stretch() -> None:
    """A 1024 px disc mask averaged down to 256 px (each mask pixel covers 4 x 4 micrograph
    pixels) gives back its (whole-pixel) centres exactly, near the edges too; matching the
    corner pixels' centres instead moves them by a pixel."""
    from scipy import ndimage

    from causalscope.models.picking.discs import mask_at

    truth = np.array([[30.0, 30.0], [512.0, 301.0], [994.0, 40.0], [993.0, 992.0], [40.0, 990.0]])
    full = draw_discs((1024, 1024), truth, radius_px=18.0).astype(np.float64)
    small = 255.0 * full.reshape(256, 4, 256, 4).mean(axis=(1, 3))
    found = disc_centres(mask_at(small, (1024, 1024)) > 127, radius_px=18.0)
    match = match_picks(found, truth, radius_px=5.0)
    assert match.n_true_positive == len(truth) == len(found)
    error = np.abs(found[match.pairs[:, 0]] - truth[match.pairs[:, 1]])
    assert error.max() < 0.3, error
    stretched = ndimage.zoom(small.astype(np.float32), 4, order=1)  # corner pixels matched
    old = disc_centres(stretched > 127, radius_px=18.0)
    old_match = match_picks(old, truth, radius_px=5.0)
    old_error = np.abs(old[old_match.pairs[:, 0]] - truth[old_match.pairs[:, 1]])
    assert old_error.max() >= 1.0, old_error
