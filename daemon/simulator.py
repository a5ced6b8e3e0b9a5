"""Run the fake microscope: write a simulated session as files, or push it over ZeroMQ.

The physics lives in :mod:`models.simulate`; this module chooses names and layouts (EPU or
SerialEM), writes movies, gain reference, defect list, metadata and ``truth.jsonl``, and
paces the output like a detector does (``rate_s``: one movie every N seconds, each written
slowly so that a watcher sees files grow).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from causalscope.daemon._simulator_sender import FrameSender
from causalscope.models.errors import InputError
from causalscope.models.records import AcquisitionMetadata

if TYPE_CHECKING:
    from causalscope.models.simulate import ExposureParameters, Specimen

__all__ = [
    "SimulatedMovie",
    "SimulationRequest",
    "SimulationSummary",
    "base_parameters",
    "load_specimen",
    "run_simulation",
]

MovieFormat = Literal["mrc", "tiff", "eer"]
MetadataFormat = Literal["epu", "mdoc", "none"]
TRUTH_FILE = "truth.jsonl"
GAIN_FILE = "gain_reference.mrc"
DEFECTS_FILE = "defects.txt"
_EXPOSURE_TIME_PER_FRAME_S = 0.1


@dataclass(frozen=True)
class SimulationRequest:
    """What to simulate and where to put it."""

    out_dir: Path
    n_exposures: int
    seed: int = 0
    movie_format: MovieFormat = "tiff"
    metadata_format: MetadataFormat = "epu"
    rate_s: float | None = None
    zmq_address: str | None = None
    start_time: datetime = field(default_factory=lambda: datetime.now().replace(microsecond=0))


@dataclass(frozen=True)
class SimulatedMovie:
    """One movie written (or pushed), with its truth."""

    index: int
    path: Path | None
    exposure_id: str
    truth: dict[str, Any]
    seconds: float

    def line(self, total: int) -> str:
        """One progress line: what was made and how long it took."""
        t = self.truth
        where = self.exposure_id if self.path is None else t["file"]
        return (
            f"[{self.index + 1}/{total}] {where}: defocus "
            f"{(t['defocus_u_angstrom'] + t['defocus_v_angstrom']) / 2e4:.2f} um, ice "
            f"{t['ice_thickness_nm']:.0f} nm, drift {t['drift_total_px']:.1f} px, "
            f"{t['n_particles_placed']} particles ({self.seconds:.1f} s)"
        )


@dataclass
class SimulationSummary:
    """What a run made."""

    out_dir: Path
    movies: list[SimulatedMovie]
    truth_path: Path
    gain_path: Path
    defects_path: Path
    seconds: float

    def describe(self) -> str:
        """A few lines for the terminal."""
        if not self.movies:
            return f"no movies written to {self.out_dir}"
        t = [m.truth for m in self.movies]
        defocus = [(x["defocus_u_angstrom"] + x["defocus_v_angstrom"]) / 2e4 for x in t]
        ice = [x["ice_thickness_nm"] for x in t]
        drift = [x["drift_total_px"] for x in t]
        per_movie = np.mean([m.seconds for m in self.movies])
        first = t[0]
        return "\n".join(
            [
                f"{len(self.movies)} movies of {first['size_px']} x {first['size_px']} px x "
                f"{first['n_frames']} frames at {first['pixel_size_angstrom']} A/px, "
                f"{first['voltage_kv']:.0f} kV, in {self.out_dir}",
                f"  defocus {min(defocus):.2f}-{max(defocus):.2f} um, ice {min(ice):.0f}-"
                f"{max(ice):.0f} nm, drift {min(drift):.1f}-{max(drift):.1f} px, "
                f"{sum(x['n_particles_placed'] for x in t)} particles",
                f"  truth: {self.truth_path.name}, gain: {self.gain_path.name}, defects: "
                f"{self.defects_path.name}",
                f"  {per_movie:.1f} s per movie to simulate, {self.seconds:.1f} s in all",
            ]
        )


def load_specimen(structure: str) -> Specimen:
    """The particle to simulate: ``phantom``, a PDB/mmCIF model or an MRC map."""
    from causalscope.models.simulate import Specimen, phantom_specimen

    if structure == "phantom":
        return phantom_specimen()
    path = Path(structure)
    if not path.is_file():
        raise InputError(
            "Structure not found",
            f"{structure!r} is neither 'phantom' nor an existing PDB, mmCIF or MRC file",
            path=path,
        )
    from causalscope.daemon import formats

    suffix = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() in {".mrc", ".map", ".mrcs"}:
        atoms = formats.read_map_as_atoms(path)
    elif path.suffix.lower() in {".pdb", ".cif", ".ent", ".mmcif"} or suffix.endswith(".gz"):
        atoms = formats.read_structure(path)
    else:
        raise InputError(
            "Unknown structure format",
            f"{path}: expected .pdb, .cif or .mrc/.map, got suffix {path.suffix!r}",
            path=path,
        )
    weights = getattr(atoms, "weights", None)
    return Specimen(
        coords_angstrom=np.asarray(atoms.coords_angstrom, dtype=np.float64),
        element_index=np.asarray(atoms.element_index),
        elements=tuple(atoms.elements),
        scattering_a=np.asarray(atoms.scattering_a),
        scattering_b=np.asarray(atoms.scattering_b),
        weights=np.ones(0) if weights is None else np.asarray(weights, dtype=np.float64),
        name=str(path.name),
    )


def base_parameters(settings: Any) -> ExposureParameters:
    """The microscope's fixed parameters as an :class:`ExposureParameters` template."""
    from causalscope.models.simulate import ExposureParameters

    mic = settings.microscope
    return ExposureParameters(
        pixel_size_angstrom=mic.pixel_size_angstrom,
        voltage_kv=mic.voltage_kv,
        spherical_aberration_mm=mic.spherical_aberration_mm,
        amplitude_contrast=mic.amplitude_contrast,
        chromatic_aberration_mm=mic.chromatic_aberration_mm,
        energy_spread_ev=mic.energy_spread_ev,
        illumination_aperture_mrad=mic.illumination_aperture_mrad,
        energy_filter=mic.energy_filter,
    )


