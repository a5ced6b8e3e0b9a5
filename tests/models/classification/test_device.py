"""The classifier on a device: checked on a CPU with CUDA's device rules enforced
(:mod:`tests._fake_cuda`); its agreement with a real GPU is ``tests/gpu``'s. Its store, sent to
the device a chunk at a time, gives the answer of all at once."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from causalscope.models.classification import (
    Assignment,
    Class2D,
    Class2DSettings,
    ParticleCtfs,
    _em,
)
from tests._fake_cuda import FakeCuda, OnDevice

BOX, APIX, N = 32, 4.0, 200


def _rods_and_balls() -> tuple[np.ndarray, ParticleCtfs]:
    """``N`` noisy images: a rod (Gaussian 5 by 2.5 px) at random in-plane angles, and a
    round ball (4 px) of the same mass, alternately; phase-flipped data at 4 A/px."""
    rng = np.random.default_rng(3)
    axis = np.arange(BOX) - BOX // 2
    y, x = np.meshgrid(axis, axis, indexing="ij")
    images = rng.normal(0.0, 1.0, (N, BOX, BOX))
    for i, angle in enumerate(rng.uniform(0, np.pi, N)):
        u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
        rod = np.exp(-((u / 5.0) ** 2 + (v / 2.5) ** 2) / 2)
        ball = np.exp(-(x**2 + y**2) / (2 * 4.0**2)) * 0.78
        images[i] += 5.0 * (rod if i % 2 else ball)
    ctf = ParticleCtfs(np.full(N, 15_000.0), np.full(N, 15_000.0), np.zeros(N), 300.0, 2.7, 0.07,
                       APIX, phase_flipped=True)  # fmt: skip
    return images.astype(np.float32), ctf


def test_on_a_gpu_the_classes_are_the_cpus_and_pickle_on_the_cpu() -> None:
    """Told ``device="cuda"``, the classifier keeps its sums on the device and its particle
    store in host memory (sent a chunk at a time), pickles
    with CPU tensors only (a saved one, moved back with ``to``, takes the next batch) and
    answers on the CPU with the CPU's classes to the last bit (the emulation's arithmetic is
    the CPU's); the classes it finds are the rods' and the balls' (purity measured 0.99-1.0)."""
    images, ctf = _rods_and_balls()
    first, rest = np.arange(120), np.arange(120, N)
    settings = Class2DSettings(n_classes=3, particle_diameter_angstrom=48.0, seed=1)
    found = {}
    for device in ("cuda", "cpu"):
        with FakeCuda():
            model = Class2D(box_px=BOX, pixel_size_angstrom=APIX, settings=settings, device=device)
            model.partial_fit(images[first], ctf.take(first), first)
            restored = pickle.loads(pickle.dumps(model))
            assert type(restored.sums.num) is torch.Tensor and restored.device.type == "cpu"
            restored.to(device).partial_fit(images[rest], ctf.take(rest), rest)
            assert isinstance(restored.sums.num, OnDevice) == (device == "cuda")
            assert not isinstance(restored.stored()[0], OnDevice)  # the store stays on the host
            found[device] = (restored.reassign_all(), restored.averages(), restored.unsupported())
    (gpu, gpu_averages, gpu_unsupported), (cpu, cpu_averages, cpu_unsupported) = found.values()
    for name in Assignment.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(gpu, name), getattr(cpu, name))
    np.testing.assert_array_equal(gpu_averages, cpu_averages)
    np.testing.assert_array_equal(gpu_unsupported, cpu_unsupported)
    rods = np.arange(N) % 2 == 1
    for k in np.unique(gpu.class_index):
        members = rods[gpu.class_index == k]
        assert max(members.mean(), 1 - members.mean()) >= 0.9, (k, members.mean())


def test_sums_taken_chunk_by_chunk_from_the_store_equal_those_taken_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The M-step's sums of particles 50-149, taken from the whole store by their index
    seven (particle, class) pairs at a time, equal those of the same images taken out first
    and added in one go, and their aligned spectra seven at a time are those of all at once
    to the bit: the chunks bound the memory of a full pass, not its answer."""
    images, ctf = _rods_and_balls()
    settings = Class2DSettings(n_classes=3, particle_diameter_angstrom=48.0, seed=1)
    model = Class2D(box_px=BOX, pixel_size_angstrom=APIX, settings=settings)
    model.partial_fit(images, ctf, np.arange(N))
    stored, ctfs, ids = model.stored()
    some, grid = np.arange(50, 150), model.grid
    estep = model._estep(some)
    pairs = int((estep.class_weight >= 0.01).sum())
    assert pairs > len(some)  # some particles add to more than one class
    kwargs = {"grid": grid, "shifts_px": model.shifts, "n_classes": 3}
    once = _em.accumulate(stored[some], ctfs.take(some), ids[some], estep, **kwargs)  # type: ignore[arg-type]
    rng = np.random.default_rng(5)  # a turn and a shift of its own for each particle
    turns = torch.as_tensor(rng.uniform(0, 2 * np.pi, len(some)), dtype=torch.float32)
    moves = torch.as_tensor(rng.uniform(-2, 2, (len(some), 2)), dtype=torch.float32)
    whole = _em.aligned_spectra(stored, ctfs, some, turns, moves, grid=grid)
    monkeypatch.setattr(_em, "PAIR_PIXELS", 7 * grid.box**2)
    chunked = _em.aligned_spectra(stored, ctfs, some, turns, moves, grid=grid)
    for chunked_part, whole_part in zip(chunked, whole, strict=True):
        torch.testing.assert_close(chunked_part, whole_part, rtol=0, atol=0)
    sums = _em.accumulate(stored, ctfs, ids, estep, index=some, **kwargs)  # type: ignore[arg-type]
    for name in ("num", "den", "weight", "weight2"):
        torch.testing.assert_close(getattr(sums, name), getattr(once, name))
    assert float(sums.weight[:, 1].sum()) == pytest.approx(float((ids[some] % 2 == 1).sum()))
