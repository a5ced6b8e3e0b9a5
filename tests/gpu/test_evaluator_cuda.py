"""The session evaluator's models on CUDA against the CPU: streaming 2D classification, gold-
standard refinement from a reference, ab initio, and the evaluator itself, whose state saved
on the GPU must load on a CPU.

Each runs the same simulated particles on ``"cuda"`` and on ``"cpu"`` (made on the CPU from
the same seeds, and handed over as the evaluator hands them: CPU arrays, moved batch by batch) and
asserts that the two agree within a stated tolerance and that each is right against the truth.

Where the tolerances come from. The two devices round differently (cuFFT against pocketfft,
atomic adds in the insertion and in ``index_add_``, float32 throughout): about 1e-6 relative.
These algorithms decide (a particle's class, its best pose on a grid, its top poses in ab
initio), so a rounding difference can flip a near tie, and the flip moves what follows. On a
CPU, with the particles perturbed by white noise of 1e-6 and of 1e-5 of their standard
deviation (three draws each; :func:`perturbation`), measured: 2D, no particle in another
class, class averages correlating 0.99999999 or more, every class of 10 or more pure (1.0);
refinement, no pose more than 0.04 degrees from the unperturbed one, FSC curves within 1e-6,
the resolution within 4e-7 relative; ab initio, maps correlating 0.9999998 or more. The
tolerances below are far wider than that, as the rounding of every operation on a GPU is not
one perturbation of the input (and the insertion's atomic adds make a CUDA run differ from
itself), yet well inside what a device bug (a term lost, a filter or a mask on the wrong grid,
a generator on the wrong device) does: a misplaced CTF or shift ruins the classes and the
poses. What device discipline alone can break (a CPU tensor meeting a CUDA one, a CUDA tensor
pickled) is checked on every CPU by ``tests/models/*/test_device.py`` and
``tests/actors/test_evaluation.py`` under :mod:`tests._fake_cuda`.

Third-party distributions these tests import (import name in brackets), found by importing and
running them with ``ray``, ``duckdb``, ``textual`` and ``zmq`` blocked (none of the four is
imported): torch, numpy, scipy, einops, torch-fourier-shell-correlation, torch-grid-utils,
torch-image-interpolation, networkx, pydantic, pydantic-core, annotated-types,
typing-inspection, typing-extensions, pandas, python-dateutil [dateutil], pytest; and for the
evaluator's test, through ``causalscope.daemon.formats``: mrcfile, starfile, tifffile,
imagecodecs, mdocfile, gemmi.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_fourier_shell_correlation import fourier_shell_correlation

from causalscope.models.classification import (
    Assignment,
    Class2D,
    Class2DSettings,
    ParticleCtfs,
)
from causalscope.models.reconstruction import fsc_resolution_angstrom
from causalscope.models.reconstruction.ab_initio import AbInitioSettings, ab_initio
from causalscope.models.reconstruction.map_align import match_hand
from causalscope.models.reconstruction.refine import RefinementSettings, RunningRefinement
from causalscope.models.rotations import rotation_angle_deg
from causalscope.models.simulate import (
    elongated_phantom_specimen,
    phantom_specimen,
    simulate_particle_stack,
)
from causalscope.models.simulate.specimen import Specimen
from tests.models.reconstruction._maps import blob_map, particle_images

pytestmark = pytest.mark.gpu

CUDA = "cuda"
DEVICES = (CUDA, "cpu")

# --- 2D ------------------------------------------------------------------------------------

N_2D, BOX_2D, APIX_2D, BATCH_2D = 240, 48, 4.0, 80
#: particles (of 240) whose class differs between the devices (module docstring)
MAX_CLASS_CHANGES = 5
#: the correlation of a class average (of at least 10 particles) on the two devices
MIN_AVERAGE_CORRELATION = 0.999
#: each class of at least 10 particles holds one species (measured 1.0)
MIN_PURITY = 0.9


def _rz(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class TwoClasses:
    images: np.ndarray
    ctfs: ParticleCtfs
    labels: np.ndarray


def two_classes() -> TwoClasses:
    """A shell and a rod (side view), half each, at random in-plane angles, 40 e/A^2, 4 A/px,
    phase-flipped as extraction writes them."""
    rng = np.random.default_rng(11)
    rotations = np.stack([_rz(a) for a in rng.uniform(0, 2 * math.pi, N_2D)])
    shell = phantom_specimen()
    every = slice(None, None, 4)  # every 4th atom, weighted 4: the low resolution kept
    shell = Specimen(
        shell.coords_angstrom[every], shell.element_index[every], shell.elements,
        shell.scattering_a, shell.scattering_b, shell.weights[every] * 4.0,
    )  # fmt: skip
    stack = simulate_particle_stack(
        {"shell": shell, "rod": elongated_phantom_specimen()}, n=N_2D, box_px=BOX_2D,
        pixel_size_angstrom=APIX_2D, seed=5, rotations=rotations, junk_fractions={},
    )  # fmt: skip
    ctfs = ParticleCtfs(
        stack.defocus_u_angstrom, stack.defocus_v_angstrom, stack.defocus_angle_deg,
        stack.voltage_kv, stack.spherical_aberration_mm, stack.amplitude_contrast,
        stack.pixel_size_angstrom, phase_flipped=stack.phase_flipped,
    )  # fmt: skip
    return TwoClasses(stack.images.astype(np.float32), ctfs, np.asarray(stack.labels))


def perturbation(shape: tuple[int, ...], size: float) -> torch.Tensor:
    """White noise of standard deviation ``size`` (0: none): what the tolerances were
    measured with (module docstring)."""
    return size * torch.randn(shape, generator=torch.Generator().manual_seed(99))


def classify(data: TwoClasses, device: str, perturb: float = 0.0) -> tuple[Assignment, np.ndarray]:
    """Streamed in batches of ``BATCH_2D`` into 6 classes on ``device``, then a full pass:
    every particle's assignment and the class averages (``perturb``: :func:`perturbation`
    relative to the images' standard deviation added first)."""
    images = data.images + perturbation(data.images.shape, perturb * data.images.std()).numpy()
    settings = Class2DSettings(n_classes=6, seed=1, particle_diameter_angstrom=130.0)
    model = Class2D(box_px=BOX_2D, pixel_size_angstrom=APIX_2D, settings=settings, device=device)
    for start in range(0, N_2D, BATCH_2D):
        index = np.arange(start, start + BATCH_2D)
        model.partial_fit(images[index], data.ctfs.take(index), index)
    return model.reassign_all(), model.averages()


