"""Projection: RELION's Euler matrices, identities of the central-slice projector, and real
particles that match projections of their map only under RELION's conventions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mrcfile
import numpy as np
import torch

from causalscope.models.reconstruction import Projector, shift_phase
from causalscope.models.rotations import (
    euler_matrices,
    euler_zyz_from_matrices,
    random_rotations,
    rotation_angle_deg,
)
from tests.models.reconstruction._maps import blob_map, blob_projection


def test_euler_matrix_reference_and_round_trip() -> None:
    # RELION's Euler_angles2matrix(rot 90, tilt 0, psi 0): x_image = y_map, y_image = -x_map
    expected = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(euler_matrices(np.array([90.0, 0.0, 0.0])), expected, atol=1e-12)
    rotations = random_rotations(np.random.default_rng(3), 200)
    np.testing.assert_allclose(
        euler_matrices(euler_zyz_from_matrices(rotations)), rotations, atol=1e-9
    )
    assert np.all(rotation_angle_deg(rotations, rotations) < 1e-4)
    turned = rotations @ euler_matrices(np.array([0.0, 0.0, 7.0]))
    np.testing.assert_allclose(rotation_angle_deg(turned, rotations), 7.0, atol=1e-6)


def test_projections_match_the_exact_projections_of_gaussian_blobs() -> None:
    box = 40
    projector = Projector(blob_map(box))
    rotations = random_rotations(np.random.default_rng(5), 5)
    images = projector.project(torch.as_tensor(rotations, dtype=torch.float32))
    for rotation, image in zip(rotations, images, strict=True):
        exact = blob_projection(box, rotation)
        # measured: 1-2 % (trilinear interpolation in a 2x padded transform)
        assert float((image - exact).norm() / exact.norm()) < 0.03


def test_batched_projection_equals_one_at_a_time() -> None:
    projector = Projector(blob_map(32))
    rotations = torch.as_tensor(random_rotations(np.random.default_rng(2), 4), dtype=torch.float32)
    batched = projector.project(rotations)
    single = torch.cat([projector.project(rotations[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)


def test_shift_phase_moves_an_image_by_whole_pixels() -> None:
    image = torch.zeros(1, 16, 16)
    image[0, 8, 8] = 1.0
    moved = torch.fft.irfft2(
        torch.fft.rfft2(image) * shift_phase(16, torch.tensor([[3.0, -2.0]])), s=(16, 16)
    )
    assert tuple(torch.nonzero(moved[0] > 0.5)[0].tolist()) == (6, 11)


# --- real particles --------------------------------------------------------------------------


def _correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(dim=(-2, -1), keepdim=True)
    b = b - b.mean(dim=(-2, -1), keepdim=True)
    return (a * b).sum(dim=(-2, -1)) / (a.norm(dim=(-2, -1)) * b.norm(dim=(-2, -1)))


def _model_images(projector, rotations, ctf, offsets_px):  # type: ignore[no-untyped-def]
    box = projector.box_px
    transform = projector.project_rfft(rotations) * ctf * shift_phase(box, -offsets_px)
    return torch.fft.fftshift(torch.fft.irfft2(transform, s=(box, box)), dim=(-2, -1))


def test_trpv1_particles_match_their_map_only_under_relion_conventions(shared_data: Path) -> None:
    from causalscope.daemon.formats.particles_read import read_particles

    folder = shared_data / "particles"
    particles = read_particles(folder / "trpv1_small_stack.star", load_images=False)
    images = torch.as_tensor(mrcfile.read(folder / "trpv1_small_stack.mrcs"), dtype=torch.float32)
    volume = torch.as_tensor(mrcfile.read(folder / "trpv1_volume.mrc"), dtype=torch.float32)
    assert particles.euler_deg is not None
    projector = Projector(volume)
    poses = torch.as_tensor(euler_matrices(particles.euler_deg), dtype=torch.float32)
    ctf = particles.ctfs.rfft_grid(images.shape[-1])
    offsets = torch.as_tensor(particles.offsets_px, dtype=torch.float32)

    right = _correlation(_model_images(projector, poses, ctf, offsets), images)
    transposed = _correlation(_model_images(projector, poses.mT, ctf, offsets), images)
    flipped_shift = _correlation(_model_images(projector, poses, ctf, -offsets), images)
    flipped_ctf = _correlation(_model_images(projector, poses, -ctf, offsets), images)
    rng = np.random.default_rng(0)
    shuffled = [
        _correlation(
            _model_images(projector, poses[rng.permutation(len(poses))], ctf, offsets), images
        ).mean()
        for _ in range(5)
    ]
    # measured: right 0.187 (every particle >= 0.15), shuffled 0.09-0.11, others <= 0.13
    assert float(right.min()) > 0.12
    assert float(right.mean()) > max(float(s) for s in shuffled) + 0.05
    for wrong in (transposed, flipped_shift, flipped_ctf):
        assert float(right.mean()) > float(wrong.mean()) + 0.05


def test_ribosome_particles_predict_a_held_out_one_only_with_their_poses(shared_data: Path) -> None:
    """17 real Pf80S particles without a map: each one is compared with the projection, at its
    pose and CTF, of the map reconstructed from the other 16 (binned to 64 px, to 25 A)."""
    from causalscope.daemon.formats.particles_read import read_particles
    from causalscope.models.reconstruction import Accumulator

    particles = read_particles(shared_data / "particles" / "sample_particles_relion31.star")
    assert particles.images is not None and particles.euler_deg is not None
    box, full = 64, particles.images.shape[-1]
    transform = torch.fft.rfft2(
        torch.fft.ifftshift(torch.as_tensor(particles.images), dim=(-2, -1))
    )
    cropped = torch.cat(
        [transform[:, : box // 2, : box // 2 + 1], transform[:, -box // 2 :, : box // 2 + 1]], 1
    )
    images = torch.fft.fftshift(torch.fft.irfft2(cropped, s=(box, box)), dim=(-2, -1))
    apix = particles.pixel_size_angstrom * full / box
    ctfs = particles.ctfs
    ctfs = dataclasses.replace(ctfs, pixel_size_angstrom=apix)
    offsets = torch.as_tensor(particles.offsets_px * full / box, dtype=torch.float32)
    k2 = torch.fft.fftfreq(box)[:, None] ** 2 + torch.fft.rfftfreq(box)[None, :] ** 2
    low_pass = k2 < (apix / 25.0) ** 2
    n = len(particles)

    def held_out_correlation(poses: torch.Tensor) -> float:
        # the sums are linear: all particles' minus one particle's are the other 16's
        def sums(index: np.ndarray) -> Accumulator:
            accumulator = Accumulator(box)
            accumulator.add(
                images[index],
                poses[index],
                ctfs.take(index).rfft_grid(accumulator.padded_px),
                shifts_px=offsets[index],
            )
            return accumulator

        everything = sums(np.arange(n))
        values = []
        for i in range(n):
            one, rest = sums(np.array([i])), Accumulator(box)
            rest.data, rest.weight = everything.data - one.data, everything.weight - one.weight
            model = Projector(rest.reconstruct()).project_rfft(poses[i : i + 1])
            model = model * ctfs.take(np.array([i])).rfft_grid(box)
            model = model * shift_phase(box, -offsets[i : i + 1])
            data = torch.fft.rfft2(torch.fft.ifftshift(images[i], dim=(-2, -1)))
            a = torch.view_as_real(model[0] * low_pass).flatten()
            b = torch.view_as_real(data * low_pass).flatten()
            values.append(float(a @ b / (a.norm() * b.norm())))
        return float(np.mean(values))

    poses = torch.as_tensor(euler_matrices(particles.euler_deg), dtype=torch.float32)
    right = held_out_correlation(poses)
    shuffled = held_out_correlation(poses[np.random.default_rng(0).permutation(n)])
    transposed = held_out_correlation(poses.mT)
    # measured: right 0.25, shuffled 0.06-0.10, transposed 0.08
    assert right > 0.18
    assert right > shuffled + 0.08
    assert right > transposed + 0.08
