"""Denoise a micrograph with a :class:`~models.denoise.unet.UNet`, in tiles of bounded memory.

The image is normalised by robust statistics of the whole image (median and 1.4826 x the
median absolute deviation, from at most about a million pixels), cut into overlapping tiles
of at most ``tile_px``, as few and as small as cover it (the last tile of a row or column is
moved back to end at the edge), and the
tiles run through the network ``batch`` at a time under ``torch.inference_mode``. Each tile's
output is weighted by a window that rises linearly across the overlap from each inner edge
(the network sees zero padding there) and the weighted outputs are averaged. Only the output,
its weight sum and one batch of tiles are held, so memory is ``2 h w`` floats plus a batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from causalscope.models.denoise.unet import UNet
from causalscope.models.parallel import map_pieces, small_images

__all__ = ["denoise", "denoise_half_sums", "robust_normalisation"]

_MAX_STAT_PIXELS = 1 << 20


def robust_normalisation(image: torch.Tensor) -> tuple[float, float]:
    """``(median, 1.4826 * MAD)`` of an ``(h, w)`` image, from a regular subsample.

    A constant image gets a scale of 1 (nothing to normalise).
    """
    if image.ndim != 2:
        raise ValueError(f"image must be (h, w), got shape {tuple(image.shape)}")
    stride = max(1, int((image.numel() / _MAX_STAT_PIXELS) ** 0.5))
    sample = image[::stride, ::stride].reshape(-1).to(torch.float32)
    median = sample.median()
    mad = (sample - median).abs().median()
    scale = float(1.4826 * mad)
    if not scale > 0:
        scale = float(sample.std()) if sample.numel() > 1 else 0.0
    return float(median), scale if scale > 0 else 1.0


def _tile_size(length: int, tile: int, overlap: int, multiple: int) -> int:
    """The tile edge (a multiple of ``multiple``, at most ``tile``) that covers ``length``
    with the fewest tiles, each as small as that allows: 1024 px in tiles of at most 512 with
    32 px of overlap takes three of 368 px, not three of 512 (2.5 times the pixels)."""
    if length <= tile:
        return min(tile, -(-length // multiple) * multiple)
    n = -(-(length - overlap) // (tile - overlap))
    while True:
        even = -(-(length + (n - 1) * overlap) // n)  # n tiles overlapping by ``overlap``
        size = -(-even // multiple) * multiple
        if size <= tile:
            return size
        n += 1


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _ramp(length: int, overlap: int, *, rise_start: bool, rise_end: bool) -> torch.Tensor:
    """1-D weights: 1 inside, rising linearly over ``overlap`` pixels from a tiled edge."""
    i = torch.arange(length, dtype=torch.float32)
    weight = torch.ones(length)
    if overlap > 0:
        if rise_start:
            weight = torch.minimum(weight, (i + 0.5) / overlap)
        if rise_end:
            weight = torch.minimum(weight, (length - i - 0.5) / overlap)
    return weight


def _denoise_one(
    image: torch.Tensor, model: UNet, tile_px: int, overlap_px: int, batch: int
) -> torch.Tensor:
    h, w = image.shape
    m = model.multiple
    median, scale = robust_normalisation(image)
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype
    # pad (reflect) so that every tile is a multiple of the network's down-sampling
    tile_h = _tile_size(h, tile_px, overlap_px, m)
    tile_w = _tile_size(w, tile_px, overlap_px, m)
    pad_h, pad_w = max(0, tile_h - h), max(0, tile_w - w)
    out = torch.zeros((h + pad_h, w + pad_w), dtype=torch.float32, device=image.device)
    weights = torch.zeros_like(out)
    ys = _starts(h + pad_h, tile_h, tile_h - overlap_px)
    xs = _starts(w + pad_w, tile_w, tile_w - overlap_px)
    corners = [(y, x) for y in ys for x in xs]

    def tile_of(y: int, x: int) -> torch.Tensor:
        part = image[y : y + tile_h, x : x + tile_w].to(torch.float32)
        ph, pw = tile_h - part.shape[0], tile_w - part.shape[1]
        if ph or pw:
            mode = "reflect" if ph < part.shape[0] and pw < part.shape[1] else "replicate"
            part = F.pad(part[None, None], (0, pw, 0, ph), mode=mode)[0, 0]
        return part

    with torch.inference_mode():
        for first in range(0, len(corners), batch):
            group = corners[first : first + batch]
            tiles = torch.stack([tile_of(y, x) for y, x in group])[:, None]
            tiles = ((tiles - median) / scale).to(device=device, dtype=dtype)
            result = model(tiles)[:, 0].to(device=image.device, dtype=torch.float32)
            for (y, x), res in zip(group, result, strict=True):
                wy = _ramp(tile_h, overlap_px, rise_start=y > 0, rise_end=y + tile_h < h + pad_h)
                wx = _ramp(tile_w, overlap_px, rise_start=x > 0, rise_end=x + tile_w < w + pad_w)
                window = (wy[:, None] * wx[None, :]).to(image.device)
                out[y : y + tile_h, x : x + tile_w] += res * window
                weights[y : y + tile_h, x : x + tile_w] += window
    out /= weights
    return (out[:h, :w] * scale + median).to(image.dtype)


def denoise(
    image: torch.Tensor,
    model: UNet,
    *,
    tile_px: int = 1024,
    overlap_px: int = 32,
    batch: int = 1,
) -> torch.Tensor:
    """Denoise ``image`` ``(..., h, w)`` (float) tile by tile; returns the same shape and dtype.

    The model runs on its own device and dtype; the output stays on the image's device.
    Each image of a batch is normalised by its own robust statistics.

    Parameters
    ----------
    tile_px
        Tile edge (rounded down to a multiple of ``model.multiple``); ``>= 2 * overlap_px``.
    overlap_px
        Overlap of neighbouring tiles, blended linearly.
    batch
        Tiles per forward pass (memory scales with it).
    """
    if image.ndim < 2:
        raise ValueError(f"image must be (..., h, w), got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be a floating-point tensor, got {image.dtype}")
    if not torch.isfinite(image).all():
        raise ValueError("image has non-finite values")
    tile = tile_px // model.multiple * model.multiple
    if tile < model.multiple or overlap_px < 0 or tile < 2 * overlap_px:
        raise ValueError(
            f"need tile_px >= {model.multiple} and 0 <= 2 * overlap_px <= tile_px, "
            f"got tile_px={tile_px}, overlap_px={overlap_px}"
        )
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    flat = image.reshape(-1, *image.shape[-2:])
    outputs = [_denoise_one(one, model, tile, overlap_px, batch) for one in flat]
    return torch.stack(outputs).reshape(image.shape)


def denoise_half_sums(
    even: torch.Tensor,
    odd: torch.Tensor,
    model: UNet,
    *,
    tile_px: int = 1024,
    overlap_px: int = 32,
    batch: int = 1,
) -> torch.Tensor:
    """The denoised full sum ``denoise(even) + denoise(odd)`` of ``(..., h, w)`` half sums.

    The network was trained on half sums, so each half is denoised at the noise level it saw;
    each estimates the expected half sum, and their sum the expected full sum.
    """
    if even.shape != odd.shape:
        raise ValueError(f"half sums must match in shape: {even.shape} vs {odd.shape}")
    kwargs = {"tile_px": tile_px, "overlap_px": overlap_px, "batch": batch}
    device = next(model.parameters()).device
    first, second = map_pieces(
        lambda half: denoise(half, model, **kwargs),
        (even, odd),
        device=device,
        name="halves",
        one_thread=small_images(*even.shape[-2:]),
    )
    return first + second
