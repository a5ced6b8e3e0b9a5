"""Reconstruction on CUDA against the CPU: projection, CTF-weighted backprojection and the
half-map FSC (masked, with phase randomisation), on 800 noisy particles of a known 32^3 map.

The device comes from the inputs (:class:`Projector`'s map, :class:`Accumulator`'s
``device``, the half-maps of :func:`half_map_fsc`). The particles are made once, on the CPU,
and moved. Tolerances: interpolation and float32 transforms round alike on both devices to
about 1e-6 relative; the insertion sums with atomic adds on CUDA (the order of the sums
differs, again about 1e-6); the FSC is a ratio of sums over shells. The tolerances (1e-4
relative for images and maps, 1e-3 for the FSC) leave a hundredfold margin and catch any
difference of substance (a mask or randomised phases left on another device raise; a wrong
shell or weight moves a curve by far more).

Third-party distributions these tests need, found by importing and running them with ``ray``,
``duckdb``, ``textual`` and ``zmq`` blocked (none of the four is imported): torch, numpy,
scipy, einops, torch-fourier-shell-correlation, torch-grid-utils, torch-image-interpolation
(the teamtomo primitives), pytest.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fourier_shell_correlation import fourier_shell_correlation

from causalscope.models.reconstruction import (
    Accumulator,
    HalfMapFsc,
    ParticleCtfs,
    Projector,
    half_map_fsc,
    soft_spherical_mask,
)
from tests.gpu._agreement import relative_difference
from tests.models.reconstruction._maps import blob_map, blob_projection, particle_images

pytestmark = pytest.mark.gpu

CUDA = "cuda"
DEVICES = (CUDA, "cpu")
BOX, N_PARTICLES, APIX = 32, 800, 2.0

Particles = tuple[torch.Tensor, torch.Tensor, ParticleCtfs, torch.Tensor]


@pytest.fixture(scope="module")
def truth() -> torch.Tensor:
    """Gaussian blobs 1.5-3 px wide: power in the first 7 of 17 shells."""
    return blob_map(BOX, seed=1)


@pytest.fixture(scope="module")
def particles(truth: torch.Tensor) -> Particles:
    """CTF-modulated, shifted projections at random poses, with white noise at half the
    images' own standard deviation."""
    images, rotations, ctfs, offsets = particle_images(truth, N_PARTICLES, pixel_size_angstrom=APIX)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    return images + 0.5 * images.std() * noise, rotations, ctfs, offsets


@pytest.fixture(scope="module")
def reconstructions(particles: Particles) -> dict[str, tuple[list[torch.Tensor], torch.Tensor]]:
    """Each device's two half-maps (even and odd particles) and the full map."""
    images, rotations, ctfs, offsets = particles
    out = {}
    for device in DEVICES:
        halves = []
        for half in (0, 1):
            index = np.arange(half, N_PARTICLES, 2)
            accumulator = Accumulator(BOX, device=device)
            grid = ctfs.take(index).rfft_grid(accumulator.padded_px, device=torch.device(device))
            accumulator.add(
                images[index].to(device),
                rotations[index].to(device),
                grid,
                shifts_px=offsets[index].to(device),
            )
            halves.append(accumulator)
        maps = [a.reconstruct() for a in halves]
        out[device] = (maps, halves[0].merged(halves[1]).reconstruct())
    return out


def test_projections_on_cuda_match_the_cpu_and_the_exact_ones(
    truth: torch.Tensor, particles: Particles
) -> None:
    _, rotations, _, _ = particles
    poses = rotations[:64]
    images = {device: Projector(truth.to(device)).project(poses.to(device)) for device in DEVICES}
    assert images[CUDA].device.type == "cuda"
    # trilinear samples of one padded transform and two float32 transforms per image
    assert relative_difference(images[CUDA], images["cpu"]) <= 1e-4
    # truth: the analytic projections of the blobs (line integrals of 3D Gaussians); the
    # oversampled central slice is within 1-2 % of them (module notes of .projection)
    for device in DEVICES:
        for i in range(4):
            exact = blob_projection(BOX, poses[i].numpy().astype(np.float64), seed=1)
            assert relative_difference(images[device][i], exact) < 0.03, (device, i)


def test_backprojection_on_cuda_matches_the_cpu_and_the_truth(
    truth: torch.Tensor, reconstructions: dict[str, tuple[list[torch.Tensor], torch.Tensor]]
) -> None:
    (halves, full), (halves_cpu, full_cpu) = reconstructions[CUDA], reconstructions["cpu"]
    assert full.device.type == "cuda"
    for a, b in zip([*halves, full], [*halves_cpu, full_cpu], strict=True):
        assert relative_difference(a, b) <= 1e-4
    for device in DEVICES:
        # the full map against the truth: measured 0.93 or more in the shells that carry the
        # blobs' power (1-6), 0.72 in shell 7
        curve = fourier_shell_correlation(reconstructions[device][1].cpu(), truth)
        assert float(curve[1:7].min()) > 0.9, (device, curve[:8])


def test_half_map_fsc_on_cuda_matches_the_cpu_and_the_resolution(
    reconstructions: dict[str, tuple[list[torch.Tensor], torch.Tensor]],
) -> None:
    """The masked FSC randomises the phases beyond 0.8: that path ran on the CPU only (its
    frequencies, random phases and shell index were CPU tensors) until it followed the maps."""
    mask = soft_spherical_mask(BOX, radius_px=12.0, edge_px=3.0)  # made on the CPU, as callers do
    fsc: dict[str, HalfMapFsc] = {}
    for device in DEVICES:
        maps, _ = reconstructions[device]
        fsc[device] = half_map_fsc(maps[0], maps[1], pixel_size_angstrom=APIX, mask=mask)
    cuda, cpu = fsc[CUDA], fsc["cpu"]
    assert cuda.masked.device.type == "cuda"
    # correlations over shells of maps equal to 1e-4: the curves to 1e-3 (the random phases
    # are drawn on the CPU for both, so the masked curves are comparable too)
    assert float((cuda.unmasked.cpu() - cpu.unmasked).abs().max()) <= 1e-3
    assert float((cuda.masked.cpu() - cpu.masked).abs().max()) <= 1e-3
    for threshold in (0.143, 0.5):
        assert cuda.resolution_angstrom(threshold) == pytest.approx(
            cpu.resolution_angstrom(threshold), rel=1e-3
        )
    for device, result in fsc.items():
        # the blobs carry no power beyond shell 7 (9.1 A at 2 A/px): measured 9.2 A masked,
        # 8.3 A unmasked; the masked curve above 0.9 through shell 6 (10.7 A)
        assert 7.0 < result.resolution_angstrom(0.143) < 11.0, device
        assert 7.0 < result.resolution_angstrom(0.143, masked=False) < 11.0, device
        assert float(result.masked[1:7].cpu().min()) > 0.9, device
