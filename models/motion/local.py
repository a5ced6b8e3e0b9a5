"""Local (patch) motion: patch trajectories after the global shifts and a smooth model of them.

The global/local split: ``shifts_px`` (global) come from whole-frame correlation and so follow
the image-mean motion; the local model ``d(x, y, f)`` is what remains and has **zero mean
over the image area** in every frame (its spatial basis ``x', y', x'^2 - 1/12, y'^2 - 1/12,
x' y'`` of ``x' = x / w - 0.5``, ``y' = y / h - 0.5`` integrates to zero over the image, and it
has no constant term), so it never double-counts the global shifts. The specimen point that
sits at ``p`` in frame 0 appears in frame ``f`` at pixel ``r`` with

    p = r - shifts_px[f] - d(r, f)

exactly the simulator's convention (:mod:`models.simulate.motion`), with ``d`` evaluated at
the frame's own pixel ``r``. To compare with a simulation: ``shifts_px[f]`` against
``truth.shifts_px[f] + mean_r d_true(r, f)`` and ``shifts_px[f] + d(r, f)`` against
``truth.shifts_px[f] + d_true(r, f)``.

Temporal basis: ``tau, tau^2, tau^3`` with ``tau = f / (F - 1)``, so ``d(., ., 0) = 0``. The
model has 2 x 5 x 3 coefficients, fitted by weighted least squares to every patch's per-frame
residual shift, with each measurement weighted by the inverse of its predicted variance and
each patch allowed its own constant offset (a patch trajectory is known only up to a constant).

The coefficients, seen as a ``(2 x 5) x 3`` matrix ``M``, are fitted at rank 1, 2 and 3 and
the rank is chosen by the Bayesian information criterion. Rank 1 means one temporal profile
shared by every spatial term (a deformation of fixed shape that grows as the specimen
relaxes): 12 free parameters instead of 30. On a 1024^2 movie at 2 counts/px/frame a 400 px
patch measures its shift to about 0.6 px per frame, and the full model turns that noise into
about 0.3 px of error in the field; where the data carry the signal for more temporal
freedom (large frames, high dose, motion that does not keep its shape) the criterion keeps it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from causalscope.models.motion._align import DamageModel, align_stack, prepare_spectra
from causalscope.models.motion._coarse import band_limited, band_limited_layout, fft_friendly_below
from causalscope.models.motion._fourier import crop_shape, phase_ramp
from causalscope.models.parallel import map_pieces, small_images

__all__ = ["LocalMotionModel", "PatchShifts", "align_patches", "fit_local_model"]

N_SPATIAL = 5
N_TEMPORAL = 3
#: patch side as a multiple of the grid spacing
PATCH_OVERLAP = 2.0
#: B-factor of the patch alignment's filter, A^2
PATCH_BFACTOR_ANGSTROM2 = 100.0


def _spatial_basis(x_norm: np.ndarray, y_norm: np.ndarray) -> np.ndarray:
    """``(..., 5)`` zero-mean (over the unit square) spatial terms."""
    return np.stack(
        [x_norm, y_norm, x_norm**2 - 1.0 / 12.0, y_norm**2 - 1.0 / 12.0, x_norm * y_norm], -1
    )


def _temporal_basis(frame: np.ndarray, n_frames: int) -> np.ndarray:
    tau = np.asarray(frame, dtype=np.float64) / max(n_frames - 1, 1)
    return np.stack([tau, tau**2, tau**3], -1)


@dataclass(frozen=True)
class LocalMotionModel:
    """Smooth local displacement ``d(x, y, f)`` in pixels (see the module docstring).

    Attributes
    ----------
    coefficients_px
        ``(2, 5, 3)``: axis [x, y] x spatial term x temporal term.
    image_shape
        ``(h, w)`` of the frames.
    n_frames
        Number of frames ``F``.
    """

    coefficients_px: np.ndarray
    image_shape: tuple[int, int]
    n_frames: int

    def displacement_px(
        self, x_px: np.ndarray | float, y_px: np.ndarray | float, frame: np.ndarray | int
    ) -> np.ndarray:
        """``(..., 2)`` [dx, dy] at pixel positions of frame(s) ``frame`` (broadcasting)."""
        x, y, f = np.broadcast_arrays(
            np.asarray(x_px, dtype=np.float64),
            np.asarray(y_px, dtype=np.float64),
            np.asarray(frame, dtype=np.float64),
        )
        h, w = self.image_shape
        spatial = _spatial_basis(x / w - 0.5, y / h - 0.5)  # (..., 5)
        temporal = _temporal_basis(f, self.n_frames)  # (..., 3)
        return np.einsum("...s,...t,ast->...a", spatial, temporal, self.coefficients_px)

    def separable_field(
        self, frame: int | tuple[int, ...], *, offset_px: tuple[float, float] = (0.0, 0.0)
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The field of frame ``frame`` (or the mean field of a tuple of frames) at pixel
        ``(x, y) + offset_px`` as
        ``d_a = along_x[a][x] + along_y[a][y] + cross[a] * xn[x] * yn[y]``: returns
        ``(along_x (2, w), along_y (2, h), cross (2,), xn (w,), yn (h,))`` float64, ``xn`` and
        ``yn`` the normalised coordinates. Building an image-sized field from these costs three
        passes over it instead of a dozen."""
        h, w = self.image_shape
        xn = (np.arange(w, dtype=np.float64) + offset_px[0]) / w - 0.5
        yn = (np.arange(h, dtype=np.float64) + offset_px[1]) / h - 0.5
        c = self._spatial_coefficients(frame)  # (2, 5)
        along_x = c[:, 0:1] * xn[None, :] + c[:, 2:3] * (xn[None, :] ** 2 - 1.0 / 12.0)
        along_y = c[:, 1:2] * yn[None, :] + c[:, 3:4] * (yn[None, :] ** 2 - 1.0 / 12.0)
        return along_x, along_y, c[:, 4].copy(), xn, yn

    def _spatial_coefficients(self, frame: int | tuple[int, ...]) -> np.ndarray:
        """``(2, 5)``: the spatial terms' weights in frame ``frame`` (or their mean)."""
        temporal = _temporal_basis(np.atleast_1d(np.asarray(frame)), self.n_frames).mean(0)
        return self.coefficients_px @ temporal

    def moves(self, frame: int | tuple[int, ...]) -> bool:
        """Whether frame ``frame``'s field (or the frames' mean field) is anywhere non-zero
        (frame 0's never is)."""
        return bool(np.any(self._spatial_coefficients(frame) != 0))

    def field_groups(self, frames: list[int], tolerance_px: float) -> list[tuple[int, ...]]:
        """``frames`` cut into runs, in order, whose every field lies within ``tolerance_px``
        of the run's mean field at every pixel (a bound: each spatial term's largest value
        over the image times its weight's difference, summed, the two axes combined). A frame
        resampled with its run's mean field is then displaced by at most ``tolerance_px``."""
        # largest |term| over the unit square: x, y, x^2 - 1/12, y^2 - 1/12, x y
        reach = np.array([0.5, 0.5, 1.0 / 6.0, 1.0 / 6.0, 0.25])

        def fits(run: tuple[int, ...]) -> bool:
            mean = self._spatial_coefficients(run)
            for f in run:
                per_axis = np.abs(self._spatial_coefficients(f) - mean) @ reach
                if float(np.hypot(*per_axis)) > tolerance_px:
                    return False
            return True

        groups: list[tuple[int, ...]] = []
        for f in frames:
            if groups and fits((*groups[-1], f)):
                groups[-1] = (*groups[-1], f)
            else:
                groups.append((f,))
        return groups

    def displacement_field(
        self,
        frame: int | tuple[int, ...],
        *,
        device: torch.device | str | None = None,
        offset_px: tuple[float, float] = (0.0, 0.0),
    ) -> torch.Tensor:
        """``(h, w, 2)`` float32 field of frame ``frame`` (or the frames' mean field) at every
        pixel ``r + offset_px``."""
        dev = torch.device("cpu") if device is None else torch.device(device)
        along_x, along_y, cross, xn, yn = self.separable_field(frame, offset_px=offset_px)
        out = []
        for a in range(2):
            fx = torch.as_tensor(along_x[a], dtype=torch.float32, device=dev)
            fy = torch.as_tensor(along_y[a], dtype=torch.float32, device=dev)
            xy = torch.outer(
                torch.as_tensor(yn * cross[a], dtype=torch.float32, device=dev),
                torch.as_tensor(xn, dtype=torch.float32, device=dev),
            )
            out.append(xy.add_(fx[None, :]).add_(fy[:, None]))
        return torch.stack(out, dim=-1)


