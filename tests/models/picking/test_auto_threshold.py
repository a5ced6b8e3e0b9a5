"""``threshold="auto"``: split only bimodal peak scores, else a noise floor (simulated truth);
the learned picker's automatic cut holds on a sparse micrograph whose background peaks lie on
darker ice."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from causalscope.daemon.bench._common import still_micrograph
from causalscope.models.picking import PickMatch, Picks, match_picks, pick_blobs
from causalscope.models.picking._threshold import (
    MIN_PEAKS_TO_SPLIT,
    auto_threshold,
    bimodality,
    otsu_threshold,
)
from causalscope.models.picking.blob import _dog


def _pick(size: int, per_1024: int, seed: int, dose: float) -> tuple[Picks, Picks, Any]:
    """The new ``"auto"`` picks, the old rule's (Otsu, never below 0) and the truth."""
    image, truth = still_micrograph(
        size, particles_per_1024=per_1024, seed=seed, dose_e_per_a2=dose, ice_thickness_nm=30.0
    )
    micrograph = torch.from_numpy(image)
    diameter = 2.0 * truth["particle_radius_angstrom"]
    kwargs = {"pixel_size_angstrom": 1.0, "particle_diameter_angstrom": diameter}
    auto = pick_blobs(micrograph, **kwargs)
    peaks = pick_blobs(micrograph, threshold=-2.0, **kwargs)
    old = peaks.above(max(0.0, otsu_threshold(peaks.scores)))
    return auto, old, truth


def _match(picks: Picks, truth: Any) -> PickMatch:
    centres = np.asarray(truth["particles"]).reshape(-1, 2)
    return match_picks(picks.xy_px, centres, radius_px=0.5 * truth["particle_radius_angstrom"])


def test_crowded_micrograph_keeps_every_particle() -> None:
    # 80 per 1024^2 asked, 44 fit a diameter apart: every local maximum is a particle
    auto, old, truth = _pick(1024, 80, seed=1, dose=40.0)
    new, before = _match(auto, truth), _match(old, truth)
    assert new.recall >= 0.9 and new.precision >= 0.95, new
    assert before.recall < 0.5, before  # Otsu cut the unimodal set in two


def test_sparse_particles_among_many_background_peaks() -> None:
    # 12 particles and ~100 background peaks on 2048^2 at 12 e/A^2
    auto, old, truth = _pick(2048, 3, seed=0, dose=12.0)
    new, before = _match(auto, truth), _match(old, truth)
    assert new.precision >= 0.9 and new.recall >= 0.9, new
    assert new.precision >= before.precision - 1e-9, (new, before)


def test_empty_micrograph_gives_few_picks() -> None:
    auto, old, _ = _pick(1024, 0, seed=0, dose=40.0)
    assert len(auto) <= 5, auto.scores
    assert len(auto) < len(old)


def test_noise_sigma_matches_the_response_on_white_noise() -> None:
    image = 100.0 + 10.0 * torch.randn(1024, 1024, generator=torch.Generator().manual_seed(3))
    response, _, sigma = _dog(
        image, pixel_size_angstrom=1.0, particle_diameter_angstrom=120.0, dark_particles=True
    )
    mad = float((response - response.median()).abs().median()) * 1.4826
    assert sigma == pytest.approx(mad, rel=0.1)


def _normal(n: int, mean: float, sigma: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return mean + sigma * torch.randn(n, generator=generator, dtype=torch.float64)


def test_bimodality_on_known_mixtures() -> None:
    two = torch.cat([_normal(200, 0.0, 1.0, 0), _normal(60, 6.0, 1.0, 1)])
    fit = bimodality(two)
    assert fit.bimodal
    assert fit.means == pytest.approx((0.0, 6.0), abs=0.3)
    assert fit.weights[1] == pytest.approx(60 / 260, abs=0.03)
    # equal widths: the boundary is near the midpoint, moved towards the smaller component
    assert 3.0 < fit.boundary() < 4.0
    assert 3.0 < auto_threshold(two, noise_floor=2.5) < 4.0
    # one Gaussian, and a skewed single mode (Gumbel, like maxima of noise), are not split
    assert not bimodality(_normal(300, 1.0, 1.0, 2)).bimodal
    uniform = torch.rand(300, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-9, 1 - 1e-9)))
    assert not bimodality(gumbel).bimodal
    # a lone outlier is not a mode
    assert not bimodality(torch.cat([_normal(40, 1.5, 0.4, 5), torch.tensor([-1.2])])).bimodal


def test_auto_threshold_falls_back_to_the_noise_floor() -> None:
    unimodal = _normal(50, 4.0, 1.0, 6)
    assert auto_threshold(unimodal, noise_floor=2.0) == 2.0
    few = torch.tensor([0.0, 0.1, 9.0, 9.1, 9.2])
    assert few.numel() < MIN_PEAKS_TO_SPLIT and auto_threshold(few, noise_floor=1.0) == 1.0
    # two groups both above the noise floor are two kinds of particle: no split
    two_kinds = torch.cat([_normal(100, 4.0, 0.5, 7), _normal(100, 9.0, 0.5, 8)])
    assert bimodality(two_kinds).bimodal
    assert auto_threshold(two_kinds, noise_floor=2.0) == 2.0
    with pytest.raises(ValueError, match="at least 4"):
        bimodality(torch.tensor([1.0, 2.0]))


@pytest.mark.slow
def test_the_learned_cut_stays_where_background_peaks_pass_for_particles() -> None:
    # clean, 1024^2 at 2 A/px, 12 e/A^2, 44 nm of ice, seed 11: 24 particles; the peak
    # mixture expects 41, the calibrated cut keeps 27, and the peaks' contrast counted 137
    # (most background peaks here lie on darker ice): the cut dropped to p 0.0002 and kept 139
    # picks (F1 0.29); with the counts 3.3 times apart the calibrated cut stands (F1 0.94)
    from causalscope.models.picking.learned import default_picker, pick_learned
    from causalscope.models.simulate.triage_scenes import simulate_triage_micrograph

    scene = simulate_triage_micrograph(
        "usable", size_px=1024, pixel_size_angstrom=2.0, dose_e_per_a2=12.0, seed=11
    )
    model = default_picker()
    picks = pick_learned(torch.from_numpy(scene.image.astype(np.float32)), model, diameter_px=60.0)
    truth = np.asarray(scene.truth["particles"], dtype=np.float64).reshape(-1, 2)
    truth = truth[np.all((truth > 30) & (truth < 993), axis=1)]
    assert picks.threshold == pytest.approx(model.threshold())
    assert match_picks(picks.xy_px, truth, radius_px=15.0).f1 >= 0.9
