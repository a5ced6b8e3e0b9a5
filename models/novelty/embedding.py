"""Rotation-invariant embeddings of 2D images (class averages, projections of maps).

Method (the rotational power spectrum of a centred, band-passed image; Crowther & Amos 1971's
cylindrical harmonics, as used to compare class averages without aligning them):

1. **Contrast.** The background (the median beyond 90 % of the box radius) is subtracted and a
   soft circular mask applied at the box's own radius.
2. **Sampling in 1/A.** The image is band-passed in Fourier space with frequencies in 1/A
   (Gaussian low-pass, 0.5 at ``resolution_angstrom``, 20 A by default; Gaussian high-pass,
   0.5 at ``highpass_angstrom``, 200 A), so a class average at 4 A/px and a projection at
   1 A/px carry the same band. This also removes what differs between a CTF-corrected class
   average and a clean projection: the lowest frequencies and the high-resolution detail.
3. **Shift.** The image is moved (a Fourier phase shift) so that the centroid of its positive
   part lies at the centre; twice, as the centroid moves with the window.
4. **Rotation.** It is sampled on rings of radius ``ring_step_angstrom * (i + 1)`` (A, not
   pixels: the pixel size drops out), ``angles`` points per ring by bilinear interpolation, and
   each ring's angular Fourier transform is taken: ``c_m(r)``. The magnitudes ``|c_m(r)|`` for
   ``m = 1 .. harmonics - 1`` and the signed rotational average ``c_0(r)`` do not change when
   the image turns in its plane, nor when it is mirrored (a mirror conjugates ``c_m``).
5. **Scale.** Each ring is weighted by ``sqrt(r)`` (the polar area element, so that the
   vector's norm follows the image's) and the vector is scaled to unit length: the distance
   between two embeddings compares shapes, not contrast. An image with no signal left after
   the band-pass embeds as the zero vector.

A map is embedded as its projections over an even sampling of viewing directions
(:func:`viewing_directions`: a Fibonacci spiral on a hemisphere, since the embedding is
mirror-invariant and the projection along ``-d`` is the mirror of that along ``d``), each
projection one entry: any class average then finds its nearest view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "MASK_RADII_ANGSTROM",
    "EmbeddingSettings",
    "embed_images",
    "embed_map",
    "ladder_radius",
    "map_views",
    "viewing_directions",
]

#: The mask radii (A) the index embeds every entry at; a query uses the largest that fits its
#: box (:func:`ladder_radius`), so that a class average boxed tightly is compared with
#: projections cut by the same mask (the mask changes an embedding more than anything else).
MASK_RADII_ANGSTROM = (40.0, 48.0, 56.0, 64.0, 76.0, 88.0, 104.0, 120.0, 140.0, 164.0, 192.0)


def ladder_radius(box_px: int, pixel_size_angstrom: float) -> float:
    """The largest of :data:`MASK_RADII_ANGSTROM` within 95 % of a box's half-width (the
    smallest where none is)."""
    fits = [r for r in MASK_RADII_ANGSTROM if r <= 0.95 * box_px / 2 * pixel_size_angstrom]
    return max(fits) if fits else MASK_RADII_ANGSTROM[0]


@dataclass(frozen=True)
class EmbeddingSettings:
    """The embedding's sampling (see the module docstring); its dimension is
    ``rings * harmonics``."""

    resolution_angstrom: float = 20.0
    highpass_angstrom: float = 200.0
    ring_step_angstrom: float = 10.0
    rings: int = 16
    harmonics: int = 8
    angles: int = 64

    def __post_init__(self) -> None:
        checks = {
            "resolution_angstrom": self.resolution_angstrom > 0,
            "highpass_angstrom": self.highpass_angstrom > self.resolution_angstrom,
            "ring_step_angstrom": self.ring_step_angstrom > 0,
            "rings": self.rings >= 1,
            "harmonics": 1 <= self.harmonics <= self.angles // 2,
            "angles": self.angles >= 8,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"EmbeddingSettings.{name} out of range: {getattr(self, name)}")

    @property
    def dimension(self) -> int:
        """Length of an embedding."""
        return self.rings * self.harmonics


def _radius_px(box: int) -> torch.Tensor:
    c = torch.arange(box, dtype=torch.float32) - box // 2
    return torch.sqrt(c[:, None] ** 2 + c[None, :] ** 2)


def _band_pass(box: int, apix: float, s: EmbeddingSettings) -> torch.Tensor:
    ky = torch.fft.fftfreq(box)[:, None]
    kx = torch.fft.rfftfreq(box)[None, :]
    k = torch.sqrt(kx**2 + ky**2) / apix  # 1/A
    low = torch.exp(-math.log(2.0) * (k * s.resolution_angstrom) ** 2)
    high = 1.0 - torch.exp(-math.log(2.0) * (k * s.highpass_angstrom) ** 2)
    return low * high


def _shift(spectrum: torch.Tensor, shift_px: torch.Tensor, box: int) -> torch.Tensor:
    """rfft2 ``spectrum`` ``(n, b, b//2+1)`` moved by ``shift_px`` ``(n, 2)`` ``[x, y]``."""
    ky = torch.fft.fftfreq(box)[:, None]
    kx = torch.fft.rfftfreq(box)[None, :]
    phase = kx * shift_px[:, 0, None, None] + ky * shift_px[:, 1, None, None]
    return spectrum * torch.polar(torch.ones_like(phase), -2 * math.pi * phase)


def embed_images(
    images: torch.Tensor | np.ndarray,
    *,
    pixel_size_angstrom: float,
    mask_radius_angstrom: float | None = None,
    settings: EmbeddingSettings | None = None,
) -> np.ndarray:
    """``(n, d)`` float32 unit embeddings of ``(n, b, b)`` images (module docstring), centre
    at ``b // 2``, protein bright; ``d = settings.dimension``. ``mask_radius_angstrom``: the
    soft mask's outer radius (at most, and by default, 95 % of the box's half-width)."""
    s = settings or EmbeddingSettings()
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[-1] != x.shape[-2] or x.shape[-1] < 8:
        raise ValueError(f"images must be (n, b, b) with b >= 8, got {tuple(x.shape)}")
    if not pixel_size_angstrom > 0:
        raise ValueError(f"pixel_size_angstrom must be > 0, got {pixel_size_angstrom}")
    n, box = x.shape[0], x.shape[-1]
    if n == 0:
        return np.zeros((0, s.dimension), dtype=np.float32)
    half = box / 2.0
    outer = 0.95 * half
    if mask_radius_angstrom is not None:
        outer = min(outer, mask_radius_angstrom / pixel_size_angstrom)
    radius = _radius_px(box)
    outside = radius >= min(0.9 * half, outer)
    background = x[:, outside].median(dim=-1).values
    edge = torch.clamp((outer - radius) / (0.1 * outer), 0.0, 1.0)
    mask = 0.5 - 0.5 * torch.cos(math.pi * edge)
    x = (x - background[:, None, None]) * mask
    spectrum = torch.fft.rfft2(torch.fft.ifftshift(x, dim=(-2, -1)))
    spectrum = spectrum * _band_pass(box, pixel_size_angstrom, s)
    c = torch.arange(box, dtype=torch.float32) - box // 2
    shift = torch.zeros(n, 2)
    for _ in range(2):
        image = torch.fft.fftshift(torch.fft.irfft2(spectrum, s=(box, box)), dim=(-2, -1))
        weight = image.clamp(min=0.0) * mask
        total = weight.sum(dim=(-2, -1)).clamp(min=1e-20)
        centroid = (
            torch.stack(
                [
                    (weight * c[None, None, :]).sum((-2, -1)),
                    (weight * c[None, :, None]).sum((-2, -1)),
                ],
                dim=-1,
            )
            / total[:, None]
        )
        centroid = centroid.clamp(-0.25 * box, 0.25 * box)
        spectrum = _shift(spectrum, -centroid, box)
        shift += centroid
    image = torch.fft.fftshift(torch.fft.irfft2(spectrum, s=(box, box)), dim=(-2, -1))
    radii_angstrom = s.ring_step_angstrom * torch.arange(1, s.rings + 1, dtype=torch.float32)
    theta = 2 * math.pi * torch.arange(s.angles, dtype=torch.float32) / s.angles
    r_px = radii_angstrom / pixel_size_angstrom
    gx = r_px[:, None] * torch.cos(theta)[None, :]
    gy = r_px[:, None] * torch.sin(theta)[None, :]
    # grid_sample's normalised coordinates: pixel i at -1 + (2 i + 1) / b (align_corners=False)
    grid = torch.stack(
        [(gx + box // 2 + 0.5) * 2 / box - 1, (gy + box // 2 + 0.5) * 2 / box - 1], -1
    )
    rings = F.grid_sample(
        image[:, None],
        grid[None].expand(n, -1, -1, -1),
        mode="bilinear",
        align_corners=False,
        padding_mode="zeros",
    )[:, 0]  # (n, rings, angles)
    harmonics = torch.fft.rfft(rings, dim=-1)[..., : s.harmonics] / s.angles
    features = harmonics.abs()
    features[..., 0] = harmonics[..., 0].real
    features = features * torch.sqrt(radii_angstrom / s.ring_step_angstrom)[None, :, None]
    flat = features.reshape(n, -1)
    norm = flat.norm(dim=-1, keepdim=True)
    flat = torch.where(norm > 1e-12, flat / norm.clamp(min=1e-30), torch.zeros_like(flat))
    return flat.numpy().astype(np.float32)


def viewing_directions(n: int) -> np.ndarray:
    """``(n, 3)`` unit vectors evenly spread over the upper hemisphere (a Fibonacci spiral):
    with mirror-invariant embeddings, every view of a map up to its mirror."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    i = np.arange(n) + 0.5
    z = 1.0 - i / n  # uniform in (0, 1]: equal areas on the hemisphere
    azimuth = math.pi * (1 + 5**0.5) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(azimuth), r * np.sin(azimuth), z], axis=1)


def _rotations_viewing(directions: np.ndarray) -> np.ndarray:
    """``(n, 3, 3)`` rotations whose third row is each direction: ``R @ v`` projects along it
    (RELION's convention: the image is the map turned by ``R``, projected along z)."""
    out = np.empty((len(directions), 3, 3))
    for k, d in enumerate(directions):
        helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        u = np.cross(helper, d)
        u /= np.linalg.norm(u)
        v = np.cross(d, u)
        out[k] = np.stack([u, v, d])
    return out


def map_views(volume: torch.Tensor | np.ndarray, *, views: int = 300) -> np.ndarray:
    """``(views, b, b)`` float32 projections of a cubic map (index ``[z, y, x]``, centre
    ``b // 2``) along ``views`` directions evenly spread over a hemisphere
    (:func:`viewing_directions`)."""
    from causalscope.models.reconstruction.projection import Projector

    v = torch.as_tensor(np.asarray(volume), dtype=torch.float32)
    if v.ndim != 3 or len(set(v.shape)) != 1:
        raise ValueError(f"volume must be a cube (b, b, b), got {tuple(v.shape)}")
    projector = Projector(v)
    rotations = torch.as_tensor(_rotations_viewing(viewing_directions(views)), dtype=torch.float32)
    return torch.cat(
        [projector.project(rotations[i : i + 256]) for i in range(0, views, 256)]
    ).numpy()


def embed_map(
    volume: torch.Tensor | np.ndarray,
    *,
    pixel_size_angstrom: float,
    views: int = 300,
    mask_radius_angstrom: float | None = None,
    settings: EmbeddingSettings | None = None,
) -> np.ndarray:
    """``(views, d)`` embeddings of a map's projections (:func:`map_views`)."""
    return embed_images(
        map_views(volume, views=views),
        pixel_size_angstrom=pixel_size_angstrom,
        mask_radius_angstrom=mask_radius_angstrom,
        settings=settings,
    )
