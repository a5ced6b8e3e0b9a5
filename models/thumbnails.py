"""Small 8-bit pictures of an exposure for the dashboard and for people: the micrograph, its
power spectrum beside the fitted CTF (the left half measured, the right half the model, as
CTFFIND's diagnostic image shows them), and the micrograph with its picks and the areas left
unpicked drawn on it (in colour).

Pure functions on tensors; the caller encodes and writes the pictures.
"""

from __future__ import annotations

import numpy as np
import torch

from causalscope.models.ctf import ctf_2d

__all__ = [
    "EXCLUDED_RGB",
    "PICK_RGB",
    "micrograph_thumbnail",
    "picks_thumbnail",
    "power_spectrum_thumbnail",
    "to_uint8",
]

#: colour of a pick's ring (green) and the tint of the areas not picked in (orange)
PICK_RGB = (40, 230, 60)
EXCLUDED_RGB = (255, 140, 0)
#: how much of the tint an excluded pixel takes (the micrograph shows through the rest)
_TINT = 0.45


def to_uint8(
    image: torch.Tensor, *, low_percentile: float = 0.5, high_percentile: float = 99.5
) -> np.ndarray:
    """Stretch ``(h, w)`` values between two percentiles onto 0..255 (a numpy ``uint8`` array).

    Non-finite pixels become 0. A constant image maps to mid-grey.
    """
    if image.ndim != 2:
        raise ValueError(f"expected an (h, w) image, got shape {tuple(image.shape)}")
    if not 0 <= low_percentile < high_percentile <= 100:
        raise ValueError(
            f"percentiles must satisfy 0 <= low < high <= 100, got {low_percentile}, "
            f"{high_percentile}"
        )
    values = image.detach().to(torch.float32)
    finite = torch.isfinite(values)
    if not bool(finite.any()):
        return torch.zeros(values.shape, dtype=torch.uint8).numpy()
    sample = values[finite].cpu().numpy()
    if sample.size > 1_000_000:  # a strided sample is enough
        sample = sample[:: sample.size // 1_000_000 + 1]
    # numpy selects the two order statistics around each percentile (linear interpolation,
    # as torch.quantile, which sorts the whole sample: 4x slower on a 512^2 thumbnail)
    low, high = (float(v) for v in np.percentile(sample, [low_percentile, high_percentile]))
    if high <= low:
        out = torch.full(values.shape, 128, dtype=torch.uint8)
    else:
        scaled = (values - low) / (high - low) * 255.0
        out = scaled.nan_to_num(0.0, 0.0, 0.0).clamp(0, 255).round().to(torch.uint8)
    return out.cpu().numpy()


def _bin_to(image: torch.Tensor, size_px: int) -> torch.Tensor:
    """Average ``(h, w)`` in square bins so that the longer side is at most ``size_px``."""
    h, w = image.shape[-2:]
    factor = max(1, -(-max(h, w) // size_px))
    if factor == 1:
        return image
    hc, wc = h // factor * factor, w // factor * factor
    cropped = image[..., :hc, :wc]
    return cropped.reshape(hc // factor, factor, wc // factor, factor).mean(dim=(1, 3))


def micrograph_thumbnail(image: torch.Tensor, *, size_px: int = 512) -> np.ndarray:
    """The ``(h, w)`` micrograph binned to at most ``size_px`` and contrast-stretched (uint8).

    Binning averages (a box low-pass), which is what makes particles visible at this size;
    the stretch ignores the 0.5 % darkest and brightest pixels (hot pixels, carbon edges).
    """
    if size_px < 8:
        raise ValueError(f"size_px must be at least 8, got {size_px}")
    binned = _bin_to(image.detach().to(torch.float32), size_px)
    return to_uint8(binned)


def power_spectrum_thumbnail(
    spectrum: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    voltage_kv: float | None = None,
    spherical_aberration_mm: float | None = None,
    amplitude_contrast: float | None = None,
    defocus_u_angstrom: float | None = None,
    defocus_v_angstrom: float | None = None,
    defocus_angle_deg: float | None = None,
    phase_shift_deg: float = 0.0,
    size_px: int = 512,
) -> np.ndarray:
    """A centred ``(n, n)`` power spectrum as a picture, the fitted CTF in its right half.

    The measured half shows ``log(spectrum)`` with its radial background removed (the mean
    of each ring's log-values), so the Thon rings stand out at every resolution. With the
    fit's parameters the right half shows ``CTF^2`` on the same grid; a good fit continues the
    rings across the middle line. Returns a uint8 array of at most ``size_px`` square.
    """
    if spectrum.ndim != 2 or spectrum.shape[0] != spectrum.shape[1]:
        raise ValueError(f"expected a square (n, n) spectrum, got {tuple(spectrum.shape)}")
    n = int(spectrum.shape[0])
    values = torch.log(spectrum.detach().to(torch.float64).clamp_min(1e-30))
    y, x = torch.meshgrid(
        torch.arange(n, dtype=torch.float64) - n // 2,
        torch.arange(n, dtype=torch.float64) - n // 2,
        indexing="ij",
    )
    ring = torch.sqrt(x**2 + y**2).round().to(torch.int64)
    rings = ring.flatten()
    # the mean of each ring of log-values: the smooth background (envelope, noise) to remove
    sums = torch.bincount(rings, weights=values.flatten())
    counts = torch.bincount(rings).clamp_min(1)
    background = (sums / counts)[ring]
    measured = values - background
    measured[ring <= 2] = 0.0  # the origin and its neighbours carry only the mean
    picture = to_uint8(measured, low_percentile=2.0, high_percentile=99.0)
    fitted = (
        voltage_kv,
        spherical_aberration_mm,
        amplitude_contrast,
        defocus_u_angstrom,
        defocus_v_angstrom,
        defocus_angle_deg,
    )
    if all(value is not None for value in fitted):
        ctf = ctf_2d(
            (n, n),
            pixel_size_angstrom=pixel_size_angstrom,
            defocus_u_angstrom=float(defocus_u_angstrom),  # type: ignore[arg-type]
            defocus_v_angstrom=float(defocus_v_angstrom),  # type: ignore[arg-type]
            defocus_angle_deg=float(defocus_angle_deg),  # type: ignore[arg-type]
            voltage_kv=float(voltage_kv),  # type: ignore[arg-type]
            spherical_aberration_mm=float(spherical_aberration_mm),  # type: ignore[arg-type]
            amplitude_contrast=float(amplitude_contrast),  # type: ignore[arg-type]
            phase_shift_deg=phase_shift_deg,
            rfft=False,
            fftshift=True,
        )
        model = (ctf.to(torch.float32) ** 2 * 255.0).round().clamp(0, 255).to(torch.uint8)
        picture[:, n // 2 :] = model[:, n // 2 :].cpu().numpy()
    binned = _bin_to(torch.as_tensor(picture, dtype=torch.float32), size_px)
    return binned.round().clamp(0, 255).to(torch.uint8).numpy()


def picks_thumbnail(
    image: torch.Tensor,
    picks_xy_px: torch.Tensor | np.ndarray,
    *,
    diameter_px: float,
    excluded: torch.Tensor | None = None,
    size_px: int = 512,
) -> np.ndarray:
    """The micrograph ``(h, w)`` binned as :func:`micrograph_thumbnail`, in colour: each pick
    ``[x, y]`` (``(n, 2)`` px of ``image``) circled in :data:`PICK_RGB` at the particle's
    radius (at least 2 px of the picture), and the ``excluded`` pixels (``(h, w)`` bool: the
    areas not picked in) tinted :data:`EXCLUDED_RGB`. Returns ``(h', w', 3)`` uint8.
    """
    if size_px < 8:
        raise ValueError(f"size_px must be at least 8, got {size_px}")
    if diameter_px <= 0:
        raise ValueError(f"diameter_px must be > 0, got {diameter_px}")
    h, w = image.shape[-2:]
    if excluded is not None and tuple(excluded.shape) != (h, w):
        raise ValueError(f"excluded must be {(h, w)} like the image, got {tuple(excluded.shape)}")
    grey = torch.as_tensor(micrograph_thumbnail(image, size_px=size_px), dtype=torch.float32)
    th, tw = grey.shape
    factor = max(1, -(-max(h, w) // size_px))  # the binning of _bin_to
    rgb = grey[:, :, None].repeat(1, 1, 3)
    if excluded is not None:
        share = _bin_to(excluded.detach().to("cpu", torch.float32), size_px)[:th, :tw]
        tint = torch.tensor(EXCLUDED_RGB, dtype=torch.float32)
        weight = (_TINT * share)[:, :, None]
        rgb = rgb * (1.0 - weight) + tint * weight
    xy = torch.as_tensor(np.asarray(picks_xy_px, dtype=np.float64)).reshape(-1, 2) / factor
    if len(xy):
        radius = max(2.0, 0.5 * diameter_px / factor)
        # every pick's box of pixels at once: (n, b, b) rows and columns from its corner
        reach = int(radius) + 3
        steps = torch.arange(2 * reach + 2)
        rows = (xy[:, 1].floor().long() - reach)[:, None] + steps  # (n, b)
        cols = (xy[:, 0].floor().long() - reach)[:, None] + steps
        dy2 = (rows + 0.5 - xy[:, 1:2]) ** 2
        dx2 = (cols + 0.5 - xy[:, 0:1]) ** 2
        distance = torch.sqrt(dy2[:, :, None] + dx2[:, None, :])
        inside = ((rows >= 0) & (rows < th))[:, :, None] & ((cols >= 0) & (cols < tw))[:, None, :]
        on_ring = inside & ((distance - radius).abs() <= 0.75)
        pick, i, j = torch.nonzero(on_ring, as_tuple=True)
        ring = torch.zeros((th, tw), dtype=torch.bool)
        ring[rows[pick, i], cols[pick, j]] = True
        rgb[ring] = torch.tensor(PICK_RGB, dtype=torch.float32)
    return rgb.round().clamp(0, 255).to(torch.uint8).numpy()
