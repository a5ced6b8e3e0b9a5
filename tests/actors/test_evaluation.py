"""The session evaluator takes each exposure's particles exactly once, also when its process is
killed with SIGKILL in the middle of a session and started again; its updates hold 2D classes
of every particle taken, a map with its FSC, and the files they name."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import starfile
import torch

from causalscope.actors.evaluation import EvaluatorSettings, SessionEvaluator
from causalscope.daemon.formats.maps import write_mrc_map
from causalscope.daemon.formats.particles_star import write_particle_stack, write_particles_star
from causalscope.models.reconstruction.refine import RefinementSettings
from tests.models.reconstruction._maps import blob_map, particle_images

APIX, BOX, PER_EXPOSURE, EXPOSURES = 2.0, 32, 30, 6


def _session(folder: Path) -> tuple[list[tuple[str, Path]], np.ndarray]:
    """Six exposures' particle STAR files (30 particles each) and the map they come from."""
    truth = blob_map(BOX, seed=4, n_blobs=40, reach=0.33, widths_px=(0.8, 1.6))
    n = PER_EXPOSURE * EXPOSURES
    images, _, ctfs, _ = particle_images(truth, n, pixel_size_angstrom=APIX, seed=2)
    images = images + images.std() * torch.randn(
        images.shape, generator=torch.Generator().manual_seed(3)
    )
    exposures = []
    for e in range(EXPOSURES):
        index = np.arange(e * PER_EXPOSURE, (e + 1) * PER_EXPOSURE)
        names = write_particle_stack(
            folder / f"e{e}.mrcs", images[index].numpy(), pixel_size_angstrom=APIX
        )
        table = pd.DataFrame(
            {
                "x_px": np.zeros(PER_EXPOSURE),
                "y_px": np.zeros(PER_EXPOSURE),
                "image_name": names,
                "micrograph_name": [f"e{e}.mrc"] * PER_EXPOSURE,
                "defocus_u_angstrom": ctfs.defocus_u_angstrom[index],
                "defocus_v_angstrom": ctfs.defocus_v_angstrom[index],
                "defocus_angle_deg": ctfs.defocus_angle_deg[index],
            }
        )
        optics = {
            "pixel_size_angstrom": APIX,
            "image_size_px": BOX,
            "voltage_kv": 300.0,
            "spherical_aberration_mm": 2.7,
            "amplitude_contrast": 0.1,
        }
        exposures.append((f"e{e}", write_particles_star(folder / f"e{e}.star", optics, table)))
    return exposures, truth.numpy()


def _settings(reference: Path) -> EvaluatorSettings:
    # a coarse search: what is tested here is the bookkeeping, not the poses; and a lenient
    # selection: three 32 px classes of a blob map score 0.3-0.9 on the edge term, and which
    # of them pass 0.5 turns on the run's random start, not on what is tested here
    return EvaluatorSettings(
        particle_diameter_angstrom=40.0,
        classes=3,
        class_threshold=0.95,
        reference=str(reference),
        box_px=BOX,
        refinement=RefinementSettings(grid_step_deg=30.0, local_steps_deg=(15.0,)),
    )


def _evaluator(state_dir: Path, reference: np.ndarray) -> SessionEvaluator:
    path = state_dir.parent / "reference.mrc"
    if not path.exists():
        write_mrc_map(path, reference, pixel_size_angstrom=APIX)
    return SessionEvaluator(state_dir, _settings(path))