@pytest.fixture(scope="module")
def classes() -> dict[str, tuple[Assignment, np.ndarray, np.ndarray]]:
    data = two_classes()
    return {device: (*classify(data, device), data.labels) for device in DEVICES}


def purities(assignment: Assignment, labels: np.ndarray) -> dict[int, float]:
    """The share of its most common species in each class of at least 10 particles."""
    out = {}
    for k in np.unique(assignment.class_index):
        members = labels[assignment.class_index == k]
        if members.size >= 10:
            out[int(k)] = max(float(np.mean(members == s)) for s in np.unique(members))
    return out


def test_class2d_on_cuda_matches_the_cpu_and_the_truth(
    classes: dict[str, tuple[Assignment, np.ndarray, np.ndarray]],
) -> None:
    (gpu, gpu_averages, labels), (cpu, cpu_averages, _) = classes[CUDA], classes["cpu"]
    assert gpu.class_index.shape == cpu.class_index.shape == (N_2D,)
    # the same seeds start the same classes: class k on one device is class k on the other
    changed = int(np.sum(gpu.class_index != cpu.class_index))
    assert changed <= MAX_CLASS_CHANGES, changed
    for k in np.unique(cpu.class_index):
        if np.sum(cpu.class_index == k) >= 10:
            r = np.corrcoef(gpu_averages[k].ravel(), cpu_averages[k].ravel())[0, 1]
            assert r >= MIN_AVERAGE_CORRELATION, (k, r)
    for assignment in (gpu, cpu):
        found = purities(assignment, labels)
        assert len(found) >= 2 and min(found.values()) >= MIN_PURITY, found


