"""Point groups: their sizes, that they are groups, and a symmetric reconstruction that adds
each particle at all its symmetry mates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fourier_shell_correlation import fourier_shell_correlation

from causalscope.models.reconstruction import Accumulator, symmetry_matrices
from tests.models.reconstruction._maps import particle_images


@pytest.mark.parametrize(
    ("name", "order"),
    [("C1", 1), ("C4", 4), ("D2", 4), ("D7", 14), ("T", 12), ("O", 24), ("I", 60)],
)
def test_groups_have_their_order_and_are_closed(name: str, order: int) -> None:
    group = symmetry_matrices(name)
    assert len(group) == order
    np.testing.assert_allclose(
        group @ group.transpose(0, 2, 1), np.broadcast_to(np.eye(3), group.shape), atol=1e-9
    )
    np.testing.assert_allclose(np.linalg.det(group), 1.0, atol=1e-9)
    products = np.einsum("aij,bjk->abik", group, group).reshape(-1, 3, 3)
    distance = np.abs(products[:, None] - group[None]).sum(axis=(2, 3)).min(axis=1)
    assert distance.max() < 1e-8  # every product is in the group


def test_unknown_groups_are_refused() -> None:
    with pytest.raises(ValueError, match="is not C<n>"):
        symmetry_matrices("Q3")


def _c4_map(box: int) -> torch.Tensor:
    """Gaussian blobs in fours, each turned by quarter turns about z through the centre."""
    rng = np.random.default_rng(7)
    axis = torch.arange(box, dtype=torch.float64) - box // 2
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    volume = torch.zeros(box, box, box, dtype=torch.float64)
    for cx, cy, cz in rng.uniform(-0.3 * box, 0.3 * box, (10, 3)):
        for px, py in ((cx, cy), (-cy, cx), (-cx, -cy), (cy, -cx)):
            volume += torch.exp(-((x - px) ** 2 + (y - py) ** 2 + (z - cz) ** 2) / (2 * 1.5**2))
    return volume.float()


def test_symmetric_insertion_equals_inserting_every_mate() -> None:
    box = 24
    images, rotations, ctfs, offsets = particle_images(_c4_map(box), 3, pixel_size_angstrom=2.0)
    group = torch.as_tensor(symmetry_matrices("C4"), dtype=torch.float32)
    symmetric = Accumulator(box, symmetry=group)
    plain = Accumulator(box)
    grid = ctfs.rfft_grid(symmetric.padded_px)
    symmetric.add(images, rotations, grid, shifts_px=offsets)
    mates = (rotations[:, None] @ group[None]).reshape(-1, 3, 3)
    plain.add(
        images.repeat_interleave(4, 0),
        mates,
        grid.repeat_interleave(4, 0),
        shifts_px=offsets.repeat_interleave(4, 0),
    )
    torch.testing.assert_close(symmetric.data, plain.data, atol=1e-3, rtol=1e-4)


def test_symmetry_recovers_more_of_a_symmetric_map_from_few_particles() -> None:
    box = 32
    truth = _c4_map(box)
    images, rotations, ctfs, offsets = particle_images(truth, 25, pixel_size_angstrom=2.0)
    images = images + 2.0 * images.std() * torch.randn(
        images.shape, generator=torch.Generator().manual_seed(1)
    )

    def reconstruct(symmetry: torch.Tensor | None) -> torch.Tensor:
        accumulator = Accumulator(box, symmetry=symmetry)
        accumulator.add(images, rotations, ctfs.rfft_grid(accumulator.padded_px), shifts_px=offsets)
        return accumulator.reconstruct()

    c4 = torch.as_tensor(symmetry_matrices("C4"), dtype=torch.float32)
    with_symmetry = fourier_shell_correlation(reconstruct(c4), truth)[1:10].mean()
    without = fourier_shell_correlation(reconstruct(None), truth)[1:10].mean()
    # measured: mean FSC against the truth over shells 1-9, 0.73 with C4 and 0.61 without
    assert float(with_symmetry) > float(without) + 0.05


def _turn(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.deg2rad(angle_deg)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def test_pose_error_is_folded_by_the_symmetry() -> None:
    """A pose that differs from the truth by a symmetry operator and then a 7 degree turn is
    7 degrees off for a map with that symmetry (O: its mates are 90 degrees or more apart),
    and far more without it; with C1 the folded error is the plain one."""
    from causalscope.models.reconstruction import symmetric_angle_deg
    from causalscope.models.rotations import rotation_angle_deg

    rng = np.random.default_rng(2)
    group = symmetry_matrices("O")
    truth = np.stack([_turn(rng.normal(size=3), rng.uniform(0, 180)) for _ in range(40)])
    mates = group[rng.integers(1, len(group), 40)]
    assigned = np.stack(
        [t @ s @ _turn(rng.normal(size=3), 7.0) for t, s in zip(truth, mates, strict=True)]
    )
    np.testing.assert_allclose(symmetric_angle_deg(assigned, truth, group), 7.0, atol=1e-5)
    assert rotation_angle_deg(assigned, truth).min() > 60.0
    np.testing.assert_allclose(
        symmetric_angle_deg(assigned, truth, symmetry_matrices("C1")),
        rotation_angle_deg(assigned, truth),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="group must be"):
        symmetric_angle_deg(assigned, truth, np.eye(3))


def test_a_symmetry_mate_of_a_pose_gives_the_same_projection() -> None:
    """The convention the folded error relies on: a C4 map projected at ``A`` and at ``A S``
    (S a quarter turn about z) gives the same image; at ``S A`` it does not."""
    from causalscope.models.reconstruction import Projector

    projector = Projector(_c4_map(24).double())
    pose = torch.as_tensor(_turn(np.array([1.0, 2.0, 0.5]), 40.0))
    quarter = torch.as_tensor(symmetry_matrices("C4")[1])
    images = projector.project(torch.stack([pose, pose @ quarter, quarter @ pose]))
    scale = float(images[0].abs().max())
    assert float((images[1] - images[0]).abs().max()) < 1e-3 * scale
    assert float((images[2] - images[0]).abs().max()) > 0.1 * scale
