"""The unit glossary and the few physical constants the project shares.

Every physical quantity carries its unit in its name, spelt exactly as here:

============== ===============================================
suffix         unit
============== ===============================================
``_angstrom``  Angstrom (1e-10 m); defocus is stored in Angstrom, as in RELION
``_nm``        nanometre (ice thickness)
``_um``        micrometre (defocus in user-facing settings, stage positions)
``_mm``        millimetre (spherical and chromatic aberration)
``_kv``        kilovolt (acceleration voltage)
``_ev``        electronvolt (energy spread, energy-filter slit)
``_deg``       degree (astigmatism angle, phase shift)
``_rad``       radian
``_mrad``      milliradian (beam tilt, illumination aperture)
``_px``        pixel (shifts, coordinates, box sizes)
``_e_per_a2``  electrons per square Angstrom (dose)
``_s``         second
``_per_angstrom`` spatial frequency in 1/Angstrom
============== ===============================================

Sign conventions: defocus is positive for underfocus; the astigmatism angle is measured from
the x axis to the direction of ``defocus_u`` (RELION and CTFFIND); image shifts ``[x, y]``
are in pixels, x along the fast (column) axis.
"""

from __future__ import annotations

import math

__all__ = [
    "ANGSTROM_PER_MM",
    "ANGSTROM_PER_NM",
    "ANGSTROM_PER_UM",
    "ELECTRON_REST_ENERGY_EV",
    "electron_wavelength_angstrom",
    "interaction_constant_rad_per_v_angstrom",
    "relativistic_gamma",
]

ANGSTROM_PER_NM = 10.0
ANGSTROM_PER_UM = 1.0e4
ANGSTROM_PER_MM = 1.0e7

ELECTRON_REST_ENERGY_EV = 510_998.95
_H_J_S = 6.626_070_15e-34
_M0_KG = 9.109_383_701_5e-31
_E_C = 1.602_176_634e-19


def electron_wavelength_angstrom(voltage_kv: float) -> float:
    """Relativistic electron wavelength: 0.019688 A at 300 kV, 0.025079 A at 200 kV.

    Uses the constants of RELION and CTFFIND (12.2643247 / sqrt(V (1 + 0.978466e-6 V)), V in
    volts), so that our CTF matches theirs to the last digit even where the aberration phase is
    large.
    """
    if voltage_kv <= 0:
        raise ValueError(f"voltage_kv must be positive, got {voltage_kv}")
    volts = voltage_kv * 1.0e3
    return 12.2643247 / math.sqrt(volts * (1.0 + volts * 0.978466e-6))


def relativistic_gamma(voltage_kv: float) -> float:
    """Lorentz factor of the beam electrons, m / m0."""
    return 1.0 + voltage_kv * 1.0e3 / ELECTRON_REST_ENERGY_EV


def interaction_constant_rad_per_v_angstrom(voltage_kv: float) -> float:
    """sigma = 2 pi m e lambda / h^2; 6.5e-4 rad / (V A) at 300 kV."""
    wavelength_m = electron_wavelength_angstrom(voltage_kv) * 1.0e-10
    sigma_per_v_m = (
        2.0 * math.pi * relativistic_gamma(voltage_kv) * _M0_KG * _E_C * wavelength_m / _H_J_S**2
    )
    return sigma_per_v_m * 1.0e-10
