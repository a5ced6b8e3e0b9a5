"""Private: the E-step (pose and class posteriors) and the sums the M-step accumulates.

Model of a particle's spectrum ``X`` for class ``k`` at in-plane rotation ``psi_j`` and shift
``t``: ``X = CTF * S_t R_j A_k + N`` with Gaussian noise of variance ``sigma2(ring)`` per
coefficient. Its log-likelihood up to a constant of the particle is

    L(k, j, t) = Re sum_f conj(X CTF / sigma2 * S_t^-1) R_j A_k
                 - 1/2 sum_f CTF^2 |R_j A_k|^2 / sigma2

over the coefficients ``1 <= ring <= r_max`` (both halves of the spectrum): two real matrix
products, one over every (particle, shift) by every (class, rotation), one over every particle
by every (class, rotation). The M-step adds, for each particle and each class whose posterior
is above ``min_weight``, at the best pose of that class, ``w R_j^-1 S_t^-1 (CTF X)`` to the
class's ``num`` and ``w R_j^-1 CTF^2`` to its ``den``, in the half set of the particle's id.

The in-plane contrast of a particle at its best class and shift: its best rotation's
log-likelihood less the mean over all rotations, against the same gap of the class average
itself under the particle's CTF (:meth:`EStep.in_plane_ratio`). A view of the class gains
from its turn what the average does; a round object (an ice blob the size of a view) gains
nothing from any turn but what the noise gives, however well its mass and misfit pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from causalscope.models.classification._grids import Grid, rotate_images, shift_spectra
from causalscope.models.reconstruction.particle_ctf import ParticleCtfs

__all__ = [
    "PAIR_PIXELS",
    "ClassSums",
    "EStep",
    "accumulate",
    "aligned_spectra",
    "expectation",
    "on_device",
    "rotated_references",
]

#: pixels of the (particle, class) pairs that :func:`accumulate` aligns at a time (2,048
#: pairs of 64 px: about 0.3 GB of temporaries)
PAIR_PIXELS = 8_388_608


def on_device(images: torch.Tensor, index: np.ndarray, device: torch.device) -> torch.Tensor:
    """``images[index]`` on ``device``: a store kept in host memory sends only these rows."""
    return images[torch.as_tensor(np.asarray(index), device=images.device)].to(device)


@dataclass
class ClassSums:
    """Per-class, per-half-set accumulators on the working rfft2 grid.

    ``num`` ``(K, 2, b, b//2+1)`` complex: ``sum w CTF X_aligned``; ``den`` real:
    ``sum w CTF^2``; ``weight`` ``(K, 2)``: ``sum w``; ``weight2``: ``sum w^2``.
    """

    num: torch.Tensor
    den: torch.Tensor
    weight: torch.Tensor
    weight2: torch.Tensor

    @classmethod
    def zeros(cls, n_classes: int, box: int, *, device: torch.device | str = "cpu") -> ClassSums:
        shape = (n_classes, 2, box, box // 2 + 1)
        return cls(
            torch.zeros(shape, dtype=torch.complex128, device=device),
            torch.zeros(shape, dtype=torch.float64, device=device),
            torch.zeros(n_classes, 2, dtype=torch.float64, device=device),
            torch.zeros(n_classes, 2, dtype=torch.float64, device=device),
        )

    def to(self, device: torch.device | str) -> ClassSums:
        """These sums on ``device``."""
        return ClassSums(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    def __add__(self, other: ClassSums) -> ClassSums:
        return ClassSums(
            self.num + other.num,
            self.den + other.den,
            self.weight + other.weight,
            self.weight2 + other.weight2,
        )

    def scaled(self, factor: float) -> ClassSums:
        """Every sum times ``factor`` (``weight2`` times its square)."""
        return ClassSums(
            self.num * factor, self.den * factor, self.weight * factor, self.weight2 * factor**2
        )


@dataclass(frozen=True)
class EStep:
    """Posteriors of ``m`` particles: the class marginals and each class's best pose."""

    class_weight: torch.Tensor  # (m, K) posterior of each class (sums to 1)
    best_rotation: torch.Tensor  # (m, K) index of the best psi for each class
    best_shift: torch.Tensor  # (m, K) index of the best shift for each class
    chi2: torch.Tensor  # (m,) residual per coefficient at the best pose (noise units)
    noise_rings: torch.Tensor  # (m, n_rings) residual power per ring at the best pose
    power_rings: torch.Tensor  # (m, n_rings) the particle's power per ring
    in_plane_gap: torch.Tensor  # (m,) best rotation's log-likelihood over the rotations' mean
    in_plane_expected: torch.Tensor  # (m,) the same gap for the class average itself
    psi_rad: torch.Tensor  # (J,) the rotations the indices refer to

    def to(self, device: torch.device | str) -> EStep:
        """This E-step on ``device`` (the CPU: to read it as arrays)."""
        return EStep(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    def in_plane_ratio(self) -> torch.Tensor:
        """``(m,)`` how much of the in-plane contrast its class average would give each
        particle it gives: about 1 for a view of the class (a little less, as the average
        is Wiener-filtered), near 0 for a round object in a class of an anisotropic view
        (turning a round blob changes nothing). Meaningful where ``in_plane_expected`` is
        well above its noise: the ratio's own is about ``sqrt(2 / in_plane_expected)``."""
        return self.in_plane_gap / self.in_plane_expected.clamp(min=1e-12)

    def low_power(self, r_low: int) -> torch.Tensor:
        """``(m,)`` each particle's power in rings 1 to ``r_low`` (weighted by their size), in
        units of its background noise (extraction normalised it so)."""
        return (self.power_rings * _ring_sizes(self.power_rings, r_low)).sum(-1).clamp(min=1e-30)

    def low_misfit(self, r_low: int) -> torch.Tensor:
        """``(m,)`` the share of each particle's power in rings 1 to ``r_low`` that its best
        pose leaves unexplained: unlike a chi^2 it ignores the per-image scale of the
        normalisation."""
        size = _ring_sizes(self.power_rings, r_low)
        return (self.noise_rings * size).sum(-1) / self.low_power(r_low)

    def with_rows(self, rows: np.ndarray, other: EStep) -> EStep:
        """This E-step with particles ``rows`` taken from ``other`` (of those particles only,
        at the same rotations)."""
        index = torch.as_tensor(rows, device=self.class_weight.device)
        fields = {}
        for name in ("class_weight", "best_rotation", "best_shift", "chi2", "noise_rings",
                     "power_rings", "in_plane_gap", "in_plane_expected"):  # fmt: skip
            values = getattr(self, name).clone()
            values[index] = getattr(other, name)
            fields[name] = values
        return EStep(**fields, psi_rad=self.psi_rad)


def rotated_references(
    references: torch.Tensor, psi_rad: torch.Tensor, band: torch.Tensor
) -> torch.Tensor:
    """``(K J, F)`` spectra (coefficients ``band``) of ``references`` ``(K, b, b)`` turned by
    every ``psi_rad`` ``(J,)``, class-major."""
    n_classes, n_rot = references.shape[0], psi_rad.numel()
    rotated = rotate_images(references.repeat_interleave(n_rot, 0), psi_rad.repeat(n_classes))
    return torch.fft.rfft2(rotated).flatten(1)[:, band]


def expectation(
    spectra: torch.Tensor,
    ctf: torch.Tensor,
    ref: torch.Tensor,
    *,
    grid: Grid,
    sigma2: torch.Tensor,
    band: torch.Tensor,
    shifts_px: torch.Tensor,
    psi_rad: torch.Tensor,
) -> EStep:
    """Posteriors of particles ``spectra`` ``(m, b, b//2+1)`` (their transfer ``ctf``, same
    shape) against the rotated references ``ref`` (:func:`rotated_references`) at every psi
    and shift."""
    m, n_rot = spectra.shape[0], psi_rad.numel()
    n_classes = ref.shape[0] // n_rot
    mult = grid.multiplicity.flatten()[band]
    inv_sigma2 = 1.0 / sigma2[grid.ring.flatten()[band]]
    x = spectra.flatten(1)[:, band]
    c = ctf.flatten(1)[:, band]
    y = x * (c * inv_sigma2 * mult)  # (m, F)
    ramps = shift_spectra(grid.fx.flatten()[band], grid.fy.flatten()[band], shifts_px)  # (T, F)
    z = y[:, None, :] * ramps.conj()[None]  # S_t^-1 applied to the particle: (m, T, F)
    cross = z.real @ ref.real.T + z.imag @ ref.imag.T  # (m, T, K J)
    norm = (c * c * inv_sigma2 * mult) @ (ref.abs() ** 2).T  # (m, K J)
    ll = (cross - 0.5 * norm[:, None, :]).reshape(m, -1, n_classes, n_rot)
    ll = ll.permute(0, 2, 1, 3).reshape(m, n_classes, -1)  # (m, K, T J)
    per_class = torch.logsumexp(ll, dim=-1)
    class_weight = torch.softmax(per_class, dim=-1)
    best = ll.argmax(dim=-1)  # (m, K) -> shift * J + rotation
    best_shift, best_rotation = best // n_rot, best % n_rot
    # residual at the overall best pose, per ring (for the noise model and the worst-explained)
    k_best = class_weight.argmax(dim=-1)
    rows = torch.arange(m, device=x.device)
    j_best = best_rotation[rows, k_best]
    t_best = best_shift[rows, k_best]
    model = ref[k_best * n_rot + j_best] * ramps[t_best] * c
    residual = (x - model).abs() ** 2
    chi2 = (residual * inv_sigma2 * mult).sum(-1) / mult.sum()
    ring = grid.ring.flatten()[band]
    noise = residual.new_zeros(m, grid.n_rings).index_add_(1, ring, residual * mult)
    power = torch.zeros_like(noise).index_add_(1, ring, x.abs() ** 2 * mult)
    counts = residual.new_zeros(grid.n_rings).index_add_(0, ring, mult)
    counts = counts.clamp(min=1)
    at_best = ll.reshape(m, n_classes, -1, n_rot)[rows, k_best, t_best]  # (m, J)
    gap = at_best.max(-1).values - at_best.mean(-1)
    expected = _in_plane_expected(ref, k_best, j_best, c * c * inv_sigma2 * mult, norm, n_rot)
    return EStep(
        class_weight, best_rotation, best_shift, chi2, noise / counts, power / counts, gap,
        expected, psi_rad,
    )  # fmt: skip


def _in_plane_expected(
    ref: torch.Tensor,
    k_best: torch.Tensor,
    j_best: torch.Tensor,
    weight: torch.Tensor,
    norm: torch.Tensor,
    n_rot: int,
) -> torch.Tensor:
    """``(m,)`` the in-plane gap (best rotation's log-likelihood minus the mean over the
    rotations) that each particle's class average ``k_best`` at rotation ``j_best`` would
    have as the particle, without noise, under the particle's ``weight`` ``(m, F)`` (``CTF^2
    / sigma2`` times multiplicity); ``norm`` ``(m, K J)`` as in :func:`expectation`."""
    out = norm.new_zeros(k_best.numel())
    own = ref[k_best * n_rot + j_best] * weight  # (m, F)
    for k in torch.unique(k_best).tolist():  # one sync: the classes present
        rows = torch.nonzero(k_best == k).flatten()
        turns = ref[k * n_rot : (k + 1) * n_rot]  # (J, F)
        fit = own[rows].real @ turns.real.T + own[rows].imag @ turns.imag.T
        fit = fit - 0.5 * norm[rows, k * n_rot : (k + 1) * n_rot]
        out[rows] = fit.max(-1).values - fit.mean(-1)
    return out


def accumulate(
    images: torch.Tensor,
    ctf: ParticleCtfs,
    ids: np.ndarray,
    estep: EStep,
    *,
    grid: Grid,
    shifts_px: torch.Tensor,
    n_classes: int,
    index: np.ndarray | None = None,
    min_weight: float = 0.01,
) -> ClassSums:
    """The M-step's sums of the particles ``index`` (default: all) of ``images`` ``(n, b, b)``
    (working grid; ``ctf`` and ``ids`` of all ``n``), ``estep`` row ``i`` being particle
    ``index[i]``, at their best poses, on the E-step's device.

    The (particle, class) pairs above ``min_weight`` are added :data:`PAIR_PIXELS` pixels at
    a time, so that a full pass over a large set holds one chunk's spectra, not the set's (at
    16,000 particles of 64 px, all at once took 5.8 GB more than the store); the images are
    taken from ``images`` where they are (a store kept on the host sends one chunk at a time).
    """
    device = estep.class_weight.device
    sums = ClassSums.zeros(n_classes, grid.box, device=device)
    particle, klass = torch.nonzero(estep.class_weight >= min_weight, as_tuple=True)
    if particle.numel() == 0:
        return sums
    w = estep.class_weight[particle, klass].to(torch.float64)
    w = w / _renormaliser(estep.class_weight, min_weight)[particle]
    psi = estep.psi_rad[estep.best_rotation[particle, klass]]
    shift = shifts_px[estep.best_shift[particle, klass]]
    rows = particle.cpu().numpy()
    if index is not None:
        rows = np.asarray(index)[rows]
    half = torch.as_tensor(np.asarray(ids)[rows] % 2, dtype=torch.long, device=device)
    slot = klass * 2 + half
    flat = (n_classes * 2, *sums.num.shape[2:])
    size = max(1, PAIR_PIXELS // grid.box**2)
    for start in range(0, len(rows), size):
        part = slice(start, start + size)
        aligned, den = aligned_spectra(images, ctf, rows[part], psi[part], shift[part], grid=grid)
        weight = w[part][:, None, None]
        sums.num.view(flat).index_add_(0, slot[part], aligned.to(torch.complex128) * weight)
        sums.den.view(flat).index_add_(0, slot[part], den.to(torch.float64) * weight)
    sums.weight.view(-1).index_add_(0, slot, w)
    sums.weight2.view(-1).index_add_(0, slot, w * w)
    return sums


def aligned_spectra(
    images: torch.Tensor,
    ctf: ParticleCtfs,
    index: np.ndarray,
    psi_rad: torch.Tensor,
    shift_px: torch.Tensor,
    *,
    grid: Grid,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(CTF X, CTF^2)`` ``(n, b, b//2+1)`` of the particles ``index`` of ``images`` (working
    grid), each brought back to its class's frame: its shift ``shift_px`` ``(n, 2)`` undone,
    then turned by ``-psi_rad`` ``(n,)``; :data:`PAIR_PIXELS` at a time, so that only the
    answer grows with ``n`` (the steps' temporaries take about 8 times as much)."""
    index = np.asarray(index)
    size = max(1, PAIR_PIXELS // grid.box**2)
    out: tuple[torch.Tensor, torch.Tensor] | None = None
    for start in range(0, max(len(index), 1), size):
        part, rows = slice(start, start + size), index[start : start + size]
        transfer = ctf.transfer(grid.kx, grid.ky, index=rows)
        spectra = torch.fft.rfft2(on_device(images, rows, transfer.device)) * transfer
        spectra = spectra * shift_spectra(grid.fx, grid.fy, shift_px[part]).conj()  # unshift
        turned = rotate_images(torch.fft.irfft2(spectra, s=images.shape[-2:]), -psi_rad[part])
        den = ctf.transfer(grid.kx, grid.ky, index=rows, rotation_rad=-psi_rad[part]) ** 2
        aligned = torch.fft.rfft2(turned)
        if len(index) <= size:
            return aligned, den
        if out is None:
            out = (
                aligned.new_empty((len(index), *aligned.shape[1:])),
                den.new_empty((len(index), *den.shape[1:])),
            )
        out[0][part], out[1][part] = aligned, den
    assert out is not None
    return out


def _renormaliser(class_weight: torch.Tensor, min_weight: float) -> torch.Tensor:
    """``(m,)`` the posterior mass kept above ``min_weight`` (so each particle counts once)."""
    kept = torch.where(class_weight >= min_weight, class_weight, 0.0).sum(-1)
    return kept.to(torch.float64).clamp(min=1e-12)


def _ring_sizes(like: torch.Tensor, r_low: int) -> torch.Tensor:
    """``(n_rings,)`` the size (index) of rings 1 to ``r_low``, 0 beyond."""
    size = torch.arange(like.shape[-1], dtype=like.dtype, device=like.device)
    size[r_low + 1 :] = 0.0
    return size
