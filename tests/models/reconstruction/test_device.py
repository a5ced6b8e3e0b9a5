"""Refinement and ab initio on a device: checked on a CPU with CUDA's device rules enforced
(:mod:`tests._fake_cuda`); their agreement with a real GPU is ``tests/gpu``'s."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from causalscope.models.reconstruction import ParticleCtfs
from causalscope.models.reconstruction.ab_initio import AbInitioSettings, ab_initio
from causalscope.models.reconstruction.refine import RefinementSettings, RunningRefinement
from tests._fake_cuda import FakeCuda, OnDevice
from tests.models.reconstruction._maps import blob_map, particle_images

APIX, BOX, N = 2.0, 24, 80
EXACT = {"rtol": 0.0, "atol": 0.0}  # the emulation computes on the CPU: equal bits

# many small transforms: a second thread only contends
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _particles() -> tuple[torch.Tensor, torch.Tensor, ParticleCtfs]:
    truth = blob_map(BOX, seed=4, n_blobs=30, reach=0.33)
    images, _, ctfs, _ = particle_images(truth, N, pixel_size_angstrom=APIX, seed=5)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    return truth, images + images.std() * noise, ctfs


def test_refinement_on_a_gpu_is_the_cpus_and_saves_on_the_cpu() -> None:
    """Told ``device="cuda"``, the refinement keeps its half-maps on the device, answers
    poses and the FSC on the CPU, equal to the CPU's to the last bit (the emulation's
    arithmetic is the CPU's), and its state holds CPU tensors only, which a refinement on
    the CPU loads and carries on from as the one that saved it does."""
    truth, images, ctfs = _particles()
    half_set = 1 + np.arange(N) % 2
    settings = RefinementSettings(initial_resolution_angstrom=20.0, local_steps_deg=(7.5,))
    found = {}
    for device in ("cuda", "cpu"):
        with FakeCuda():
            refinement = RunningRefinement(
                truth, pixel_size_angstrom=APIX, settings=settings, device=device
            )
            alignment = refinement.refine(images, ctfs, half_set, iterations=1)
            assert isinstance(refinement.half_maps()[0], OnDevice) == (device == "cuda")
            assert refinement.fsc is not None and type(refinement.fsc.masked) is torch.Tensor
            saved = pickle.loads(pickle.dumps(refinement.state_dict()))  # raises on a device one
        restored = RunningRefinement(truth, pixel_size_angstrom=APIX, settings=settings)
        restored.load_state_dict(saved)
        restored.add(images[:20], ctfs.take(np.arange(20)), half_set[:20])
        restored.update()
        assert restored.fsc is not None
        found[device] = (alignment, refinement.fsc.masked, restored.fsc.masked)
    (gpu_poses, *gpu_curves), (cpu_poses, *cpu_curves) = found.values()
    for name in ("rotations", "offsets_px", "scores"):
        assert type(getattr(gpu_poses, name)) is torch.Tensor
        torch.testing.assert_close(getattr(gpu_poses, name), getattr(cpu_poses, name), **EXACT)
    for gpu_curve, cpu_curve in zip(gpu_curves, cpu_curves, strict=True):
        torch.testing.assert_close(gpu_curve, cpu_curve, **EXACT)


def test_ab_initio_on_a_gpu_is_the_cpus_and_answers_on_the_cpu() -> None:
    """Told ``device="cuda"``, ab initio answers on the CPU with the CPU's map and poses (its
    random start and minibatches drawn by numpy whatever the device)."""
    _, images, ctfs = _particles()
    settings = AbInitioSettings(
        iterations=4, batch_size=30, final_iterations=1, final_resolution_angstrom=10.0
    )
    found = {}
    for device in ("cuda", "cpu"):
        with FakeCuda():
            found[device] = ab_initio(
                images, ctfs, pixel_size_angstrom=APIX, settings=settings, device=device
            )
    gpu, cpu = found["cuda"], found["cpu"]
    assert type(gpu.volume) is torch.Tensor and gpu.alignment is not None
    assert cpu.alignment is not None and type(gpu.alignment.rotations) is torch.Tensor
    torch.testing.assert_close(gpu.volume, cpu.volume, **EXACT)
    torch.testing.assert_close(gpu.alignment.rotations, cpu.alignment.rotations, **EXACT)
    assert gpu.history == cpu.history
