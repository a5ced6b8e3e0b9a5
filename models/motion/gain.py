"""Gain and defect correction of raw counting frames.

Raw frames are multiplied by the gain reference (``1 / sensitivity``, as microscope software
writes it). Pixels that cannot be trusted, the union of

- the given ``defect_mask``,
- pixels where the gain is 0 or not finite (dead pixels and columns), and
- hot pixels found in the frame sum: ``S > m + k sqrt(g m)`` with ``S`` the pixel's
  gain-corrected sum, ``m`` the median of its 5 x 5 neighbourhood, ``g`` its gain (1 without a
  reference) and ``k = hot_pixel_sigma``: a Poisson count of mean ``m / g`` scaled by ``g``
  has variance ``g m``, so ``k = 8`` flags essentially no honest pixel (p < 1e-15) while a
  pixel with a few extra counts per frame stands out after a few frames,

are replaced in every frame by the mean of the valid pixels of their 5 x 5 neighbourhood (the
frame's mean where none is valid). The neighbours' mean is an unbiased estimate of the
pixel's expected count, so the frame mean is preserved; its variance is lower than a real
count's, which matters only for the handful of replaced pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from causalscope.models.grids import window_extreme

__all__ = ["GainCorrection", "apply_gain_and_defects", "as_frame", "upload_frames"]

_RADIUS = 2  # 5 x 5 neighbourhoods
_ROW_CHUNK = 256
_UPLOAD_FRAMES = 4  # frames per pinned buffer on their way to a GPU
# what the device converts after the transfer (native byte order; others convert on the host)
_RAW_DTYPES = {
    np.dtype(np.uint8): torch.uint8,
    np.dtype(np.int8): torch.int8,
    np.dtype(np.int16): torch.int16,
    np.dtype(np.float16): torch.float16,
    np.dtype(np.float32): torch.float32,
}


@dataclass(frozen=True)
class GainCorrection:
    """Result of :func:`apply_gain_and_defects`.

    Attributes
    ----------
    frames
        ``(F, h, w)`` float32 corrected frames.
    defect_mask
        ``(h, w)`` bool: every pixel that was replaced.
    n_hot_pixels
        Hot pixels found in the frame sum (beyond the given defects and dead gain pixels).
    frame_means
        ``(F,)`` mean of each corrected frame.
    """

    frames: torch.Tensor
    defect_mask: torch.Tensor
    n_hot_pixels: int
    frame_means: np.ndarray


def as_frame(frames: np.ndarray | torch.Tensor, index: int, device: torch.device) -> torch.Tensor:
    """Frame ``index`` of a numpy or torch stack as float32 on ``device`` (one copy)."""
    frame = frames[index]
    if isinstance(frame, np.ndarray):
        # copies and converts at once; never aliases the input (it may be Ray's read-only buffer)
        return torch.tensor(frame, dtype=torch.float32, device=device)
    return frame.to(device=device, dtype=torch.float32)


def upload_frames(frames: np.ndarray, device: torch.device | str) -> np.ndarray | torch.Tensor:
    """``frames`` ``(F, h, w)`` on a CUDA ``device`` in their own dtype (8-bit counts: a
    quarter of float32's bytes), or unchanged where that dtype is not one the device takes
    (those convert on the host, a frame at a time). Chunks of frames travel through two pinned
    host buffers in turn, so that copying the next chunk into host memory overlaps the transfer
    of this one."""
    dev = torch.device(device)
    dtype = _RAW_DTYPES.get(frames.dtype)
    if dev.type != "cuda" or dtype is None or frames.ndim != 3:
        return frames
    n, h, w = frames.shape
    out = torch.empty((n, h, w), dtype=dtype, device=dev)
    size = min(_UPLOAD_FRAMES, n)
    buffers = [torch.empty((size, h, w), dtype=dtype, pin_memory=True) for _ in range(2)]
    sent: list[torch.cuda.Event | None] = [None, None]
    for chunk, start in enumerate(range(0, n, size)):
        stop = min(n, start + size)
        slot = chunk % 2
        event = sent[slot]
        if event is not None:
            event.synchronize()  # its last transfer has left the buffer
        host = buffers[slot][: stop - start]
        host.numpy()[...] = frames[start:stop]
        out[start:stop].copy_(host, non_blocking=True)
        sent[slot] = event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(dev))
    for event in sent:
        if event is not None:
            event.synchronize()  # the buffers are freed only after their last transfer
    return out


def _local_median(image: torch.Tensor) -> torch.Tensor:
    """5 x 5 median (edges replicated), computed in row chunks to bound memory."""
    h, w = image.shape
    padded = F.pad(image[None, None], (_RADIUS,) * 4, mode="replicate")[0, 0]
    out = torch.empty_like(image)
    size = 2 * _RADIUS + 1
    for r0 in range(0, h, _ROW_CHUNK):
        r1 = min(h, r0 + _ROW_CHUNK)
        block = padded[r0 : r1 + 2 * _RADIUS]
        windows = block.unfold(0, size, 1).unfold(1, size, 1)  # (rows, w, 5, 5)
        out[r0:r1] = windows.reshape(r1 - r0, w, size * size).median(dim=-1).values
    return out


def _hot_threshold(median: torch.Tensor, scale: torch.Tensor, sigma: float) -> torch.Tensor:
    return median + sigma * torch.sqrt((scale * median).clamp(min=1.0))


def _hot_pixels(total: torch.Tensor, scale: torch.Tensor, sigma: float) -> torch.Tensor:
    """``total > m + sigma sqrt(scale m)``, ``m`` the 5 x 5 median, exactly; the median is only
    taken where the 5 x 5 minimum, a lower bound of it (the threshold grows with ``m``), lets
    the test pass: a few pixels in a million, where the full median took most of the gain
    stage's time."""
    h, w = total.shape
    padded = F.pad(total[None, None], (_RADIUS,) * 4, mode="replicate")
    minimum = window_extreme(total, _RADIUS, largest=False)
    candidate = total > _hot_threshold(minimum, scale, sigma)
    ys, xs = torch.nonzero(candidate, as_tuple=True)
    if len(ys) > h * w // 20:  # a strongly structured image: the full median is cheaper
        return total > _hot_threshold(_local_median(total), scale, sigma)
    d = torch.arange(2 * _RADIUS + 1, device=total.device)
    windows = padded[0, 0][(ys[:, None] + d)[:, :, None], (xs[:, None] + d)[:, None, :]]
    median = windows.reshape(len(ys), -1).median(dim=-1).values
    hot = torch.zeros_like(candidate)
    hot[ys, xs] = total[ys, xs] > _hot_threshold(median, scale[ys, xs], sigma)
    return hot


def _neighbour_table(
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat indices ``(M,)`` of masked pixels, their 5 x 5 neighbours ``(M, 25)`` and weights
    ``(M, 25)`` (1 for valid in-image neighbours, normalised; all 0 where none is valid)."""
    h, w = mask.shape
    ys, xs = torch.nonzero(mask, as_tuple=True)
    d = torch.arange(-_RADIUS, _RADIUS + 1, device=mask.device)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    ny = ys[:, None] + dy.reshape(1, -1)
    nx = xs[:, None] + dx.reshape(1, -1)
    inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
    ny, nx = ny.clamp(0, h - 1), nx.clamp(0, w - 1)
    index = ny * w + nx
    valid = inside & ~mask.reshape(-1)[index]
    weight = valid.to(torch.float32)
    count = weight.sum(dim=1, keepdim=True)
    weight = torch.where(count > 0, weight / count.clamp(min=1), weight)
    return ys * w + xs, index, weight


def apply_gain_and_defects(
    frames: np.ndarray | torch.Tensor,
    *,
    gain: np.ndarray | torch.Tensor | None = None,
    defect_mask: np.ndarray | torch.Tensor | None = None,
    hot_pixel_sigma: float = 8.0,
    device: torch.device | str | None = None,
) -> GainCorrection:
    """Gain-correct ``frames`` ``(F, h, w)`` (any int or float dtype, numpy or torch) and
    replace defective and hot pixels (see the module docstring).

    Frames are converted one at a time to float32 on ``device`` (default: the device of
    ``gain`` if it is a tensor, else of ``frames`` if a tensor, else CPU); the output stack is
    the only full-size copy made.
    """
    if frames.ndim != 3:
        raise ValueError(f"frames must be (F, h, w), got shape {tuple(frames.shape)}")
    n, h, w = (int(v) for v in frames.shape)
    if hot_pixel_sigma <= 0:
        raise ValueError(f"hot_pixel_sigma must be positive, got {hot_pixel_sigma}")
    if device is None:
        if isinstance(gain, torch.Tensor):
            device = gain.device
        elif isinstance(frames, torch.Tensor):
            device = frames.device
        else:
            device = "cpu"
    dev = torch.device(device)
    gain_t: torch.Tensor | None = None
    bad = torch.zeros((h, w), dtype=torch.bool, device=dev)
    if gain is not None:
        gain_t = torch.as_tensor(np.asarray(gain) if isinstance(gain, np.ndarray) else gain)
        gain_t = gain_t.to(device=dev, dtype=torch.float32)
        if gain_t.shape != (h, w):
            raise ValueError(f"gain shape {tuple(gain_t.shape)} does not match frames {(h, w)}")
        dead = ~torch.isfinite(gain_t) | (gain_t == 0)
        bad |= dead
        gain_t = torch.where(dead, torch.zeros_like(gain_t), gain_t)
    if defect_mask is not None:
        mask_t = torch.as_tensor(
            np.asarray(defect_mask) if isinstance(defect_mask, np.ndarray) else defect_mask
        ).to(device=dev, dtype=torch.bool)
        if mask_t.shape != (h, w):
            raise ValueError(
                f"defect_mask shape {tuple(mask_t.shape)} does not match frames {(h, w)}"
            )
        bad |= mask_t

    out = torch.empty((n, h, w), dtype=torch.float32, device=dev)
    if isinstance(frames, np.ndarray):
        frames = upload_frames(frames, dev)
    if dev.type != "cpu" and isinstance(frames, torch.Tensor) and frames.device == dev:
        out.copy_(frames)  # converted on the device at once
        if gain_t is not None:
            out *= gain_t
        total = out.sum(dim=0)
    else:
        total = torch.zeros((h, w), dtype=torch.float32, device=dev)
        for f in range(n):
            if dev.type == "cpu" and isinstance(frames, np.ndarray):
                out[f].numpy()[...] = frames[f]  # converted straight into place: no temporary
            else:
                out[f] = as_frame(frames, f, dev)
            if gain_t is not None:
                out[f] *= gain_t
            total += out[f]

    # hot pixels: Poisson outliers of the sum against the local median
    scale = gain_t if gain_t is not None else torch.ones_like(total)
    hot = _hot_pixels(total, scale, hot_pixel_sigma) & ~bad
    n_hot = int(hot.sum())
    bad |= hot
    del total

    means = np.empty(n)
    if bool(bad.any()):
        target, neighbours, weight = _neighbour_table(bad)
        for f in range(n):
            flat = out[f].view(-1)
            filled = (flat[neighbours] * weight).sum(dim=1)
            flat[target] = 0.0
            frame_mean = flat.sum() / max(h * w - target.numel(), 1)
            filled = torch.where(weight.sum(dim=1) > 0, filled, frame_mean)
            flat[target] = filled
    means[:] = out.mean(dim=(1, 2)).cpu().numpy()
    return GainCorrection(out, bad, n_hot, means)
