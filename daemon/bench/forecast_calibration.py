"""Is the session's forecast, and its probability of reaching the target, calibrated?

On the sizes of ``bench reconstruction`` (each seed's half-sets at doubling particle counts):
at every size ``N`` from :data:`FIRST_PARTICLES` on, the SSNR fit of ``N``'s unmasked half-map
FSC (:func:`models.reconstruction.forecast.fit_ssnr`, what the live session forecasts with)
forecasts the resolution ``f`` of every larger size ``M`` of the same seed; the outcome is
``M``'s own unmasked FSC-0.143 resolution ``d``. The session takes ``ln d`` as normal about
``ln f`` with the spread ``s = max(0.01, LOG_SD_PER_DOUBLING * log2(M / N))``
(:func:`models.reconstruction.forecast.session_end`), so:

- ``z = (ln d - ln f) / s`` should be standard normal: its mean, its standard deviation, and
  the shares within one and two ``s`` (0.68 and 0.95 when calibrated);
- P(reach target ``t``) = ``Phi((ln t - ln f) / s)``. It is calibrated for every target at once
  when ``Phi(z)`` (the probability the forecast gave to doing no better than the outcome) is
  uniform; ``reliability`` reads that as the operator would: for targets where the forecast
  said P = 16, 31, 50, 69 and 84 %, the share of outcomes that reached them;
- ``fitted_sd_per_doubling``: the spread per doubling that the errors themselves give,
  ``sqrt(mean((ln d - ln f)^2 / log2(M / N)^2))``, beside the one in use.

The pairs of one seed share its particles, so they are not independent: ``seeds`` says how
many independent sessions stand behind the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["FIRST_PARTICLES", "forecast_calibration"]

#: the smallest size that forecasts (the live session's first updates have a few hundred)
FIRST_PARTICLES = 500
_RELIABILITY_Z = (-1.0, -0.5, 0.0, 0.5, 1.0)


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def forecast_calibration(
    runs: Sequence[dict[str, Any]], *, pixel_size_angstrom: float
) -> dict[str, Any]:
    """The calibration of the forecasts between the sizes of ``runs`` (each a seed's
    ``{"seed", "sizes": [{"particles", "fsc_curve", "fsc_0143_unmasked_angstrom"}, ...]}``);
    see the module docstring."""
    from causalscope.models.reconstruction.forecast import LOG_SD_PER_DOUBLING, fit_ssnr

    errors, doublings, seeds = [], [], set()
    for run in runs:
        sizes = run["sizes"]
        for i, early in enumerate(sizes):
            if early["particles"] < FIRST_PARTICLES:
                continue
            try:
                model = fit_ssnr(
                    np.asarray(early["fsc_curve"]),
                    pixel_size_angstrom=pixel_size_angstrom,
                    particles=early["particles"],
                )
            except ValueError:  # too few informative shells
                continue
            for later in sizes[i + 1 :]:
                forecast = model.resolution_at(later["particles"])
                outcome = later["fsc_0143_unmasked_angstrom"]
                if not (math.isfinite(forecast) and math.isfinite(outcome) and outcome > 0):
                    continue
                errors.append(math.log(outcome) - math.log(forecast))
                doublings.append(math.log2(later["particles"] / early["particles"]))
                seeds.add(run["seed"])
    if not errors:
        return {"pairs": 0, "seeds": 0}
    e = np.asarray(errors)
    k = np.asarray(doublings)
    spread = np.maximum(0.01, LOG_SD_PER_DOUBLING * k)
    z = e / spread
    pit = np.array([_phi(float(v)) for v in z])
    by_horizon = {}
    for horizon in sorted({round(float(v)) for v in k}):
        chosen = np.isclose(k, horizon)
        by_horizon[str(horizon)] = {
            "pairs": int(chosen.sum()),
            "rms_log_error": float(np.sqrt(np.mean(e[chosen] ** 2))),
            "mean_log_error": float(np.mean(e[chosen])),
        }
    return {
        "pairs": int(e.size),
        "seeds": len(seeds),
        "sd_per_doubling_in_use": LOG_SD_PER_DOUBLING,
        "fitted_sd_per_doubling": float(np.sqrt(np.mean((e / k) ** 2))),
        "z_mean": float(z.mean()),
        "z_sd": float(z.std()),
        "within_1_sd": float(np.mean(np.abs(z) <= 1.0)),
        "within_2_sd": float(np.mean(np.abs(z) <= 2.0)),
        "pit_deciles": np.histogram(pit, bins=10, range=(0.0, 1.0))[0].tolist(),
        # a target where the forecast said P(reach) = Phi(q) is t = f exp(q s); reached: z <= q
        "reliability": [
            {"p_forecast": round(_phi(q), 3), "p_observed": float(np.mean(z <= q))}
            for q in _RELIABILITY_Z
        ],
        "by_doublings": by_horizon,
    }
