"""The evaluator's 2D particle store in a file: rows read back as written across its growth, a
saved count that drops what was added after it (a killed update, done again on restart), a
clear error for a file shorter than its state, a classifier that gives the same classes from
it as from memory while its pickle holds no images, and a full disk that raises instead of
killing the process, the evaluator keeping the batch for its next update."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from causalscope.actors.particle_rows import FileRows
from causalscope.models.classification import Class2D, Class2DSettings, MemoryRows
from causalscope.models.errors import FormatError
from tests.models.classification.test_device import APIX, BOX, N, _rods_and_balls


def _batches(sizes: list[int], seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(m, 6, 6, generator=generator) for m in sizes]


@pytest.mark.parametrize("store", [MemoryRows, FileRows])
def test_rows_come_back_as_written_while_the_store_grows(tmp_path: Path, store: type) -> None:
    rows = store(tmp_path / "rows.f32") if store is FileRows else store()
    batches = _batches([3, 1, 7, 20, 2, 50])
    for i, batch in enumerate(batches):
        rows.append(batch)
        assert len(rows) == sum(len(b) for b in batches[: i + 1])
        torch.testing.assert_close(rows.rows(), torch.cat(batches[: i + 1]), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\(5, 5\) after \(6, 6\)"):
        rows.append(torch.zeros(2, 5, 5))
    if store is FileRows:  # the file holds them, with at most half as many rows to spare
        size = (tmp_path / "rows.f32").stat().st_size
        assert 83 * 36 * 4 <= size <= 1.5 * 83 * 36 * 4


def test_a_restart_drops_the_rows_added_after_the_save(tmp_path: Path) -> None:
    first, lost, again = _batches([40, 25, 10])
    rows = FileRows(tmp_path / "rows.f32")
    rows.append(first)
    saved = pickle.dumps(rows)  # the evaluator's state at an update
    rows.append(lost)  # the next update, killed before its state was written
    del rows
    restarted = pickle.loads(saved)
    assert len(restarted) == 40
    torch.testing.assert_close(restarted.rows(), first, rtol=0, atol=0)
    restarted.append(again)  # what the restart adds is written over the lost rows
    torch.testing.assert_close(restarted.rows(), torch.cat([first, again]), rtol=0, atol=0)
    assert pickle.loads(pickle.dumps(restarted)).rows().shape == (50, 6, 6)


def test_a_file_shorter_than_its_state_is_named(tmp_path: Path) -> None:
    rows = FileRows(tmp_path / "rows.f32")
    rows.append(_batches([30])[0])
    saved = pickle.dumps(rows)
    with open(tmp_path / "rows.f32", "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(FormatError, match=r"rows\.f32 holds 100 bytes; the saved state needs 4320"):
        pickle.loads(saved)
    (tmp_path / "rows.f32").unlink()
    with pytest.raises(FormatError, match="holds no file"):
        pickle.loads(saved)


def test_a_classifier_on_a_file_store_classifies_as_in_memory(tmp_path: Path) -> None:
    images, ctf = _rods_and_balls()
    settings = Class2DSettings(n_classes=3, particle_diameter_angstrom=48.0, seed=1)
    found = {}
    for name in ("memory", "file"):
        store = FileRows(tmp_path / "rows.f32") if name == "file" else None
        model = Class2D(box_px=BOX, pixel_size_angstrom=APIX, settings=settings, store=store)
        for part in np.array_split(np.arange(N), 3):
            model.partial_fit(images[part], ctf.take(part), part)
        model = pickle.loads(pickle.dumps(model))  # saved and loaded, as on a restart
        found[name] = (model.reassign_all().class_index, model.averages(), model.stored()[0])
        found[name + "_pickle"] = len(pickle.dumps(model))
    np.testing.assert_array_equal(found["file"][0], found["memory"][0])
    np.testing.assert_array_equal(found["file"][1], found["memory"][1])
    stored = found["file"][2]
    torch.testing.assert_close(stored, found["memory"][2], rtol=0, atol=0)
    # the images stay in the file: the pickle is smaller by at least their size
    assert found["memory_pickle"] - found["file_pickle"] >= stored.numel() * 4
    used = FileRows(tmp_path / "used.f32")
    used.append(stored[:3])
    with pytest.raises(ValueError, match="the store must start empty, it holds 3 rows"):
        Class2D(box_px=BOX, pixel_size_angstrom=APIX, settings=settings, store=used)


def test_a_classifier_saved_before_the_store_loads_its_images() -> None:
    """States saved before the store held the images as a buffer with spare rows (``_images``,
    its first ``n_stored`` in use): they load into host memory, the spare rows left out."""
    images, ctf = _rods_and_balls()
    settings = Class2DSettings(n_classes=3, particle_diameter_angstrom=48.0, seed=1)
    model = Class2D(box_px=BOX, pixel_size_angstrom=APIX, settings=settings)
    model.partial_fit(images[:90], ctf.take(np.arange(90)), np.arange(90))
    state = model.__getstate__()
    stored = state.pop("_binned").rows()
    state["_images"] = torch.cat([stored, torch.full((45, *stored.shape[1:]), float("nan"))])
    old = Class2D.__new__(Class2D)
    old.__setstate__(state)
    torch.testing.assert_close(old.stored()[0], stored, rtol=0, atol=0)
    assert "_images" not in vars(old)
    rest = np.arange(90, N)
    old.partial_fit(images[rest], ctf.take(rest), rest)  # and takes the next batch after them
    assert old.stored()[0].shape[0] == N and torch.isfinite(old.stored()[0]).all()


def test_a_full_disk_is_an_error_and_loses_no_particle(tmp_path: Path) -> None:
    """On a full disk the store's file cannot grow: ``append`` raises ``OSError`` (a sparse
    file would have killed the process with SIGBUS at the first write into it), what it held
    stays readable, and the evaluator keeps the batch for its next update, which takes every
    particle once space returns."""
    from causalscope.daemon.bench._live import fill
    from tests.actors.test_evaluation import EXPOSURES, PER_EXPOSURE, _evaluator, _session
    from tests.daemon.test_full_disk import small_filesystem

    exposures, reference = _session(tmp_path)
    with small_filesystem(tmp_path / "small", 32) as folder:  # two states of 6 MB
        rows = FileRows(folder / "rows.f32")
        first = _batches([20])[0]
        rows.append(first)
        filler = fill(folder)
        with pytest.raises(OSError, match="No space left"):
            rows.append(torch.zeros(500, 6, 6))
        torch.testing.assert_close(rows.rows(), first, rtol=0, atol=0)
        filler.unlink()
        evaluator = _evaluator(folder / "state", reference)
        for exposure in exposures[:2]:
            evaluator.consume(*exposure)
        assert evaluator.update() is not None
        filler = fill(folder)
        for exposure in exposures[2:]:
            evaluator.consume(*exposure)
        with pytest.raises(OSError, match="No space left"):
            evaluator.update()
        filler.unlink()
        update = evaluator.update()
        n = PER_EXPOSURE * EXPOSURES
        assert update is not None and update.class_set is not None and update.map is not None
        assert update.particles == update.class_set.particles == update.map.particles == n
        assert sum(c.particles for c in update.class_set.classes) == n