def test_an_exposure_is_taken_once(tmp_path: Path) -> None:
    exposures, reference = _session(tmp_path)
    evaluator = _evaluator(tmp_path / "state", reference)
    assert evaluator.consume(*exposures[0]) == PER_EXPOSURE
    assert evaluator.consume(*exposures[0]) == 0
    assert evaluator.consume(*exposures[1]) == PER_EXPOSURE
    assert evaluator.update() is not None
    for exposure in exposures[2:]:
        evaluator.consume(*exposure)
    update = evaluator.update()
    n = PER_EXPOSURE * EXPOSURES
    assert update is not None and update.particles == n and update.version == 2
    assert update.map is not None and update.map.particles == n
    paths = [update.map.half_map_1, update.map.half_map_2, update.map.map_path]
    assert all(Path(p).exists() for p in [*paths, update.map.fsc_star_path])
    classes = update.class_set
    assert classes is not None and classes.particles == n and classes.n_classes == 3
    assert sum(c.particles for c in classes.classes) == n  # every particle has a class
    assert Path(classes.gallery_path).read_bytes()[:4] == b"\x89PNG"
    selected = starfile.read(classes.selected_star_path)
    assert len(selected) == classes.selected_particles
    assert Path(selected["rlnImageName"].iloc[0].split("@")[1]).is_file()
    # the rest, as cryoSPARC's Select 2D excludes them: every particle in one file or the other
    excluded = starfile.read(Path(classes.selected_star_path).with_name("excluded_particles.star"))
    assert len(selected) + len(excluded) == n
    assert not set(selected["rlnImageName"]) & set(excluded["rlnImageName"])
    assert evaluator.update() is None  # nothing new
    # with a planned session: the end's particles at the rate, and what they are expected to give
    ended = evaluator.update(labels={0: "select"}, particles_per_hour=600.0, hours_left=2.0)
    assert ended is not None and ended.forecast is not None
    assert ended.forecast.particles_at_end == n + 1200.0
    assert ended.map is not None and ended.map.resolution_angstrom is not None
    expected = ended.forecast.resolution_at_end_angstrom
    assert expected is not None and expected < ended.map.resolution_angstrom  # more particles
    assert ended.forecast.p_reach_target is not None and ended.forecast.p_reach_target < 0.01
    # the operator's label overrides the automatic choice, in a new version
    relabelled = evaluator.update(labels={0: "reject"})
    assert relabelled is not None and relabelled.version == 4
    assert relabelled.class_set is not None and not relabelled.class_set.classes[0].selected
    again = _evaluator(tmp_path / "state", reference)  # a clean restart
    assert again.particle_counts == {f"e{e}": PER_EXPOSURE for e in range(EXPOSURES)}
    assert again.consume(*exposures[1]) == 0
    assert again.latest() == relabelled