def _mtf(settings: Any) -> tuple[Any, str]:
    from causalscope.models.simulate import analytic_counting_mtf, tabulated_mtf

    name = settings.detector.mtf
    if name == "analytic":
        return analytic_counting_mtf, "analytic"
    from causalscope.daemon import formats

    freq, values = formats.read_mtf_star(Path(name))
    return tabulated_mtf(freq, values), str(name)


def _names(plan: Any, request: SimulationRequest, when: datetime) -> tuple[str, str | None]:
    """Relative movie path and metadata path for one exposure, in EPU's or SerialEM's layout."""
    suffix = {"mrc": "mrc", "tiff": "tiff", "eer": "eer"}[request.movie_format]
    if request.metadata_format == "mdoc":
        stem = f"session_{plan.index:05d}"
        ext = "tif" if suffix == "tiff" else suffix
        return f"{stem}.{ext}", f"{stem}.{ext}.mdoc"
    square_id = 1_000 + plan.grid_square
    hole_id = 2_000_000 + plan.foil_hole
    stamp = when.strftime("%Y%m%d_%H%M%S")
    stem = f"FoilHole_{hole_id}_Data_{square_id}_{plan.shot}_{stamp}"
    tail = {"mrc": "_Fractions.mrc", "tiff": "_fractions.tiff", "eer": "_EER.eer"}[suffix]
    folder = f"Images-Disc1/GridSquare_{square_id}/Data"
    metadata = None if request.metadata_format == "none" else f"{folder}/{stem}.xml"
    return f"{folder}/{stem}{tail}", metadata


def _metadata(
    plan: Any, truth: dict[str, Any], settings: Any, movie_rel: str, meta_rel: str, when: datetime
) -> AcquisitionMetadata:
    p = plan.parameters
    return AcquisitionMetadata(
        source_path=meta_rel,
        source_format="mdoc" if meta_rel.endswith(".mdoc") else "epu",
        movie_name=Path(movie_rel).name,
        pixel_size_angstrom=p.pixel_size_angstrom,
        voltage_kv=p.voltage_kv,
        spherical_aberration_mm=p.spherical_aberration_mm,
        dose_e_per_a2=round(p.dose_e_per_a2, 4),
        n_frames=p.n_frames,
        exposure_time_s=round(p.n_frames * _EXPOSURE_TIME_PER_FRAME_S, 4),
        target_defocus_um=plan.target_defocus_um,
        beam_shift=plan.beam_shift_um,
        image_shift=plan.beam_shift_um,
        stage_position_um=(100.0 * plan.grid_square, 5.0 * plan.foil_hole, 0.0),
        stage_tilt_deg=0.0,
        magnification=105_000.0,
        camera=settings.detector.name,
        microscope=settings.microscope.name,
        timestamp=when,
        grid_square=str(1_000 + plan.grid_square),
        foil_hole=str(2_000_000 + plan.foil_hole),
    )


