"""Delta-Repro's refits against a known truth: two half sums simulated at known defoci (two
exposures of one specimen) are refitted over the whole defocus range, and the stage reports
their difference in the direction where they differ most, ``z * 2 * scale``, as the truth
sets it; halves of one defocus score highest.

How well 1 - DeltaRepro ranks whole exposures by their true CTF error is measured on a
population of varied difficulty by ``causalscope bench scores --repro-only`` (README).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from causalscope.actors._repro import ReproStage
from causalscope.config import load_settings
from causalscope.models.ctf_estimation import estimate_ctf
from causalscope.models.optics import Optics
from causalscope.models.records import CtfRecord
from causalscope.models.scoring.repro import defocus_scale_angstrom, worst_direction_difference
from causalscope.models.simulate.exposure import ExposureParameters, simulate_exposure
from causalscope.models.simulate.specimen import phantom_specimen
from causalscope.models.units import electron_wavelength_angstrom

SIZE = 640
#: e/A^2 of each half: enough for every half's rings to be fitted at this field size
HALF_DOSE = 40.0
#: the stage's measured worst-direction difference against the truth's, in A
TOLERANCE_ANGSTROM = 90.0
OPTICS = Optics(
    pixel_size_angstrom=1.0, voltage_kv=300.0, spherical_aberration_mm=2.7, amplitude_contrast=0.07
)


def _half(
    defocus: tuple[float, float, float], seed: int, specimen, dose: float = HALF_DOSE
) -> torch.Tensor:
    """One half sum of ``(dU, dV, angle)``: its own particles and noise for each seed."""
    u, v, angle = defocus
    params = ExposureParameters(
        size_px=SIZE,
        n_frames=4,
        dose_e_per_a2=dose,
        ice_thickness_nm=25.0,
        defocus_u_angstrom=u,
        defocus_v_angstrom=v,
        defocus_angle_deg=angle,
        drift_total_px=0.0,
        drift_jitter_px=0.0,
        local_motion_px=0.0,
        n_particles=30,
        seed=seed,
    )
    frames = simulate_exposure(params, specimen=specimen).frames
    return torch.as_tensor(frames.astype(np.float32).sum(0))


@pytest.mark.slow
def test_the_halves_difference_is_measured_where_they_differ_most() -> None:
    torch.manual_seed(0)
    settings = load_settings(None, None, {"processing": {"picking": {"enabled": False}}})
    stage = ReproStage(ctf=settings.processing.ctf, picking=settings.processing.picking)
    specimen = phantom_specimen()
    # z counts half the halves' difference in units of the stage's defocus scale (3 A)
    scale = 2.0 * defocus_scale_angstrom(
        resolution_angstrom=3.0, wavelength_angstrom=electron_wavelength_angstrom(300.0)
    )
    even_truth = (15_300.0, 14_700.0, 20.0)
    cases = {  # the odd half's truth: the same; 400 A more; the astigmatism turned 90 degrees
        "same": even_truth,
        "shifted": (15_700.0, 15_100.0, 20.0),
        "turned": (15_300.0, 14_700.0, 110.0),
    }
    even = _half(even_truth, 11, specimen)
    options = settings.processing.ctf.fit_options((SIZE, SIZE), 1.0)
    found = {}
    for name, odd_truth in cases.items():
        odd = _half(odd_truth, 12, specimen)
        fit = estimate_ctf(even + odd, pixel_size_angstrom=1.0, **OPTICS.ctf_keywords(), **options)
        result = stage(
            (even, odd), ctf=CtfRecord.model_validate(fit.to_dict()), optics=OPTICS, templates=None
        )
        assert result is not None and result.z_defocus is not None
        found[name] = (result.z_defocus * scale, result.delta_repro)
        true = worst_direction_difference(even_truth, odd_truth)
        assert abs(found[name][0] - true) < TOLERANCE_ANGSTROM, (name, found[name], true)
    # measured: 60, 444 and 681 A against 0, 400 and 600
    assert found["same"][1] > max(found["shifted"][1], found["turned"][1]), found


@pytest.mark.slow
def test_the_resampled_noise_refit_moves_more_at_low_dose() -> None:
    """The CTF sum fitted again with as much noise again: at 4 e/A^2 the refit moves further
    from the whole's fit than at 40 e/A^2 (measured: 86 scales, a jump to another defocus,
    against 0.9), and a sum without a noise estimate gets no such term."""
    settings = load_settings(None, None, {"processing": {"picking": {"enabled": False}}})
    stage = ReproStage(ctf=settings.processing.ctf, picking=settings.processing.picking)
    specimen = phantom_specimen()
    options = settings.processing.ctf.fit_options((SIZE, SIZE), 1.0)
    truth = (15_300.0, 14_700.0, 20.0)
    moved = {}
    for dose in (40.0, 4.0):
        halves = [_half(truth, seed, specimen, dose=dose) for seed in (21, 22)]
        whole = halves[0] + halves[1]
        variance = float(whole.mean())  # counts: Poisson
        fit = estimate_ctf(
            whole, pixel_size_angstrom=1.0, noise_variance=variance, **OPTICS.ctf_keywords(),
            **options,
        )  # fmt: skip
        ctf = CtfRecord.model_validate(fit.to_dict())
        result = stage(
            (halves[0], halves[1]), ctf=ctf, optics=OPTICS, templates=None, whole=(whole, variance)
        )
        assert result is not None and result.z_noise is not None
        assert result.defocus_noise_angstrom is not None
        moved[dose] = result.z_noise
        without = stage((halves[0], halves[1]), ctf=ctf, optics=OPTICS, templates=None)
        assert without is not None and without.z_noise is None
    assert moved[4.0] > 2 * moved[40.0], moved


def test_auto_tiles_refit_each_half_once_at_the_wholes_tile(monkeypatch) -> None:
    """With ``box_px = "auto"`` the halves and the resampled noise are fitted in one pass each
    at the tile :func:`auto_box_px` gives for the whole exposure's fit (not "auto"'s two passes),
    and at the first pass's tile when the whole's fit is not supported."""
    import causalscope.models.ctf_estimation as ctf_estimation

    settings = load_settings(None, None, {"processing": {"picking": {"enabled": False}}})
    assert settings.processing.ctf.box_px == "auto"
    stage = ReproStage(ctf=settings.processing.ctf, picking=settings.processing.picking)
    truth = (15_300.0, 14_700.0, 20.0)
    halves = [_half(truth, seed, phantom_specimen()) for seed in (31, 32)]
    whole = halves[0] + halves[1]
    variance = float(whole.mean())
    fit = estimate_ctf(
        whole, pixel_size_angstrom=1.0, noise_variance=variance, **OPTICS.ctf_keywords(),
        **settings.processing.ctf.fit_options((SIZE, SIZE), 1.0),
    )  # fmt: skip
    boxes: list[object] = []
    asked: list[float] = []

    def spy(image: torch.Tensor, **options: object) -> object:
        boxes.append(options["box_px"])
        return estimate_ctf(image, **options)  # type: ignore[arg-type]

    def tile(defocus_angstrom: float, **_: object) -> int:
        asked.append(defocus_angstrom)
        return 384

    monkeypatch.setattr(ctf_estimation, "estimate_ctf", spy)
    monkeypatch.setattr(ctf_estimation, "auto_box_px", tile)
    record = CtfRecord.model_validate(fit.to_dict())
    assert record.supported
    result = stage(
        (halves[0], halves[1]), ctf=record, optics=OPTICS, templates=None, whole=(whole, variance)
    )
    assert result is not None and result.defocus_even_angstrom is not None
    assert boxes == [384, 384, 384]  # even, odd, the resampled noise: one pass each
    assert asked == [max(record.defocus_u_angstrom, record.defocus_v_angstrom)]
    boxes.clear()
    unsupported = record.model_copy(update={"supported": False})
    stage((halves[0], halves[1]), ctf=unsupported, optics=OPTICS, templates=None)
    assert boxes == [512, 512]
