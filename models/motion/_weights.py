"""Frequency weights of the motion alignment (whole frames and patches), measured on the movie.

Frame ``f``'s spectrum is ``D_f T + n_f``: the specimen ``T`` (the same in every frame once
aligned), the amplitude ``D_f`` that radiation damage leaves at its dose, and white shot noise
of power ``N_f`` per coefficient. Its leave-one-out reference is ``A_f T + n_ref`` with
``A_f = sum_{g != f} D_g`` and ``N_ref = sum_{g != f} N_g``. Correlating the frame with the
Wiener estimate of ``T`` from that reference, each frequency weighted by the inverse of its
noise, weighs the cross-spectrum ``F_f R_f*`` by

    W_f(k) = D_f A_f S / (N_f (A_f^2 S + N_ref)),     S(k) = <|T(k)|^2>,

which is zero where the specimen carries nothing (the CTF's zeros, beyond its envelope) and
falls where the reference is already clean (low frequencies, where the frame's own noise
limits). ``S`` is measured on rings of the aligned sum (of the whole frame, or of each patch
on its own): the ring's mean of ``|sum_g F_g|^2``, less the noise ``sum_g N_g`` and its
standard error on that ring, over ``(sum_g D_g)^2``.

On simulated 1024^2 x 20 movies at 2 e/A^2 per frame a fixed ``exp(-B k^2 / 2)`` with the
damage filter had, frame by frame, 2.7-3.8 times the shift variance of the ideal ``W_f``
(computed from the noiseless frames; B = 50-80).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__: list[str] = []

#: ring width in frequency samples of the larger image side (1 px rings left the hardest
#: bench seeds about 0.005 px worse)
_RING_SAMPLES = 2.0
#: standard errors of a ring's noise subtracted with the noise (rings where the specimen is
#: within the noise's scatter get no weight instead of a random one)
_NOISE_MARGIN = 1.0


def signal_weights(
    spectra_filter: torch.Tensor,
    ky: torch.Tensor,
    kx: torch.Tensor,
    shape: tuple[int, int],
    total: torch.Tensor,
    noise_power: torch.Tensor,
    *,
    damage: Callable[[torch.Tensor], torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P, F, H, Wr)`` float32 weights of the cross-spectra of ``P`` movies (the whole
    frame, or patches) and which of them hold measurable signal ``(P,)`` bool.

    ``total`` ``(P, H, Wr)`` is each movie's aligned sum of its frames' spectra, each filtered
    by ``spectra_filter`` ``(H, Wr)`` (the returned weights divide that filter out twice, as
    every cross-spectrum carries it squared), on the cropped grid ``ky`` ``(H,)``, ``kx``
    ``(Wr,)`` (cycles per pixel of an ``shape`` image); ``noise_power`` ``(P, F)`` is each
    frame's white noise per coefficient before the filter. ``damage`` gives the ``(F, ...)``
    amplitudes ``D_f`` at frequencies in cycles per pixel (:meth:`DamageModel.amplitudes`);
    without it every ``D_f`` is 1.
    A movie without measurable signal on any ring (a blank patch) gets zero weights and False:
    the caller keeps its fixed filter there.
    """
    device = total.device
    p = total.shape[0]
    n = max(shape)
    k = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)  # (H, Wr), cycles/px, float64
    ring = torch.round(k * (n / _RING_SAMPLES)).long()
    rings = int(ring.max()) + 1
    flat = ring.reshape(-1)
    filt2 = spectra_filter.to(torch.float64).square().clamp(min=1e-30)
    power = total.real.to(torch.float64).square() + total.imag.to(torch.float64).square()
    power = (power / filt2).reshape(p, -1)
    count = torch.bincount(flat, minlength=rings).to(torch.float64).clamp(min=1)
    mean = torch.zeros((p, rings), dtype=torch.float64, device=device).index_add_(1, flat, power)
    mean = mean / count
    noise = noise_power.to(device=device, dtype=torch.float64)  # (P, F)
    noise_total = noise.sum(dim=1, keepdim=True)  # (P, 1)
    signal = mean - noise_total * (1.0 + _NOISE_MARGIN / torch.sqrt(count))
    signal = signal.clamp(min=0.0)
    signal[:, 0] = 0.0  # the mean was removed
    centre = torch.arange(rings, dtype=torch.float64, device=device) * (_RING_SAMPLES / n)
    if damage is None:
        kept = torch.ones((noise.shape[1], rings), dtype=torch.float64, device=device)
    else:
        kept = damage(centre)  # (F, rings)
    kept_sum = kept.sum(dim=0)
    specimen = (signal / kept_sum.square().clamp(min=1e-30))[:, None]  # S(k) (P, 1, rings)
    others = kept_sum - kept  # A_f (F, rings)
    noise_others = (noise_total - noise)[..., None]  # N_ref (P, F, 1)
    table = (
        kept * others * specimen / (noise[..., None] * (others.square() * specimen + noise_others))
    )
    table = torch.nan_to_num(table, nan=0.0, posinf=0.0, neginf=0.0)
    largest = table.amax(dim=(1, 2))
    measured = largest > 0
    table = table / torch.where(measured, largest, 1.0)[:, None, None]
    weights = table.to(torch.float32)[..., ring]  # (P, F, H, Wr)
    return weights.div_(filt2.to(torch.float32)), measured