@dataclass(frozen=True)
class PatchShifts:
    """Patch trajectories measured after the global shifts.

    Attributes
    ----------
    positions_px
        ``(P, 2)`` [x, y] patch centres in frame-0 pixels.
    shifts_px
        ``(P, F, 2)`` residual shift of each patch in each frame (beyond the global shift),
        relative to frame 0.
    variances_px2
        ``(P, F, 2)`` predicted variance of each measurement.
    patch_size_px
        Side of the square patches.
    """

    positions_px: np.ndarray
    shifts_px: np.ndarray
    variances_px2: np.ndarray
    patch_size_px: int


def _patch_layout(
    shape: tuple[int, int], patches: tuple[int, int], margin: int
) -> tuple[int, np.ndarray]:
    h, w = shape
    ny, nx = patches
    size = int(PATCH_OVERLAP * min(h / ny, w / nx)) // 2 * 2
    size = fft_friendly_below(max(32, min(size, min(h, w) - 2 * margin)))

    def centres(n: int, length: int) -> np.ndarray:
        lo, hi = margin + size / 2, length - margin - size / 2
        return np.full(1, length / 2) if n == 1 else np.linspace(lo, hi, n)

    cy, cx = np.meshgrid(centres(ny, h), centres(nx, w), indexing="ij")
    return size, np.stack([cx.ravel(), cy.ravel()], axis=1)