@pytest.mark.timeout(300)
def test_sigkill_mid_session_neither_loses_nor_doubles_particles(tmp_path: Path) -> None:
    exposures, reference = _session(tmp_path)
    np.save(tmp_path / "reference.npy", reference)
    state_dir = tmp_path / "state"
    child = textwrap.dedent(
        f"""
        import numpy as np
        from pathlib import Path
        from causalscope.daemon.formats.maps import write_mrc_map
        from tests.actors.test_evaluation import _settings
        from causalscope.actors.evaluation import SessionEvaluator
        reference = Path({str(tmp_path / "reference.mrc")!r})
        write_mrc_map(reference, np.load({str(tmp_path / "reference.npy")!r}),
                      pixel_size_angstrom={APIX})
        evaluator = SessionEvaluator(Path({str(state_dir)!r}), _settings(reference))
        for exposure_id, star in {[(e, str(p)) for e, p in exposures]!r}:
            evaluator.consume(exposure_id, Path(star))
            evaluator.update()
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", child], cwd=Path(__file__).resolve().parents[2]
    )
    held: dict[str, int] = {}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if (state_dir / "state.pt").exists():
            held = torch.load(state_dir / "state.pt", weights_only=False)["consumed"]
            if len(held) >= 2:
                break
        time.sleep(0.05)
    assert process.poll() is None, f"the session ended before it could be killed (held {held})"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    evaluator = _evaluator(state_dir, reference)
    before = evaluator.particle_counts
    assert 2 <= len(before) < EXPOSURES  # killed in the middle
    added = [evaluator.consume(e, p) for e, p in exposures]
    assert sum(added) == PER_EXPOSURE * (EXPOSURES - len(before))
    update = evaluator.update()
    n = PER_EXPOSURE * EXPOSURES
    assert update is not None and update.map is not None and update.class_set is not None
    assert update.particles == sum(evaluator.particle_counts.values()) == n
    assert update.map.particles == update.class_set.particles == n
    state = torch.load(state_dir / "state.pt", weights_only=False)
    assert sum(h["count"] for h in state["refinement"]["halves"]) == n
    assert state["classifier"].n_stored == len(pd.concat(state["rows"])) == n
    # the particle images in the store's file are those of a session never killed, in order
    clean = _evaluator(tmp_path / "clean", reference)
    for exposure in exposures:
        clean.consume(*exposure)
    clean.update()
    unbroken = torch.load(tmp_path / "clean" / "state.pt", weights_only=False)["classifier"]
    expected = unbroken.stored()[0]
    torch.testing.assert_close(
        state["classifier"].stored()[0], expected, rtol=0, atol=1e-5 * float(expected.abs().max())
    )


def _ab_initio_settings(*, iterations: int) -> EvaluatorSettings:
    """A small session's evaluator without a reference: ab initio from 100 particles."""
    from causalscope.models.reconstruction.ab_initio import AbInitioSettings

    return EvaluatorSettings(
        particle_diameter_angstrom=40.0,
        classes=3,
        box_px=BOX,
        refinement=RefinementSettings(grid_step_deg=30.0, local_steps_deg=(15.0,)),
        ab_initio_min_particles=100,
        ab_initio_resolution_angstrom=10.0,
        ab_initio=AbInitioSettings(iterations=iterations, batch_size=60, final_iterations=1),
    )


def test_without_a_reference_an_ab_initio_map_starts_the_refinement(tmp_path: Path) -> None:
    """Once enough particles sit in selected classes, an update builds an ab-initio map; it
    resembles the truth in one hand or the other, every particle held goes into the map, and
    a restart keeps refining against it."""
    from causalscope.models.reconstruction.map_align import match_hand

    exposures, truth = _session(tmp_path)
    settings = _ab_initio_settings(iterations=25)
    evaluator = SessionEvaluator(tmp_path / "state", settings)
    for exposure_id, star in exposures[:5]:
        evaluator.consume(exposure_id, star)
    first = evaluator.update()
    assert first is not None and first.class_set is not None
    assert first.class_set.selected_particles >= 100
    assert first.map is not None and first.map.ab_initio
    assert first.map.particles == 5 * PER_EXPOSURE  # all held so far, not only the selected
    initial = Path(first.map.initial_model)
    assert initial.name.endswith("_ab_initio.mrc") and initial.exists()
    import mrcfile

    hand = match_hand(
        torch.as_tensor(mrcfile.read(initial).astype(np.float32)),
        _resampled(truth, mrcfile.open(initial).voxel_size.x),
        pixel_size_angstrom=float(mrcfile.open(initial).voxel_size.x),
        resolution_angstrom=12.0,
    )
    # measured 0.94 in the right hand, 0.62 in the other
    assert max(hand.correlation_as_is, hand.correlation_mirrored) > 0.85, hand
    assert hand.decided
    restarted = SessionEvaluator(tmp_path / "state", settings)
    for exposure_id, star in exposures:
        restarted.consume(exposure_id, star)
    last = restarted.update()
    assert last is not None and last.map is not None
    assert last.map.particles == EXPOSURES * PER_EXPOSURE
    assert last.map.initial_model == first.map.initial_model


def _resampled(volume: np.ndarray, pixel_size_angstrom: float) -> torch.Tensor:
    from causalscope.models.reconstruction.resample import rescale_map

    return rescale_map(
        torch.as_tensor(volume),
        from_pixel_angstrom=APIX,
        to_pixel_angstrom=pixel_size_angstrom,
        box_px=round(BOX * APIX / pixel_size_angstrom / 2) * 2,
    )


def test_classes_get_their_novelty_and_recommendation_from_the_index(tmp_path: Path) -> None:
    from causalscope.actors.novelty import NoveltyIndex, junk_entries, map_entries

    exposures, truth = _session(tmp_path)
    index = NoveltyIndex(tmp_path / "index")
    for label, vectors in junk_entries(4).items():
        index.add(label, "junk", vectors)
    index.add("blobs", "structure", map_entries(truth, pixel_size_angstrom=APIX, views=40))
    settings = EvaluatorSettings(
        particle_diameter_angstrom=40.0,
        classes=3,
        ab_initio_min_particles=10**6,
        novelty_index=str(tmp_path / "index"),
    )
    evaluator = SessionEvaluator(tmp_path / "state", settings)
    for exposure in exposures:
        evaluator.consume(*exposure)
    update = evaluator.update()
    assert update is not None and update.class_set is not None and update.map is None
    rows = [c for c in update.class_set.classes if c.particles]
    assert rows and all(c.recommendation in ("accept", "look", "reject") and c.reason for c in rows)
    # each class's row holds what the index says of its average (at the classes' sampling)
    model = evaluator._classifier
    assert model is not None
    direct = NoveltyIndex(tmp_path / "index").classify(
        model.averages(), pixel_size_angstrom=float(model.grid.pixel_size_angstrom), scale=0.8
    )
    for c in rows:
        assert (c.nearest, c.nearest_kind) == (
            direct[c.class_index].nearest,
            direct[c.class_index].nearest_kind,
        )
        assert c.novelty == pytest.approx(direct[c.class_index].novelty)
        assert c.structure_distance is not None and c.junk_distance is not None
    without = SessionEvaluator(
        tmp_path / "state2", dataclasses.replace(settings, novelty_index=None)
    )
    for exposure in exposures:
        without.consume(*exposure)
    plain = without.update()
    assert plain is not None and plain.class_set is not None
    assert all(
        c.novelty is None and "no index" in (c.reason or "")
        for c in plain.class_set.classes
        if c.particles
    )


def test_a_state_saved_by_an_evaluator_on_a_gpu_loads_on_a_cpu(tmp_path: Path) -> None:
    """An evaluator told ``device="cuda"`` (CUDA's device rules enforced on this CPU,
    :mod:`tests._fake_cuda`: its classes, ab-initio map and refinement on the device) saves
    a state that holds CPU tensors only (a device tensor pickled raises there); an evaluator
    on a machine without a GPU loads it and carries on, and its updates are those of an
    evaluator that ran on the CPU throughout (the emulation's arithmetic is the CPU's)."""
    from tests._fake_cuda import FakeCuda

    exposures, _ = _session(tmp_path)
    settings = _ab_initio_settings(iterations=8)
    updates = {}
    for device in ("cuda", "cpu"):
        state = tmp_path / device
        with FakeCuda() as fake:
            evaluator = SessionEvaluator(state, dataclasses.replace(settings, device=device))
            for exposure in exposures[:5]:
                evaluator.consume(*exposure)
            first = evaluator.update()
        assert first is not None and first.map is not None and first.map.ab_initio
        assert evaluator.device == device and (fake.counts["to_cpu"] > 0) == (device == "cuda")
        restarted = SessionEvaluator(state, settings)  # device "cpu": no GPU here
        model, refinement = restarted._classifier, restarted._refinement
        assert model is not None and refinement is not None and restarted.device == "cpu"
        assert type(model.references) is torch.Tensor and model.device.type == "cpu"
        assert type(refinement.half_maps()[0]) is torch.Tensor
        for exposure in exposures:
            restarted.consume(*exposure)
        last = restarted.update()
        assert last is not None and last.map is not None
        assert last.map.particles == EXPOSURES * PER_EXPOSURE
        updates[device] = [first, last]

    def comparable(update: Any) -> str:
        values = update.to_dict()
        values.pop("seconds")
        return repr(values).replace(str(tmp_path / "cuda"), str(tmp_path / "cpu"))

    for on_gpu, on_cpu in zip(updates["cuda"], updates["cpu"], strict=True):
        assert comparable(on_gpu) == comparable(on_cpu)