# --- 3D from a reference ---------------------------------------------------------------------

N_3D, BOX_3D, APIX_3D = 240, 32, 2.0
#: share of particles whose poses on the two devices differ by more than 1 degree
MAX_POSE_CHANGES = 0.02
#: the largest difference of the two devices' masked FSC curves, and of their resolutions
MAX_FSC_DIFFERENCE = 0.01
MAX_RESOLUTION_CHANGE = 0.02


@dataclass
class Refined:
    rotations: torch.Tensor
    truth_rotations: torch.Tensor
    fsc: torch.Tensor
    resolution_angstrom: float
    truth_resolution_angstrom: float


def refine(device: str, perturb: float = 0.0) -> Refined:
    """240 noisy particles of a blob map (noise 1.5 times their standard deviation; and
    ``perturb``, as in :func:`classify`) refined from the map low-passed to 20 A, two full
    passes, on ``device``."""
    truth = blob_map(BOX_3D, seed=4, n_blobs=40, reach=0.33, widths_px=(0.8, 1.6))
    images, rotations, ctfs, _ = particle_images(truth, N_3D, pixel_size_angstrom=APIX_3D, seed=5)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    images = images + 1.5 * images.std() * noise
    images = images + perturbation(images.shape, perturb * float(images.std()))
    settings = RefinementSettings(initial_resolution_angstrom=20.0, local_steps_deg=(7.5, 3.75))
    refinement = RunningRefinement(
        truth, pixel_size_angstrom=APIX_3D, settings=settings, device=device
    )
    alignment = refinement.refine(images, ctfs, 1 + np.arange(N_3D) % 2, iterations=2)
    assert refinement.fsc is not None
    half_a, half_b = (half.cpu() for half in refinement.half_maps())
    mask = refinement._mask.cpu()
    against = fourier_shell_correlation((half_a + half_b) / 2 * mask, truth * mask)
    return Refined(
        alignment.rotations,
        rotations,
        refinement.fsc.masked,
        refinement.resolution_angstrom,
        fsc_resolution_angstrom(against, pixel_size_angstrom=APIX_3D, threshold=0.5),
    )


def test_refinement_on_cuda_matches_the_cpu_and_the_truth() -> None:
    found = {device: refine(device) for device in DEVICES}
    gpu, cpu = found[CUDA], found["cpu"]
    assert gpu.rotations.device.type == "cpu" and gpu.fsc.device.type == "cpu"
    apart = rotation_angle_deg(gpu.rotations.numpy(), cpu.rotations.numpy())
    assert float(np.mean(apart > 1.0)) <= MAX_POSE_CHANGES, np.sort(apart)[-10:]
    assert float((gpu.fsc - cpu.fsc).abs().max()) <= MAX_FSC_DIFFERENCE
    assert abs(gpu.resolution_angstrom / cpu.resolution_angstrom - 1) <= MAX_RESOLUTION_CHANGE
    for run in (gpu, cpu):  # as tests/models/reconstruction/test_refine.py measures it
        error = rotation_angle_deg(run.rotations.numpy(), run.truth_rotations.numpy())
        assert float(np.median(error)) < 6.0
        assert run.resolution_angstrom < 12.0  # well beyond the 20 A start
        assert abs(run.resolution_angstrom / run.truth_resolution_angstrom - 1) < 0.15


# --- ab initio -------------------------------------------------------------------------------

N_AB, APIX_AB = 180, 2.0
#: the correlation of the two devices' ab-initio maps (in one hand: the same start)
MIN_MAP_CORRELATION = 0.99


