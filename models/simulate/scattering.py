"""Electron scattering factors: five-Gaussian fits of International Tables C, 4.3.2.2.

``f(s) = sum_i a_i exp(-b_i s^2)`` in Angstrom with ``s = sin(theta)/lambda = k/2`` (Peng,
Ren, Dudarev & Whelan, Acta Cryst. A52, 1996). The elements of proteins, nucleic acids and
water are tabulated here for the built-in phantom and for water; structures read from files
bring their own coefficients for every element they contain.
"""

from __future__ import annotations

import torch

__all__ = ["ELECTRON_FORM_FACTORS", "form_factor"]

#: element -> (a_1..a_5 in Angstrom, b_1..b_5 in Angstrom^2)
ELECTRON_FORM_FACTORS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "H": ((0.0349, 0.1201, 0.1970, 0.0573, 0.1195), (0.5347, 3.5867, 12.3471, 18.9525, 38.6269)),
    "C": ((0.0893, 0.2563, 0.7570, 1.0487, 0.3575), (0.2465, 1.7100, 6.4094, 18.6113, 50.2523)),
    "N": ((0.1022, 0.3219, 0.7982, 0.8197, 0.1715), (0.2451, 1.7481, 6.1925, 17.3894, 48.1431)),
    "O": ((0.0974, 0.2921, 0.6910, 0.6990, 0.2039), (0.2067, 1.3815, 4.6943, 12.7105, 32.4726)),
    "P": ((0.2548, 0.6106, 1.4541, 2.3204, 0.8477), (0.2908, 1.8740, 8.5176, 24.3434, 63.2996)),
    "S": ((0.2497, 0.5628, 1.3899, 2.1865, 0.7715), (0.2681, 1.6711, 7.0267, 19.5377, 50.3888)),
}


def form_factor(
    frequency_per_angstrom: torch.Tensor, *, a_angstrom: torch.Tensor, b_angstrom2: torch.Tensor
) -> torch.Tensor:
    """Electron form factor(s) in Angstrom at spatial frequency k (1/A).

    ``a_angstrom`` and ``b_angstrom2`` are ``(..., n_gaussians)``; the result is
    ``(..., *frequency.shape)``.
    """
    if a_angstrom.shape != b_angstrom2.shape:
        raise ValueError(
            f"a and b must match: {tuple(a_angstrom.shape)} vs {tuple(b_angstrom2.shape)}"
        )
    s2 = (frequency_per_angstrom / 2.0) ** 2
    extra = (1,) * frequency_per_angstrom.dim()
    a = a_angstrom.reshape(a_angstrom.shape + extra).to(s2)
    b = b_angstrom2.reshape(b_angstrom2.shape + extra).to(s2)
    return (a * torch.exp(-b * s2)).sum(dim=-1 - frequency_per_angstrom.dim())
