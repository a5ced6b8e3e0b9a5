"""The simulator's outputs, read back with our own readers, against its truth file."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from causalscope.config import load_settings
from causalscope.daemon import formats
from causalscope.daemon.cli import main
from causalscope.daemon.frame_protocol import parse_header
from causalscope.daemon.simulator import SimulationRequest, run_simulation


def _truth(out: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in (out / "truth.jsonl").read_text().splitlines()]


def test_simulate_cli_writes_movies_metadata_gain_and_truth(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sim"
    status = main(
        [
            "simulate",
            "--out",
            str(out),
            "--n",
            "3",
            "--size",
            "256",
            "--frames",
            "6",
            "--seed",
            "2",
            "--dose",
            "30",
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "[3/3]" in printed and "s per movie" in printed
    truth = _truth(out)
    assert len(truth) == 3
    gain = formats.read_gain(out / "gain_reference.mrc")
    for t in truth:
        movie = formats.read_movie(out / t["file"])
        assert movie.shape == (6, 256, 256)
        assert t["n_frames"] == 6 and len(t["shifts_px"]) == 6
        # gain-corrected counts match the dose (sensitivity undone, defects excluded)
        good = gain > 0
        corrected = (movie.sum(axis=0) * gain)[good].mean()
        assert corrected == pytest.approx(
            t["dose_e_per_a2"] * t["pixel_size_angstrom"] ** 2, rel=0.03
        )
        metadata = formats.read_epu_xml(out / t["metadata_file"])
        assert metadata.pixel_size_angstrom == pytest.approx(t["pixel_size_angstrom"])
        assert metadata.dose_e_per_a2 == pytest.approx(t["dose_e_per_a2"], rel=1e-3)
        assert metadata.n_frames == 6
        assert metadata.movie_name == Path(t["file"]).name
        assert formats.find_epu_metadata(out / t["file"]) == out / t["metadata_file"]
    defects = formats.read_defects(out / "defects.txt", (256, 256))
    for column in truth[0]["dead_columns"]:
        assert defects[:, column].all()
    for x, y in truth[0]["hot_pixels"]:
        assert defects[y, x]


def test_mrc_with_mdoc_layout(tmp_path: Path) -> None:
    settings = load_settings(overrides={"simulation": {"size_px": 128, "n_frames": 4}})
    summary = run_simulation(
        settings,
        SimulationRequest(
            out_dir=tmp_path, n_exposures=2, movie_format="mrc", metadata_format="mdoc"
        ),
    )
    for movie in summary.movies:
        assert movie.path is not None and movie.path.suffix == ".mrc"
        frames = formats.read_movie(movie.path)
        assert frames.shape == (4, 128, 128)
        (record,) = formats.read_mdoc(tmp_path / movie.truth["metadata_file"])
        assert record.n_frames == 4
        assert record.dose_e_per_a2 == pytest.approx(movie.truth["dose_e_per_a2"], rel=1e-3)


def test_eer_output_reads_back_to_the_fractions(tmp_path: Path) -> None:
    settings = load_settings(
        preset="krios-falcon4i-eer", overrides={"simulation": {"size_px": 128, "n_frames": 3}}
    )
    summary = run_simulation(
        settings, SimulationRequest(out_dir=tmp_path, n_exposures=1, movie_format="eer", seed=4)
    )
    (movie,) = summary.movies
    assert movie.path is not None
    grouping = settings.detector.eer_grouping
    fractions = formats.read_movie(movie.path, eer_grouping=grouping)
    assert fractions.shape == (3, 128, 128)
    expected = movie.truth["dose_e_per_a2"] * movie.truth["pixel_size_angstrom"] ** 2
    expected *= movie.truth["p_elastic"]  # the preset has an energy filter
    gain = formats.read_gain(tmp_path / "gain_reference.mrc")
    assert (fractions.sum(axis=0) * gain)[gain > 0].mean() == pytest.approx(expected, rel=0.04)


def test_eer_frames_are_made_one_fraction_at_a_time(tmp_path: Path) -> None:
    """Each fraction's counts are spread over ``grouping`` EER frames, at most one electron
    per pixel per EER frame, as a dense array of every EER frame did it (the reference below),
    but without holding that array: a 4096^2 movie of 40 fractions at grouping 32 needed 21 GB
    and was killed for memory. The memory the writer takes does not grow with the fractions
    (2 and 8 fractions of 512^2 at grouping 32: a dense array of 16 and 64 MiB; measured
    peaks 17.7 and 17.6 MB), and the movie reads back to the fractions exactly."""
    import tracemalloc

    from causalscope.daemon.simulator import _EerSplit

    def dense(frames: np.ndarray, grouping: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        n, h, w = frames.shape
        out = np.zeros((n * grouping, h * w), dtype=np.uint8)
        for f in range(n):
            counts = frames[f].ravel()
            start = rng.integers(0, grouping, size=counts.size)
            for j in range(int(counts.max(initial=0))):
                pixels = np.flatnonzero(counts > j)
                out[f * grouping + (start[pixels] + j) % grouping, pixels] = 1
        return out.reshape(n * grouping, h, w)

    small = np.random.default_rng(3).poisson(2.0, size=(3, 31, 45)).astype(np.uint16)
    split = _EerSplit(small, 16, seed=5)
    assert len(split) == 48
    np.testing.assert_array_equal(np.stack(list(split)), dense(small, 16, 5))

    peaks = []
    for n in (2, 8):
        frames = np.random.default_rng(n).poisson(1.0, size=(n, 512, 512)).astype(np.uint16)
        path = tmp_path / f"m{n}.eer"
        tracemalloc.start()
        try:
            formats.write_eer_movie(path, _EerSplit(frames, 32, seed=1))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        np.testing.assert_array_equal(formats.read_movie(path, eer_grouping=32), frames)
    assert peaks[1] < 1.2 * peaks[0] and peaks[1] < 8 * 32 * 512 * 512 / 2, peaks


def test_rate_writes_files_that_grow(tmp_path: Path) -> None:
    settings = load_settings(overrides={"simulation": {"size_px": 256, "n_frames": 8}})
    request = SimulationRequest(out_dir=tmp_path, n_exposures=2, rate_s=1.5, seed=1)
    sizes: dict[Path, set[int]] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for path in tmp_path.rglob("*.tiff"):
                if ".staging" not in path.parts:
                    sizes.setdefault(path, set()).add(path.stat().st_size)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        run_simulation(settings, request)
    finally:
        done.set()
        watcher.join()
    assert time.monotonic() - started > 2.0  # two movies, about 1.5 s each
    assert len(sizes) == 2
    assert all(len(seen) >= 3 for seen in sizes.values())  # seen part-written at least twice
    assert not (tmp_path / ".staging").exists()


def test_zmq_push_follows_the_protocol(tmp_path: Path) -> None:
    context = zmq.Context.instance()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    settings = load_settings(overrides={"simulation": {"size_px": 64, "n_frames": 3}})
    request = SimulationRequest(
        out_dir=tmp_path, n_exposures=2, zmq_address=f"tcp://127.0.0.1:{port}"
    )
    result: dict[str, object] = {}
    sender = threading.Thread(target=lambda: result.update(s=run_simulation(settings, request)))
    sender.start()
    messages = []
    try:
        while len(messages) < 2 * (3 + 2):
            assert pull.poll(20_000), "no frames arrived"
            messages.append(pull.recv_multipart())
    finally:
        sender.join()
        pull.close()
    headers = [parse_header(m[0]) for m in messages]
    assert [h["type"] for h in headers[:5]] == ["start", "frame", "frame", "frame", "end"]
    truth = _truth(tmp_path)
    assert headers[0]["exposure_id"] == truth[0]["exposure_id"]
    assert truth[0]["file"] is None
    assert headers[0]["metadata"]["dose_e_per_a2"] == pytest.approx(
        truth[0]["dose_e_per_a2"], rel=1e-3
    )
    frame = np.frombuffer(messages[1][1], dtype=headers[1]["dtype"]).reshape(64, 64)
    assert frame.sum() > 0 and headers[4]["n_frames"] == 3


def test_simulates_from_a_real_atomic_model(tmp_path: Path, shared_data: Path) -> None:
    model = shared_data / "models" / "6z6u.pdb"  # human apoferritin 24-mer
    settings = load_settings(
        overrides={"simulation": {"size_px": 384, "n_frames": 2, "structure": str(model)}}
    )
    summary = run_simulation(settings, SimulationRequest(out_dir=tmp_path, n_exposures=1))
    (movie,) = summary.movies
    assert movie.truth["structure"] == "6z6u.pdb"
    # apoferritin's outermost atoms lie about 67 A from its centre
    assert movie.truth["particle_radius_angstrom"] == pytest.approx(67.1, abs=1.0)
    frames = formats.read_movie(tmp_path / movie.truth["file"])
    assert frames.shape == (2, 384, 384)