def initial_map(device: str, perturb: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """An ab-initio map of 180 noisy particles of a blob map (25 iterations, 10 A) on
    ``device`` (``perturb`` as in :func:`classify`), and the truth."""
    truth = blob_map(BOX_3D, seed=4, n_blobs=40, reach=0.33, widths_px=(0.8, 1.6))
    images, _, ctfs, _ = particle_images(truth, N_AB, pixel_size_angstrom=APIX_AB, seed=2)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(3))
    images = images + images.std() * noise
    images = images + perturbation(images.shape, perturb * float(images.std()))
    settings = AbInitioSettings(
        iterations=25, batch_size=60, final_iterations=1, final_resolution_angstrom=10.0
    )
    result = ab_initio(images, ctfs, pixel_size_angstrom=APIX_AB, settings=settings, device=device)
    return result.volume, truth


def test_ab_initio_on_cuda_matches_the_cpu_and_the_truth() -> None:
    found = {device: initial_map(device) for device in DEVICES}
    (gpu, truth), (cpu, _) = found[CUDA], found["cpu"]
    assert gpu.device.type == "cpu"
    r = float(torch.corrcoef(torch.stack([gpu.flatten(), cpu.flatten()]))[0, 1])
    assert r >= MIN_MAP_CORRELATION, r
    for volume in (gpu, cpu):  # measured 0.94 in one hand (tests/actors/test_evaluation.py)
        hand = match_hand(volume, truth, pixel_size_angstrom=APIX_AB, resolution_angstrom=12.0)
        assert max(hand.correlation_as_is, hand.correlation_mirrored) > 0.85, hand


# --- the evaluator ---------------------------------------------------------------------------


def test_the_evaluator_on_cuda_saves_a_state_a_cpu_loads(tmp_path: Path) -> None:
    """An evaluator on CUDA classifies and refines a session against its reference; its state
    (saved at each update) holds CPU tensors only, and an evaluator on the CPU loads it and
    carries on; its map's resolution is within 10 % of an evaluator's that ran on the CPU
    throughout (a coarse search, 30 and 15 degree steps on 120-180 particles, decides more
    poses by a hair than the refinement above: a wider tolerance, not measured under
    perturbation; what this test is for is the state)."""
    from causalscope.actors.evaluation import SessionEvaluator
    from causalscope.daemon.formats.maps import write_mrc_map
    from tests.actors.test_evaluation import _session, _settings

    exposures, reference = _session(tmp_path)
    path = tmp_path / "reference.mrc"
    write_mrc_map(path, reference, pixel_size_angstrom=2.0)
    settings = _settings(path)
    resolutions: dict[int, tuple[float | None, float | None]] = {}
    for i, device in enumerate(DEVICES):
        state = tmp_path / f"state{i}"
        evaluator = SessionEvaluator(state, replace(settings, device=device))
        assert evaluator.device == device
        for exposure in exposures[:4]:
            evaluator.consume(*exposure)
        first = evaluator.update()
        assert first is not None and first.map is not None and first.class_set is not None
        saved = torch.load(evaluator.state_path, weights_only=False)  # no map_location
        tensors = [
            *(t for h in saved["refinement"]["halves"] for t in (h["data"], h["volume"])),
            saved["classifier"].references,
            saved["classifier"].sums.num,
            saved["classifier"].stored()[0],
        ]
        assert all(t.device.type == "cpu" for t in tensors)
        restarted = SessionEvaluator(state, replace(settings, device="cpu"))
        for exposure in exposures:
            restarted.consume(*exposure)
        last = restarted.update()
        assert last is not None and last.map is not None
        assert last.map.particles == len(exposures) * 30
        resolutions[i] = (first.map.resolution_angstrom, last.map.resolution_angstrom)
    for on_gpu, on_cpu in zip(resolutions[0], resolutions[1], strict=True):
        assert on_gpu is not None and on_cpu is not None
        assert abs(on_gpu / on_cpu - 1) <= 0.1, resolutions