def _write_movie(
    path: Path, frames: np.ndarray, fmt: MovieFormat, *, apix: float, grouping: int, seed: int
) -> None:
    from causalscope.daemon import formats

    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "mrc":
        formats.write_mrc_movie(path, frames, pixel_size_angstrom=apix, atomic=False)
    elif fmt == "tiff":
        formats.write_tiff_movie(path, frames, atomic=False)
    else:
        formats.write_eer_movie(
            path,
            _EerSplit(frames, grouping, seed),
            pixel_size_angstrom=apix,
            seed=seed,
            atomic=False,
        )


class _EerSplit:
    """Each fraction's counts spread over ``grouping`` EER frames, at most one electron per
    pixel per EER frame (as the format records them): the electrons of a pixel go to
    consecutive EER frames from a random start. The EER frames are made one fraction at a time
    as they are written (a 4096^2 movie of 40 fractions is 1,280 EER frames: 21 GB at once)."""

    def __init__(self, frames: np.ndarray, grouping: int, seed: int) -> None:
        if frames.max(initial=0) > grouping:
            raise InputError(
                "Too many electrons for EER",
                f"{int(frames.max())} counts in one pixel of one fraction but only {grouping} "
                "EER frames per fraction; raise detector.eer_grouping or lower the dose",
            )
        self.frames, self.grouping, self.seed = frames, grouping, seed

    def __len__(self) -> int:
        return self.frames.shape[0] * self.grouping

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        _, h, w = self.frames.shape
        for fraction in self.frames:
            counts = fraction.ravel().astype(np.int64)
            start = rng.integers(0, self.grouping, size=counts.size)
            pixels = np.repeat(np.arange(counts.size), counts)  # one entry per electron
            first = np.repeat(np.cumsum(counts) - counts, counts)
            frame = (start[pixels] + np.arange(pixels.size) - first) % self.grouping
            # by EER frame, then pixel (a stable sort of 16-bit keys is a radix sort)
            order = np.argsort(frame.astype(np.uint16), kind="stable")
            bounds = np.searchsorted(frame[order], np.arange(self.grouping + 1))
            for g in range(self.grouping):
                out = np.zeros(h * w, dtype=np.uint8)
                out[pixels[order[bounds[g] : bounds[g + 1]]]] = 1
                yield out.reshape(h, w)


