"""Timing of the running reconstructions: one 2D and one 3D update as the particle set grows to
``n`` (10,000), on ``threads`` torch threads.

Particles: the asymmetric phantom (:func:`models.simulate.specimen.elongated_phantom_specimen`)
as a map (:func:`models.simulate.density.specimen_map`, box 128 at 2 A/px), projected at random
poses on the box's own Fourier grid, moved by up to 2 px, multiplied by a CTF per particle
(defocus 0.8-2.5 um, up to 500 A of astigmatism, 300 kV) and given white noise of ``noise``
times the projections' standard deviation. Cheap next to the particle-stack simulator (no atoms
per particle, no ice, no shot noise), and enough for the searches to do their real work.

- 2D: :class:`models.classification.Class2D` (default settings, K = 50), given the particles at
  box 128 in batches of ``batch``, bins them itself to its working box (Nyquist 4 A: 64 px at
  2 A/px). Per batch: seconds, of which full passes (:meth:`Class2D.reassign_all`, on the
  classifier's schedule: after every batch up to 2,000 particles, every 4th after; the first
  batch holds the start and its 4 passes) and the rest (the batch's own E- and M-step; its
  E-step twice when a full pass ran, as the batch is scored again against the new classes).
  Then one more full pass over all ``n``. The particle images are kept as the live evaluator
  keeps them (``store="file"``: :func:`actors.particle_rows.particle_store`, a memory-mapped
  file in a temporary folder) or in host memory (``"memory"``); after each batch the
  classifier is saved as the evaluator saves its state (``torch.save`` and ``fsync``: seconds
  and MiB).
- 3D: :class:`models.reconstruction.refine.RunningRefinement` against the truth (which it
  low-passes to 30 A), particles Fourier-cropped to ``binned_px`` as the live evaluator does
  (:mod:`actors.reconstruction`, 64 by default: 4 A/px). Per batch: align, add, and one
  :meth:`RunningRefinement.update` (both half-maps, their FSC, the next references), and the
  resolution the batch was aligned at (the search's band follows it, so alignment costs more
  per particle as the map improves, whatever the count). The update's cost does not depend on
  the count; it is also timed once unbinned (box ``box_px``) after 200 particles at their true
  poses.

Every time is given as wall seconds and as CPU seconds of the process (all its threads): the
CPU time per particle stays put when other processes take the cores, the wall time does not.
Memory: the peak resident memory of each stage above its start (sampled, :mod:`._measure`;
for 2D also its anonymous part, without the mapped file's pages, which the kernel can drop)
and the process's lifetime peak. The load average at the start, between 2D and 3D, after each
batch and at the end (on stderr; the one between 2D and 3D in the report, beside the
``machine`` block every bench report has) says whether anything else ran.

With ``device="cuda"`` both models compute on the GPU (the particles are simulated on the CPU
and move there batch by batch, as in the live evaluator), every timer waits for the GPU's
queued work first (``torch.cuda.synchronize``), and each stage's peak GPU allocation is
reported (``torch.cuda.max_memory_allocated``; None on the CPU).
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from causalscope.daemon.bench._measure import synchronize

__all__ = ["run_timing_bench"]

_CHUNK = 500  # particles simulated or binned per call


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _simulate(n: int, *, box_px: int, apix: float, noise: float, seed: int) -> dict[str, Any]:
    """``images`` ``(n, b, b)``, their ``ctfs``, the ``truth`` map, and the true ``poses``
    (an :class:`Alignment`: RELION's origin offsets, zero scores) (module docstring)."""
    import torch

    from causalscope.daemon.bench.reconstruction import _random_ctfs
    from causalscope.models.reconstruction import Projector, shift_phase
    from causalscope.models.reconstruction.alignment import Alignment
    from causalscope.models.rotations import random_rotations
    from causalscope.models.simulate.density import specimen_map
    from causalscope.models.simulate.specimen import elongated_phantom_specimen

    rng = np.random.default_rng(seed)
    truth = specimen_map(elongated_phantom_specimen(), box_px=box_px, pixel_size_angstrom=apix)
    projector = Projector(truth)
    rotations = torch.as_tensor(random_rotations(rng, n), dtype=torch.float32)
    shifts = torch.as_tensor(rng.uniform(-2.0, 2.0, (n, 2)), dtype=torch.float32)
    ctfs = _random_ctfs(rng, n, apix=apix, bfactor=0.0)
    images = torch.empty(n, box_px, box_px)
    for first in range(0, n, _CHUNK):
        index = np.arange(first, min(n, first + _CHUNK))
        transform = projector.project_rfft(rotations[index], oversampled=False)
        transform = (
            transform * ctfs.take(index).rfft_grid(box_px) * shift_phase(box_px, shifts[index])
        )
        images[index] = torch.fft.fftshift(
            torch.fft.irfft2(transform, s=(box_px, box_px)), dim=(-2, -1)
        )
    generator = torch.Generator().manual_seed(seed)
    images += noise * float(images.std()) * torch.randn(images.shape, generator=generator)
    poses = Alignment(rotations, -shifts, torch.zeros(n))  # a particle moved by +s: origin -s
    return {"images": images, "ctfs": ctfs, "truth": truth, "poses": poses}


def _batch_ends(n: int, batch: int) -> list[int]:
    """The set's size after each batch of ``batch`` (the last one may be smaller)."""
    if n < 1 or batch < 1:
        raise ValueError(f"need n >= 1 and batch >= 1, got n={n}, batch={batch}")
    return [min(n, end) for end in range(batch, n + batch, batch)]


class _Clock:
    """Wall and CPU seconds (every thread of the process) since it was made: CPU time per
    particle stays put when another process takes cores, the wall time does not. On CUDA,
    the GPU's queued work is waited for before each reading."""

    def __init__(self, device: Any = "cpu") -> None:
        self.device = device
        synchronize(device)
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def seconds(self) -> tuple[float, float]:
        synchronize(self.device)
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def _class2d_type() -> type:
    """:class:`Class2D` whose full passes are timed (``passes``: wall and CPU s of each)."""
    from causalscope.models.classification import Class2D

    class TimedClass2D(Class2D):
        passes: list[tuple[float, float]]

        def reassign_all(self) -> Any:
            clock = _Clock(self.device)
            assignment = super().reassign_all()
            self.passes.append(clock.seconds())
            return assignment

    return TimedClass2D


def _row_2d(size: int, m: int, spent: tuple[float, float], passes: list[Any]) -> dict[str, Any]:
    full_s, full_cpu_s = sum(p[0] for p in passes), sum(p[1] for p in passes)
    return {
        "particles": size,
        "batch": m,
        "seconds": spent[0],
        "cpu_s": spent[1],
        "full_passes": len(passes),
        "full_pass_s": full_s,
        "batch_ms_per_particle": 1e3 * (spent[0] - full_s) / m,
        "batch_cpu_ms_per_particle": 1e3 * (spent[1] - full_cpu_s) / m,
        "load_1min": _load()[0],
    }


def _saved(model: Any, folder: Path) -> tuple[float, float]:
    """Seconds and MiB of saving ``model`` as the evaluator saves its state at each update
    (``torch.save``, then ``fsync``)."""
    import torch

    started, path = time.perf_counter(), folder / "state.pt"
    torch.save({"classifier": model.__getstate__()}, path)  # what pickling it writes
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    return time.perf_counter() - started, path.stat().st_size / 2**20


def _time_2d(
    images: Any, ctfs: Any, *, apix: float, batch: int, device: str, store: str
) -> dict[str, Any]:
    from causalscope.actors.particle_rows import particle_store
    from causalscope.daemon.bench._measure import peak_memory
    from causalscope.models.classification import Class2DSettings

    if store not in ("file", "memory"):
        raise ValueError(f'store must be "file" or "memory", got {store!r}')
    settings = Class2DSettings()
    folder = Path(tempfile.mkdtemp(prefix="causalscope-class2d-"))
    model = _class2d_type()(
        box_px=int(images.shape[-1]), pixel_size_angstrom=apix, settings=settings, device=device,
        store=particle_store(folder) if store == "file" else None,
    )  # fmt: skip
    model.passes = []
    rows: list[dict[str, Any]] = []
    start = 0
    try:
        with peak_memory(device) as memory:
            for size in _batch_ends(len(images), batch):
                index = np.arange(start, size)
                before = len(model.passes)
                clock = _Clock(device)
                model.partial_fit(images[index], ctfs.take(index), index)
                rows.append(_row_2d(size, len(index), clock.seconds(), model.passes[before:]))
                rows[-1]["save_s"], rows[-1]["saved_mib"] = _saved(model, folder)
                _say(
                    f"2D {size:>6} particles: {rows[-1]['seconds']:6.2f} s, of which "
                    f"{rows[-1]['full_passes']} full passes {rows[-1]['full_pass_s']:6.2f} s; "
                    f"the batch {rows[-1]['batch_ms_per_particle']:5.2f} ms/particle "
                    f"({rows[-1]['batch_cpu_ms_per_particle']:5.2f} CPU); saved "
                    f"{rows[-1]['saved_mib']:.1f} MiB in {rows[-1]['save_s']:.2f} s"
                )
                start = size
            clock = _Clock(device)
            model.reassign_all()
            full_s, full_cpu_s = clock.seconds()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    n = len(images)
    _say(f"2D full pass over {n}: {full_s:.1f} s ({1e3 * full_s / n:.2f} ms/particle)")
    return {
        "classes": settings.n_classes,
        "working_box_px": model.grid.box,
        "working_pixel_angstrom": float(model.grid.pixel_size_angstrom),
        "band_ring": model.r_max,
        "shifts": len(model.shifts),
        "batches": rows,
        "full_pass_s": full_s,
        "full_pass_cpu_s": full_cpu_s,
        "full_pass_ms_per_particle": 1e3 * full_s / n,
        "full_pass_cpu_ms_per_particle": 1e3 * full_cpu_s / n,
        "store": store,
        "peak_rss_increase_gib": memory.rss_increase_gib,
        "peak_anonymous_increase_gib": memory.anonymous_increase_gib,
        "peak_gpu_gib": memory.cuda_peak_gib,
    }


def _binned(images: Any, ctfs: Any, binned_px: int) -> tuple[Any, Any, float]:
    """Particles Fourier-cropped to ``binned_px`` (as the live evaluator bins them), their CTFs
    and pixel size."""
    import torch

    from causalscope.models.reconstruction.resample import fourier_crop

    box = int(images.shape[-1])
    target = min(box, binned_px)
    chunks = [fourier_crop(images[i : i + _CHUNK], target) for i in range(0, len(images), _CHUNK)]
    apix = ctfs.pixel_size_angstrom * box / target
    return torch.cat(chunks), replace(ctfs, pixel_size_angstrom=apix), apix


def _step_3d(refinement: Any, images: Any, ctfs: Any, half_set: np.ndarray) -> dict[str, Any]:
    """Align and add one batch, then update; the time of each, and the update's memory."""
    from causalscope.daemon.bench._measure import peak_memory

    aligned_at, m, device = refinement.resolution_angstrom, len(images), refinement.device
    clock = _Clock(device)
    alignment = refinement.align(images, ctfs, half_set)
    align_s = clock.seconds()
    refinement.add(images, ctfs, half_set, alignment)
    align_add_s = clock.seconds()
    clock = _Clock(device)
    with peak_memory(str(device)) as memory:
        refinement.update()
    update_s = clock.seconds()
    return {
        "batch": m,
        "aligned_at_angstrom": aligned_at,
        "align_s": align_s[0],
        "add_s": align_add_s[0] - align_s[0],
        "align_add_ms_per_particle": 1e3 * align_add_s[0] / m,
        "align_add_cpu_ms_per_particle": 1e3 * align_add_s[1] / m,
        "update_s": update_s[0],
        "update_cpu_s": update_s[1],
        "update_peak_rss_increase_gib": memory.rss_increase_gib,
        "update_peak_gpu_gib": memory.cuda_peak_gib,
        "resolution_angstrom": refinement.resolution_angstrom,
        "load_1min": _load()[0],
    }


def _time_3d(
    images: Any, ctfs: Any, truth: Any, *, binned_px: int, batch: int, device: str
) -> dict[str, Any]:
    from causalscope.daemon.bench._measure import peak_memory
    from causalscope.models.reconstruction.refine import RunningRefinement
    from causalscope.models.reconstruction.resample import rescale_map

    small, small_ctfs, apix = _binned(images, ctfs, binned_px)
    reference = rescale_map(
        truth,
        from_pixel_angstrom=ctfs.pixel_size_angstrom,
        to_pixel_angstrom=apix,
        box_px=int(small.shape[-1]),
    )
    refinement = RunningRefinement(reference, pixel_size_angstrom=apix, device=device)
    half_set = 1 + np.arange(len(small)) % 2
    rows: list[dict[str, Any]] = []
    start = 0
    with peak_memory(device) as memory:
        for size in _batch_ends(len(small), batch):
            index = np.arange(start, size)
            row = _step_3d(refinement, small[index], small_ctfs.take(index), half_set[index])
            rows.append({"particles": size, **row})
            _say(
                f"3D {size:>6} particles: align+add {row['align_add_ms_per_particle']:6.2f} "
                f"ms/particle ({row['align_add_cpu_ms_per_particle']:6.2f} CPU) at "
                f"{row['aligned_at_angstrom']:5.2f} A; update {row['update_s']:5.2f} s -> "
                f"{row['resolution_angstrom']:5.2f} A"
            )
            start = size
    return {
        "box_px": int(small.shape[-1]),
        "pixel_size_angstrom": apix,
        "batches": rows,
        "update_s": rows[-1]["update_s"],
        "update_peak_rss_increase_gib": rows[-1]["update_peak_rss_increase_gib"],
        "peak_rss_increase_gib": memory.rss_increase_gib,
        "peak_gpu_gib": memory.cuda_peak_gib,
    }


def _time_unbinned_update(particles: dict[str, Any], *, n: int, device: str) -> dict[str, Any]:
    """One :meth:`RunningRefinement.update` at the particles' own box, after ``n`` particles
    added at their true poses (the update's cost is the box's, not the count's)."""
    from causalscope.daemon.bench._measure import peak_memory
    from causalscope.models.reconstruction.alignment import Alignment
    from causalscope.models.reconstruction.refine import RunningRefinement

    images, ctfs, truth, poses = (particles[k] for k in ("images", "ctfs", "truth", "poses"))
    refinement = RunningRefinement(
        truth, pixel_size_angstrom=ctfs.pixel_size_angstrom, device=device
    )
    index = np.arange(min(n, len(images)))
    known = Alignment(poses.rotations[index], poses.offsets_px[index], poses.scores[index])
    refinement.add(images[index], ctfs.take(index), 1 + index % 2, known)
    with peak_memory(device) as memory:
        clock = _Clock(device)
        refinement.update()
        seconds = clock.seconds()[0]
    _say(f"3D update at box {truth.shape[-1]}: {seconds:.2f} s")
    return {
        "box_px": int(truth.shape[-1]),
        "particles": len(index),
        "update_s": seconds,
        "update_peak_rss_increase_gib": memory.rss_increase_gib,
        "update_peak_gpu_gib": memory.cuda_peak_gib,
    }


def run_timing_bench(
    *,
    n: int = 10_000,
    batch: int = 1000,
    box_px: int = 128,
    pixel_size_angstrom: float = 2.0,
    binned_px: int = 64,
    noise: float = 3.0,
    threads: int = 2,
    seed: int = 0,
    device: str = "cpu",
    store: str = "file",
) -> dict[str, Any]:
    """Run it (module docstring) on ``device``, the 2D particle images kept in ``store``
    (``file`` or ``memory``); ``summary`` holds the headline numbers."""
    import torch

    from causalscope.models.classification import Class2DSettings

    if n < 4 * Class2DSettings().n_classes or threads < 1:
        raise ValueError(
            f"need n >= {4 * Class2DSettings().n_classes} (the classes start from 4 particles "
            f"each) and threads >= 1, got n={n}, threads={threads}"
        )
    torch.set_num_threads(threads)
    load_start = _load()
    _say(f"load average {load_start}, {torch.get_num_threads()} torch threads, on {device}")
    started = time.perf_counter()
    particles = _simulate(n, box_px=box_px, apix=pixel_size_angstrom, noise=noise, seed=seed)
    images, ctfs, truth = particles["images"], particles["ctfs"], particles["truth"]
    simulate_s = time.perf_counter() - started
    _say(f"simulated {n} particles at box {box_px} in {simulate_s:.1f} s")
    class2d = _time_2d(
        images, ctfs, apix=pixel_size_angstrom, batch=batch, device=device, store=store
    )
    load_middle = _load()
    refinement = _time_3d(images, ctfs, truth, binned_px=binned_px, batch=batch, device=device)
    unbinned = _time_unbinned_update(particles, n=200, device=device)
    load_end = _load()
    total_s = time.perf_counter() - started
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    _say(f"load average {load_end}; {total_s:.0f} s in all, peak RSS {peak_gib:.2f} GiB")
    last3d = refinement["batches"][-1]
    summary = {
        "particles": n,
        "box_px": box_px,
        "pixel_size_angstrom": pixel_size_angstrom,
        "threads": torch.get_num_threads(),
        "device": device,
        "class2d_working_box_px": class2d["working_box_px"],
        "class2d_batch_ms_per_particle": [r["batch_ms_per_particle"] for r in class2d["batches"]],
        "class2d_batch_cpu_ms_per_particle": [
            r["batch_cpu_ms_per_particle"] for r in class2d["batches"]
        ],
        "class2d_full_passes": [r["full_passes"] for r in class2d["batches"]],
        "class2d_batch_s": [r["seconds"] for r in class2d["batches"]],
        "class2d_full_pass_s": class2d["full_pass_s"],
        "class2d_full_pass_cpu_ms_per_particle": class2d["full_pass_cpu_ms_per_particle"],
        "class2d_store": store,
        "class2d_save_s": [r["save_s"] for r in class2d["batches"]],
        "class2d_saved_mib": [r["saved_mib"] for r in class2d["batches"]],
        "class2d_peak_rss_increase_gib": class2d["peak_rss_increase_gib"],
        "class2d_peak_anonymous_increase_gib": class2d["peak_anonymous_increase_gib"],
        "refine_box_px": refinement["box_px"],
        "refine_align_add_ms_per_particle": [
            r["align_add_ms_per_particle"] for r in refinement["batches"]
        ],
        "refine_align_add_cpu_ms_per_particle": [
            r["align_add_cpu_ms_per_particle"] for r in refinement["batches"]
        ],
        "refine_aligned_at_angstrom": [r["aligned_at_angstrom"] for r in refinement["batches"]],
        "refine_last_batch_s": last3d["align_s"] + last3d["add_s"],
        "refine_update_s": refinement["update_s"],
        "refine_update_peak_rss_increase_gib": refinement["update_peak_rss_increase_gib"],
        "unbinned_update_s": unbinned["update_s"],
        "unbinned_update_peak_rss_increase_gib": unbinned["update_peak_rss_increase_gib"],
        "class2d_peak_gpu_gib": class2d["peak_gpu_gib"],
        "refine_peak_gpu_gib": refinement["peak_gpu_gib"],
        "unbinned_update_peak_gpu_gib": unbinned["update_peak_gpu_gib"],
        "peak_rss_gib": round(peak_gib, 3),
        "total_s": total_s,
    }
    return {
        "summary": summary,
        "simulate_s": simulate_s,
        "load_average_between_2d_and_3d": load_middle,
        "class2d": class2d,
        "refinement": refinement,
        "unbinned_update": unbinned,
    }