def align_patches(
    frames: torch.Tensor,
    shifts_px: np.ndarray,
    *,
    patches: tuple[int, int],
    pixel_size_angstrom: float,
    bfactor_angstrom2: float = PATCH_BFACTOR_ANGSTROM2,
    iterations: int = 1,
    tolerance_px: float = 0.01,
    damage: DamageModel | None = None,
    measured_weights: bool = True,
) -> PatchShifts:
    """Align a grid of ``patches`` (rows, columns) of overlapping square patches.

    Each patch follows the specimen: in frame ``f`` it is cut at its frame-0 place plus the
    rounded global shift, and the remaining fraction is removed by a Fourier phase ramp
    before the leave-one-out alignment of :func:`models.motion.align_global`. Patches are
    ``PATCH_OVERLAP`` (2) times the grid spacing and kept ``max |shift| + 2`` px from the
    borders.

    The global shifts are already removed, so every patch starts at zero residual and the
    iteration refines from there. One round is the default: with the fixed filter, on
    simulated 1024^2 x 20 movies (seeds 0-2), the local model's error was 0.199 / 0.206 /
    0.216 px after 2 rounds against 0.198 / 0.224 / 0.233 px when iterating to 0.01 px (5-9
    rounds); with the measured weights, over seeds 0-7 and 16-23, 0.168 px after 1 round and
    0.168 px after 2 (0.232 px with the fixed filter and 2 rounds): the patch's noise, not
    the reference, limits it.

    (A progressive start, each frame against the running sum of those before it, suits the
    whole frame; at a patch's signal, frame 1 against frame 0 alone can lock several px off,
    and that start the iteration does not leave.)

    Patch size and filter are about noise: a patch has few pixels (the README's measurements
    say how the overlap and ``PATCH_BFACTOR_ANGSTROM2`` were chosen). The side is then
    rounded down to a size whose Fourier transform is fast (:func:`fft_friendly_below`).
    Where the filter's crop is well inside the patch's band, the patches are cut from frames
    band-limited to it on a coarser grid (:func:`band_limited`, :func:`band_limited_layout`):
    the same frequencies at a third of the transforms' cost, the patch then spanning its
    ``size`` frame pixels to within 3 %. With ``measured_weights`` each patch's
    cross-spectra are weighted by the specimen's power measured on that patch
    (:mod:`models.motion._weights`), as the whole frame's are.
    """
    n, h, w = frames.shape
    if patches[0] < 1 or patches[1] < 1:
        raise ValueError(f"patches must be positive (rows, columns), got {patches}")
    margin = int(np.ceil(np.abs(shifts_px).max())) + 2
    size, centres = _patch_layout((h, w), patches, margin)
    n_patches = len(centres)
    device = frames.device
    # frames band-limited to the patches' Fourier crop (about half of each axis at 1 A/px),
    # on a coarser grid: the patches' pieces then each run on one torch thread at 4096^2 too
    # (864 px patches; measured faster there, 14.7 -> 10.5 s, with 0.14 GiB more)
    crop = crop_shape(
        (size, size), pixel_size_angstrom=pixel_size_angstrom, bfactor_angstrom2=bfactor_angstrom2
    )
    layout = band_limited_layout((h, w), size, max(crop))
    scale = np.ones(2)  # [x, y]: grid pixels per frame pixel
    pixel, patch = pixel_size_angstrom, size
    if layout is not None:
        grid, patch = layout
        frames = band_limited(frames, grid)
        scale = np.array([grid[1] / w, grid[0] / h])
        pixel = pixel_size_angstrom / float(scale.mean())
        if damage is not None:
            damage = DamageModel(damage.mid_frame_dose_e_per_a2, damage.voltage_kv, pixel)
        # a patch a little larger than ``size`` frame pixels is kept inside the frame in
        # every frame (clipped in some frames only, it would not follow the specimen there)
        reach = np.ceil(np.abs(shifts_px * scale).max()) + 1 + patch / 2
        upper = np.array([grid[1], grid[0]]) - reach
        centres = np.clip(centres * scale, reach, np.maximum(upper, reach)) / scale
    cut, fraction = _patch_cutter(frames, shifts_px * scale, centres * scale, patch)

    # a GPU aligns all patches at once (it is launch-bound); a CPU one patch at a time, whose
    # spectra stay in cache (batching them was 1.7x slower on 2 cores), on as many Python
    # threads as torch has (models.parallel)
    group = n_patches if device.type == "cuda" else 1
    out = np.zeros((n_patches, n, 2))
    var = np.ones((n_patches, n, 2))

    def align(first: int) -> None:
        last = min(first + group, n_patches)
        stack = prepare_spectra(
            functools.partial(cut, base=first * n),
            batch_shape=(last - first, n),
            image_shape=(patch, patch),
            device=device,
            pixel_size_angstrom=pixel,
            bfactor_angstrom2=bfactor_angstrom2,
            taper_px=max(4, patch // 16),
        )
        # remove the sub-pixel part of the global shift exactly (Fourier phase ramp)
        stack.spectra *= phase_ramp(-fraction, stack.ky, stack.kx)
        residual, variance, _, _ = align_stack(
            stack,
            iterations=iterations,
            tolerance_px=tolerance_px,
            max_shift_px=max(4.0, patch / 8),
            initial_px=torch.zeros((last - first, n, 2), dtype=torch.float64, device=device),
            smooth=False,
            damage=damage,
            measured_weights=measured_weights,
        )
        out[first:last] = residual.cpu().numpy() / scale
        var[first:last] = variance.cpu().numpy() / scale**2

    map_pieces(
        align,
        range(0, n_patches, group),
        device=device,
        name="patches",
        one_thread=small_images(patch, patch),
    )
    return PatchShifts(centres, out, var, size)


def _patch_cutter(
    frames: torch.Tensor, shifts_px: np.ndarray, centres: np.ndarray, size: int
) -> tuple[Callable[..., torch.Tensor], torch.Tensor]:
    """``cut(start, stop, base=)``: patches ``base+start .. base+stop`` of the flattened
    (patch, frame) order, each cut at its frame-0 place plus the frame's rounded global shift;
    and the sub-pixel ``fraction`` of the shifts that is left to a phase ramp."""
    n, h, w = frames.shape
    device = frames.device
    rounded = np.round(np.asarray(shifts_px, dtype=np.float64))
    fraction = torch.as_tensor(shifts_px - rounded, dtype=torch.float64, device=device)
    # top-left corner of every patch in every frame: its frame-0 place + the rounded shift
    x0 = np.round(centres[:, 0] - size / 2).astype(np.int64)
    y0 = np.round(centres[:, 1] - size / 2).astype(np.int64)
    ox = np.clip(x0[:, None] + rounded[None, :, 0].astype(np.int64), 0, w - size).ravel()
    oy = np.clip(y0[:, None] + rounded[None, :, 1].astype(np.int64), 0, h - size).ravel()
    # plain slices, copied: a gather with index tensors was 3-4 times slower on a CPU
    corners = list(zip(oy.tolist(), ox.tolist(), strict=True))
    frame_index = [f for _ in range(len(centres)) for f in range(n)]

    def cut(start: int, stop: int, *, base: int) -> torch.Tensor:
        pieces = [
            frames[frame_index[i], y : y + size, x : x + size]
            for i, (y, x) in zip(
                range(base + start, base + stop), corners[base + start : base + stop], strict=True
            )
        ]
        return torch.stack(pieces).to(torch.float32)

    return cut, fraction


def fit_local_model(
    patch_shifts: PatchShifts,
    global_shifts_px: np.ndarray,
    *,
    image_shape: tuple[int, int],
    ranks: tuple[int, ...] = (1, 2, 3),
) -> LocalMotionModel:
    """Weighted least-squares fit of the smooth model to patch trajectories.

    Each measurement ``r_pf = o_p + sum_st c_st S_s(x_pf, y_pf) T_t(f)`` with a free offset
    ``o_p`` per patch and the patch position in frame ``f`` taken as its centre plus the
    global shift (``d`` is a function of the frame's pixel). Weights are inverse variances,
    floored at the median variance / 10 so that no single frame dominates.

    The ``(2 x 5) x 3`` coefficient matrix is fitted at each rank in ``ranks`` (3: the full
    model; lower ranks by alternating least squares) and the rank with the smallest Bayesian
    information criterion ``chi^2 / s^2 + k log n`` is kept, ``s^2`` the full model's
    residual variance per degree of freedom (it absorbs any miscalibration of the predicted
    variances) and ``k = r (13 - r)`` the free parameters of rank ``r``.
    """
    n_patches, n_frames, _ = patch_shifts.shifts_px.shape
    if not ranks or any(r not in (1, 2, 3) for r in ranks):
        raise ValueError(f"ranks must be a non-empty subset of (1, 2, 3), got {ranks}")
    h, w = image_shape
    frames = np.arange(n_frames)
    xs = patch_shifts.positions_px[:, None, 0] + global_shifts_px[None, :, 0]
    ys = patch_shifts.positions_px[:, None, 1] + global_shifts_px[None, :, 1]
    spatial = _spatial_basis(xs / w - 0.5, ys / h - 0.5)  # (P, F, 5)
    temporal = _temporal_basis(frames, n_frames)  # (F, 3)
    terms = spatial[:, :, :, None] * temporal[None, :, None, :]  # (P, F, 5, 3)
    # rows (axis, patch, frame); columns (axis, spatial) x temporal, block-diagonal in axis
    design = np.zeros((2, n_patches, n_frames, 2, N_SPATIAL, N_TEMPORAL))
    rhs = np.empty((2, n_patches, n_frames))
    sw = np.empty((2, n_patches, n_frames))
    for axis in range(2):
        v = patch_shifts.variances_px2[:, :, axis]
        sw[axis] = 1.0 / np.sqrt(np.maximum(v, np.median(v) / 10.0))
        design[axis, :, :, axis] = terms
        rhs[axis] = patch_shifts.shifts_px[:, :, axis]
    # whiten, then remove each patch's (weighted) offset: project it out of rows and data
    x = design * sw[..., None, None, None]
    y = rhs * sw
    unit = sw / np.sqrt((sw**2).sum(axis=2, keepdims=True))  # (2, P, F) unit offset column
    x = x - unit[..., None, None, None] * np.einsum("apf,apfjst->apjst", unit, x)[:, :, None]
    y = y - unit * np.einsum("apf,apf->ap", unit, y)[:, :, None]
    n_rows = y.size
    x = x.reshape(n_rows, 2 * N_SPATIAL, N_TEMPORAL)
    y = y.reshape(n_rows)
    full = np.linalg.lstsq(x.reshape(n_rows, -1), y, rcond=None)[0]
    full = full.reshape(2 * N_SPATIAL, N_TEMPORAL)
    n_params = 2 * N_SPATIAL * N_TEMPORAL
    dof = n_rows - 2 * n_patches - n_params
    if dof <= 0 or n_frames <= N_TEMPORAL + 1 or ranks == (3,):
        return LocalMotionModel(full.reshape(2, N_SPATIAL, N_TEMPORAL), (h, w), n_frames)
    s2 = max(_chi2(x, y, full) / dof, 1e-12)
    best_score, best = np.inf, full
    for rank in sorted(ranks):
        m = full if rank == 3 else _reduced_rank(x, y, full, rank)
        score = _chi2(x, y, m) / s2 + rank * (2 * N_SPATIAL + N_TEMPORAL - rank) * np.log(n_rows)
        if score < best_score:
            best_score, best = score, m
    return LocalMotionModel(best.reshape(2, N_SPATIAL, N_TEMPORAL), (h, w), n_frames)


def _chi2(x: np.ndarray, y: np.ndarray, m: np.ndarray) -> float:
    return float(((y - np.einsum("ijt,jt->i", x, m)) ** 2).sum())


def _reduced_rank(
    x: np.ndarray, y: np.ndarray, start: np.ndarray, rank: int, *, iterations: int = 100
) -> np.ndarray:
    """Rank-``rank`` least squares ``min |y - x . M|`` with ``M = B V^T``, alternating the two
    factors from the truncated SVD of the full solution ``start``."""
    u, s, vt = np.linalg.svd(start, full_matrices=False)
    b, v = u[:, :rank] * s[:rank], vt[:rank].T
    n = len(y)
    m = b @ v.T
    for _ in range(iterations):
        b = np.linalg.lstsq(np.einsum("ijt,tq->ijq", x, v).reshape(n, -1), y, rcond=None)[0]
        b = b.reshape(-1, rank)
        v = np.linalg.lstsq(np.einsum("ijt,jq->itq", x, b).reshape(n, -1), y, rcond=None)[0]
        v = v.reshape(-1, rank)
        new = b @ v.T
        done = np.abs(new - m).max() <= 1e-9 * max(np.abs(new).max(), 1e-12)
        m = new
        if done:
            break
    return m