def _copy_slowly(source: Path, target: Path, seconds: float) -> None:
    """Copy ``source`` to ``target`` in chunks over ``seconds``: a file that grows, as a
    detector writes it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    chunks = 8
    step = max(1, len(data) // chunks + 1)
    with target.open("wb") as out:
        for start in range(0, len(data), step):
            out.write(data[start : start + step])
            out.flush()
            time.sleep(seconds / chunks)


def run_simulation(
    settings: Any,
    request: SimulationRequest,
    *,
    on_movie: Callable[[SimulatedMovie, int], None] | None = None,
) -> SimulationSummary:
    """Simulate ``request.n_exposures`` movies of the session described by ``settings``.

    Movies, metadata, ``gain_reference.mrc``, ``defects.txt`` and ``truth.jsonl`` go to
    ``request.out_dir``; with ``zmq_address`` the frames are pushed instead of written
    (see :mod:`daemon.frame_protocol`). ``on_movie(movie, n_total)`` is called after each.
    """
    import torch

    from causalscope.models.simulate import draw_detector, draw_session, simulate_exposure

    if request.n_exposures < 1:
        raise InputError(
            "Nothing to simulate", f"--n must be at least 1, got {request.n_exposures}"
        )
    started = time.monotonic()
    out = request.out_dir
    out.mkdir(parents=True, exist_ok=True)
    sim = settings.simulation
    specimen = load_specimen(sim.structure)
    mtf, mtf_name = _mtf(settings)
    base = base_parameters(settings)
    plans = draw_session(
        sim,
        n_exposures=request.n_exposures,
        base=base,
        particle_diameter_angstrom=2 * specimen.radius_angstrom,
        seed=request.seed,
    )
    detector = draw_detector(np.random.default_rng(request.seed + 7), (sim.size_px, sim.size_px))
    gain_path, defects_path = _write_detector_files(out, detector, base)
    truth_path = out / TRUTH_FILE
    truth_path.write_text("")
    sender = FrameSender(request.zmq_address) if request.zmq_address else None
    emitter = _Emitter(settings, request, base, mtf_name, truth_path, out / ".staging", sender)
    movies: list[SimulatedMovie] = []
    interval = request.rate_s if request.rate_s is not None else 10.0
    try:
        for plan in plans:
            t0 = time.monotonic()
            when = request.start_time + timedelta(seconds=interval * plan.index)
            with torch.inference_mode():
                exposure = simulate_exposure(
                    plan.parameters, specimen=specimen, mtf=mtf, detector=detector
                )
            movie = emitter.emit(plan, exposure, when, t0)
            movies.append(movie)
            if on_movie is not None:
                on_movie(movie, len(plans))
    finally:
        if sender is not None:
            sender.close()
        shutil.rmtree(emitter.staging, ignore_errors=True)
    return SimulationSummary(
        out, movies, truth_path, gain_path, defects_path, time.monotonic() - started
    )


def _write_detector_files(out: Path, detector: Any, base: Any) -> tuple[Path, Path]:
    """The gain reference and the defect list of the drawn detector: their paths."""
    from causalscope.daemon import formats

    gain_path, defects_path = out / GAIN_FILE, out / DEFECTS_FILE
    formats.write_gain(
        gain_path, detector.gain_reference, pixel_size_angstrom=base.pixel_size_angstrom
    )
    dead_pixels = [*detector.dead_pixels, *detector.hot_pixels]
    formats.write_defects(defects_path, columns=detector.dead_columns, pixels=dead_pixels)
    return gain_path, defects_path


@dataclass(frozen=True)
class _Emitter:
    """Where each simulated exposure goes: files (or the sender) and a line of truth."""

    settings: Any
    request: SimulationRequest
    base: Any
    mtf_name: str
    truth_path: Path
    staging: Path
    sender: FrameSender | None

    def emit(self, plan: Any, exposure: Any, when: datetime, t0: float) -> SimulatedMovie:
        """Write or push ``exposure`` (its simulation started at monotonic ``t0``), append
        its truth, and describe it."""
        request, sender, out = self.request, self.sender, self.request.out_dir
        movie_rel, meta_rel = _names(plan, request, when)
        exposure_id = Path(movie_rel).name.split(".")[0]
        truth = {
            "file": None if sender else movie_rel,
            "exposure_id": exposure_id,
            "metadata_file": None if sender else meta_rel,
            **plan.factors(),
            **exposure.truth,
            "timestamp": when.isoformat(),
            "mtf": self.mtf_name,
            "gain_reference": GAIN_FILE,
            "defects": DEFECTS_FILE,
            "movie_format": request.movie_format,
            "eer_grouping": self.settings.detector.eer_grouping
            if request.movie_format == "eer"
            else None,
            "microscope": self.settings.microscope.name,
            "detector": self.settings.detector.name,
        }
        metadata = _metadata(plan, truth, self.settings, movie_rel, meta_rel or "", when)
        simulated = time.monotonic() - t0
        if sender is not None:
            budget = max(0.0, (request.rate_s or 0.0) - simulated)
            sender.send_exposure(exposure_id, exposure.frames, metadata, budget, self.base)
        else:
            _write_outputs(
                out,
                self.staging,
                request,
                self.settings,
                exposure.frames,
                movie_rel,
                meta_rel,
                metadata,
                simulated,
                plan.parameters.seed,
            )
        with self.truth_path.open("a") as handle:
            handle.write(json.dumps(truth) + "\n")
        path = None if sender else out / movie_rel
        return SimulatedMovie(plan.index, path, exposure_id, truth, simulated)


def _write_outputs(
    out: Path,
    staging: Path,
    request: SimulationRequest,
    settings: Any,
    frames: np.ndarray,
    movie_rel: str,
    meta_rel: str | None,
    metadata: AcquisitionMetadata,
    simulated_s: float,
    seed: int,
) -> None:
    from causalscope.daemon import formats

    target = out / movie_rel
    apix = metadata.pixel_size_angstrom or 1.0
    grouping = settings.detector.eer_grouping
    if request.rate_s:
        staged = staging / Path(movie_rel).name
        _write_movie(staged, frames, request.movie_format, apix=apix, grouping=grouping, seed=seed)
        # a detector takes a good part of the interval to write a movie, however long we took
        # to simulate it; when simulating is slower than the rate, the rate slips
        _copy_slowly(staged, target, max(0.4 * request.rate_s, request.rate_s - simulated_s) * 0.8)
        staged.unlink()
    else:
        _write_movie(target, frames, request.movie_format, apix=apix, grouping=grouping, seed=seed)
    if meta_rel is not None:
        meta_path = out / meta_rel
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        record = metadata.model_copy(update={"source_path": str(meta_path)})
        if request.metadata_format == "mdoc":
            formats.write_mdoc(meta_path, [record])
        else:
            formats.write_epu_xml(meta_path, record)
