"""The ice thickness is within 3 of its sigmas of the truth, or not reported.

Three 1024^2 bench exposures where the estimate used to be confidently wrong: the Thon-ring
fit at the top of its grid (200 +- 10 and 200 +- 17 nm for 30 and 45 nm of ice) and an
ice-ring reading of 0.3 +- 1.1 nm for 27 nm of ice.
"""

from __future__ import annotations

import pytest
import torch

from causalscope.daemon.bench._common import still_micrograph
from causalscope.daemon.bench.ctf import simulated_cases
from causalscope.models.ctf_estimation import estimate_ctf

# (number of bench cases, which one, noise seed offset)
CASES = [(12, 2, 2000), (12, 11, 0), (12, 7, 1000)]


@pytest.mark.parametrize(("n", "index", "offset"), CASES)
def test_ice_is_within_three_sigma_or_not_determined(n: int, index: int, offset: int) -> None:
    case = dict(simulated_cases(n)[index])
    seed = int(case.pop("seed")) + offset
    image, _ = still_micrograph(1024, particles_per_1024=40, seed=seed, **case)
    est = estimate_ctf(
        torch.from_numpy(image),
        pixel_size_angstrom=1.0,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
        noise_variance=float(image.mean()),
    )
    if est.ice_thickness_nm is None:
        assert est.ice_thickness_sigma_nm is None
        assert any("ice thickness not determined" in w for w in est.warnings), est.warnings
        return
    assert est.ice_thickness_sigma_nm is not None
    error = est.ice_thickness_nm - case["ice_thickness_nm"]
    assert abs(error) <= 3.0 * est.ice_thickness_sigma_nm, (error, est)
