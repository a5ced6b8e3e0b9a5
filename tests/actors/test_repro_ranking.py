"""Delta-Repro against the simulator's truth: of a known easy population (40 e/A^2 in 25 nm of
ice) and a known hard one (4 e/A^2 in 140 nm), the hard exposures' CTF estimates are the worse
ones, and 1 - DeltaRepro ranks the exposures by their true defocus error.

Each movie is simulated without drift (no motion correction needed: the halves are the even
and odd frames' sums), the whole exposure's CTF is fitted as the CTF stage does, and the
Delta-Repro stage refits the halves (picking off: the defocus and the fit resolution are what
is ranked against the truth).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from causalscope.actors._repro import ReproStage
from causalscope.config import load_settings
from causalscope.models.ctf_estimation import estimate_ctf
from causalscope.models.optics import Optics
from causalscope.models.records import CtfRecord
from causalscope.models.simulate.exposure import ExposureParameters, simulate_exposure
from causalscope.models.simulate.specimen import phantom_specimen

SIZE = 640
#: (dose e/A^2, ice nm) of the easy and the hard exposures
EASY, HARD = (40.0, 25.0), (4.0, 140.0)
#: the least Spearman correlation of 1 - DeltaRepro with the true defocus error
MIN_SPEARMAN = 0.5


def _exposure(index: int, dose: float, ice: float, settings, stage, optics, specimen):
    defocus = 15_000.0 + 300.0 * index
    params = ExposureParameters(
        size_px=SIZE,
        n_frames=10,
        dose_e_per_a2=dose,
        ice_thickness_nm=ice,
        defocus_u_angstrom=defocus + 200.0,
        defocus_v_angstrom=defocus - 200.0,
        drift_total_px=0.0,
        drift_jitter_px=0.0,
        local_motion_px=0.0,
        n_particles=30,
        seed=100 + index,
    )
    frames = torch.as_tensor(simulate_exposure(params, specimen=specimen).frames.astype(np.float32))
    even, odd = frames[0::2].sum(0), frames[1::2].sum(0)
    options = settings.processing.ctf.fit_options((SIZE, SIZE), 1.0)
    fit = estimate_ctf(even + odd, pixel_size_angstrom=1.0, **optics.ctf_keywords(), **options)
    whole = CtfRecord.model_validate(fit.to_dict())
    result = stage((even, odd), ctf=whole, optics=optics, templates=None)
    assert result is not None
    error = abs(0.5 * (whole.defocus_u_angstrom + whole.defocus_v_angstrom) - defocus)
    return result.delta_repro, error


@pytest.mark.slow
def test_delta_repro_ranks_easy_and_hard_exposures_by_their_true_error() -> None:
    torch.manual_seed(0)
    settings = load_settings(None, None, {"processing": {"picking": {"enabled": False}}})
    stage = ReproStage(ctf=settings.processing.ctf, picking=settings.processing.picking)
    optics = Optics(
        pixel_size_angstrom=1.0,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
    )
    specimen = phantom_specimen()
    cases = [EASY] * 3 + [HARD] * 3
    found = [
        _exposure(i, dose, ice, settings, stage, optics, specimen)
        for i, (dose, ice) in enumerate(cases)
    ]
    scores = np.array([s for s, _ in found])
    errors = np.array([e for _, e in found])
    # the populations are what they say: every hard fit is worse than every easy one
    assert errors[3:].min() > errors[:3].max(), errors
    assert np.all((scores > 0) & (scores <= 1))
    rho = spearmanr(1.0 - scores, errors).statistic
    assert rho >= MIN_SPEARMAN, (rho, scores, errors)
