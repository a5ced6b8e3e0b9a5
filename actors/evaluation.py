"""The session evaluator: one per session, it keeps the running 2D classes and 3D map.

:class:`SessionEvaluator` is a plain class (:mod:`actors.remote` wraps it as a Ray actor). The
daemon hands it each committed exposure's particles (the ``particles/<id>.star`` the exposure
actor wrote) in commit order with :meth:`~SessionEvaluator.consume`: they are read, queued for
the 2D classifier and, when the session has a reference map, binned to ``box_px``, aligned
against the current half-maps and added to their half-set's sums at once (the work is spread
over the session). :meth:`~SessionEvaluator.update` classifies the queued particles (one
:meth:`~models.classification.Class2D.partial_fit`), selects classes (automatic junk score,
then the operator's labels), rebuilds the half-maps and their FSC, fits the forecast, writes
the files and answers with an :class:`~actors._evaluation_results.EvaluationUpdate`.
Without a reference, once ``ab_initio_min_particles`` sit in selected classes, an update first
builds an ab-initio map from them; from then on the session refines against it as against a
reference (every particle held so far is added at once). Its hand is undetermined.

Exactly once across restarts: everything (the exposures held, the classifier, the 3D sums,
the update history) is written together at each update, to a temporary file renamed over
``state.pt`` (:func:`os.replace` is atomic). A process killed at any point leaves the state
of the last update; on restart the evaluator loads it, and the daemon hands it every
exposure again: those it holds are skipped, the others added once. The binned particle images
alone live outside it, in a file flushed before the state that counts them (:mod:`.particle_rows`).

Where it computes: ``EvaluatorSettings.device`` (the rule of ``processing.device``); the
classifier, the refinement and ab initio keep their tensors there, and what is saved or
written is on the CPU, so that a state saved beside a GPU loads on a machine without one.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalscope.actors import _evaluation_parts as parts
from causalscope.actors._evaluation_results import (
    ClassSetUpdate,
    EvaluationUpdate,
    MapUpdate,
    finite_or_none,
)
from causalscope.actors.particle_rows import particle_store
from causalscope.models.classification import Class2D, Class2DSettings
from causalscope.models.reconstruction.ab_initio import AbInitioSettings
from causalscope.models.reconstruction.particle_ctf import ParticleCtfs
from causalscope.models.reconstruction.refine import RefinementSettings, RunningRefinement

__all__ = ["EvaluatorSettings", "SessionEvaluator"]

_STATE_VERSION = 1


@dataclass(frozen=True)
class EvaluatorSettings:
    """What the evaluator does (``processing.reconstruction`` and the particle diameter).

    ``reference``: an MRC map to refine against (None: classes only). ``class2d`` and
    ``refinement`` override the models' own settings (``classes`` and ``symmetry`` win).
    """

    particle_diameter_angstrom: float
    classes: int = 50
    class_threshold: float = 0.5
    reference: str | None = None
    symmetry: str = "C1"
    box_px: int = 64
    target_resolution_angstrom: float = 3.0
    class2d: Class2DSettings | None = None
    refinement: RefinementSettings | None = None
    #: without a reference: the selected particles that start an ab-initio map
    ab_initio_min_particles: int = 1000
    #: at most this many of them go into it (a random subset)
    ab_initio_max_particles: int = 3000
    ab_initio_resolution_angstrom: float = 12.0
    #: overrides the ab-initio defaults (``symmetry`` and the final resolution win)
    ab_initio: AbInitioSettings | None = None
    #: the novelty index's folder (:mod:`actors.novelty`; read at each update, so that
    #: structures added during the session count); None or absent: no Novelty
    novelty_index: str | None = None
    novelty_scale: float = 0.8
    #: where the classes and maps are computed: "auto" (CUDA when visible), "cpu" or "cuda";
    #: state and files are on the CPU whatever it is (:mod:`daemon.placement` sets it)
    device: str = "cpu"


@dataclass
class _Queued:
    images: torch.Tensor
    ctfs: ParticleCtfs
    rows: Any  # the STAR's particle rows, image names made absolute


class SessionEvaluator:
    """The running reconstructions of one session (module docstring); files and state live in
    ``state_dir``; ``threads``: torch threads of this process (as it is, when None)."""

    def __init__(
        self, state_dir: Path, settings: EvaluatorSettings, *, threads: int | None = None
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.device = parts.resolved_device(settings.device)
        self._consumed: dict[str, int] = {}
        self._queued: list[_Queued] = []
        self._rows: list[Any] = []  # STAR rows of the classified particles, in order
        self._classifier: Class2D | None = None
        self._assigned: dict[str, np.ndarray] = {}
        self._refinement: RunningRefinement | None = None
        self._stars: dict[str, str] = {}  # each exposure's particles STAR
        self._initial_model: str | None = None  # the ab-initio map, when there is no reference
        self._symmetry_correlations: tuple[float, ...] | None = None
        self._rotations: list[np.ndarray] = []
        self._history: list[tuple[int, float]] = []  # (particles, resolution) per map update
        self._version = 0
        self._latest: EvaluationUpdate | None = None
        self._geometry: tuple[int, float] | None = None  # the particles' box and pixel size
        self._index: Any = None  # the novelty index, and the manifest time it was read at
        self._index_stamp = 0.0
        self._load()

    # --- what it holds ------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.state_dir / "state.pt"

    @property
    def particle_counts(self) -> dict[str, int]:
        """Particles taken per exposure (since the last update too)."""
        return dict(self._consumed)

    @property
    def particle_count(self) -> int:
        return sum(self._consumed.values())

    @property
    def queued(self) -> int:
        """Particles taken and not yet in an update."""
        return sum(len(q.images) for q in self._queued)

    def latest(self) -> EvaluationUpdate | None:
        """The last update (after a restart: the last saved one)."""
        return self._latest

    # --- particles in -------------------------------------------------------------------

    def consume(self, exposure_id: str, particles_star: str | Path) -> int:
        """Take one exposure's particles (once: 0 if they are already held)."""
        from causalscope.daemon.formats.particles_read import read_particles

        if exposure_id in self._consumed:
            return 0
        path = Path(particles_star)
        particles = read_particles(path)
        assert particles.images is not None
        geometry = (int(particles.images.shape[-1]), particles.pixel_size_angstrom)
        if self._geometry is None:
            self._geometry = geometry
        elif geometry[0] != self._geometry[0] or abs(geometry[1] - self._geometry[1]) > 1e-4:
            raise ValueError(
                f"{path}: particles of box {geometry[0]} at {geometry[1]:.4f} A/px, the "
                f"session's are {self._geometry[0]} at {self._geometry[1]:.4f}"
            )
        images = torch.as_tensor(particles.images)
        if self._starts_map() and len(images):
            self._add_to_map(images, particles.ctfs)
        self._queued.append(_Queued(images, particles.ctfs, parts.star_rows(path)))
        self._consumed[exposure_id] = len(images)
        self._stars[exposure_id] = str(path)
        return len(images)

    def _starts_map(self) -> bool:
        """Whether particles go into the 3D map as they arrive: with a reference, or once the
        ab-initio map exists."""
        return self.settings.reference is not None or self._initial_model is not None

    def _add_to_map(self, images: torch.Tensor, ctfs: ParticleCtfs) -> None:
        from causalscope.models.reconstruction.resample import fourier_crop

        box = images.shape[-1]
        target = min(box, self.settings.box_px)
        apix = ctfs.pixel_size_angstrom * box / target
        if self._refinement is None:
            self._refinement = self._start_map(apix)
        binned = fourier_crop(images.to(self.device), target)
        first = sum(len(r) for r in self._rotations)
        half_set = 1 + (first + np.arange(len(images))) % 2
        found = self._refinement.add(binned, replace(ctfs, pixel_size_angstrom=apix), half_set)
        self._rotations.append(found.rotations.numpy().astype(np.float32))

    def _start_map(self, pixel_size_angstrom: float) -> RunningRefinement:
        from causalscope.daemon.formats.maps import read_mrc_map
        from causalscope.models.reconstruction.resample import rescale_map

        initial = self.settings.reference or self._initial_model
        assert initial is not None
        volume, reference_apix = read_mrc_map(initial)
        reference = rescale_map(
            torch.as_tensor(volume),
            from_pixel_angstrom=reference_apix,
            to_pixel_angstrom=pixel_size_angstrom,
            box_px=min(self.settings.box_px, self._geometry[0] if self._geometry else 10**6),
        )
        settings = replace(
            self.settings.refinement or RefinementSettings(), symmetry=self.settings.symmetry
        )
        return RunningRefinement(
            reference,
            pixel_size_angstrom=pixel_size_angstrom,
            settings=settings,
            device=self.device,
        )

    # --- updates ------------------------------------------------------------------------

    def update(
        self,
        *,
        labels: dict[int, str] | None = None,
        particles_per_hour: float | None = None,
        hours_left: float | None = None,
    ) -> EvaluationUpdate | None:
        """Fold the queued particles in, select classes (``labels``: class index ->
        'select' | 'reject'), rebuild the map, write the files and save; None when nothing
        new was taken. ``particles_per_hour`` and ``hours_left`` (of a planned session) go
        into the forecast."""
        if not self._queued and self._latest is not None and not labels:
            return None
        if not self._consumed:
            return None
        started = time.perf_counter()
        self._version += 1
        class_set = self._update_classes(labels or {})
        if class_set is not None and not self._starts_map():
            self._maybe_ab_initio(class_set)
        map_update = self._update_map()
        forecast = None
        if map_update is not None:
            forecast = parts.forecast(
                map_update,
                self._history,
                target_angstrom=self.settings.target_resolution_angstrom,
                particles_per_hour=particles_per_hour,
                hours_left=hours_left,
            )
        self._latest = EvaluationUpdate(
            version=self._version,
            particles=self.particle_count,
            exposures=len(self._consumed),
            seconds=time.perf_counter() - started,
            class_set=class_set,
            map=map_update,
            forecast=forecast,
        )
        self.save()
        return self._latest

    def _update_classes(self, labels: dict[int, str]) -> ClassSetUpdate | None:
        """One partial fit of the queued particles; every particle's latest class comes from
        the classifier's last full pass, overlaid with the batches scored since (a full pass
        of our own only while some particle has none)."""
        taken, self._queued = self._queued, []
        queued = [q for q in taken if len(q.images)]
        model = self._classifier
        if queued:
            images = torch.cat([q.images for q in queued])
            ctfs = ParticleCtfs.concatenate([q.ctfs for q in queued])
            if model is None:
                model = self._classifier = self._new_classifier(images.shape[-1], ctfs)
            before, n_before = model.last_full_pass, model.n_stored
            try:
                batch = model.partial_fit(images, ctfs, n_before + np.arange(len(images)))
            except Exception:  # not stored (a full disk): they wait for the next update
                self._queued = taken if model.n_stored == n_before else []
                raise
            self._rows.extend(q.rows for q in queued)
            if model.last_full_pass is not before:
                self._assigned = parts.columns(model.last_full_pass)
            self._assigned = parts.overlay(self._assigned, parts.columns(batch), model.n_stored)
        if model is None or not model.started:
            return None
        if (self._assigned["class_index"] < 0).any():
            self._assigned = parts.columns(model.reassign_all())
        return parts.class_set(
            model,
            self._assigned,
            labels,
            particle_diameter_angstrom=self.settings.particle_diameter_angstrom,
            class_threshold=self.settings.class_threshold,
            folder=self.state_dir / "classes",
            version=self._version,
            rows=self._rows,
            novelty=self._class_novelty(model),
        )

    def _novelty_index(self) -> Any:
        """The novelty index, opened again when it changed on disk (None without one)."""
        from causalscope.actors.novelty import NoveltyIndex

        folder = self.settings.novelty_index
        if folder is None or not NoveltyIndex.exists(folder):
            return None
        if self._index is None or NoveltyIndex(folder).stamp() != self._index_stamp:
            self._index = NoveltyIndex(folder)
            self._index_stamp = self._index.stamp()
        return self._index

    def _class_novelty(self, model: Class2D) -> list[Any] | None:
        """Each class average against the novelty index (None without one)."""
        index = self._novelty_index()
        if index is None:
            return None
        return index.classify(
            model.averages(),
            pixel_size_angstrom=float(model.grid.pixel_size_angstrom),
            scale=self.settings.novelty_scale,
            unsupported=model.unsupported(),
        )

    def _maybe_ab_initio(self, class_set: ClassSetUpdate) -> None:
        """Without a reference: once enough particles sit in selected classes, an ab-initio
        map from them (cryoSPARC's stochastic gradient descent, :func:`models.reconstruction.
        ab_initio`) starts the 3D refinement, and every particle held so far goes into it."""
        from causalscope.daemon.formats.maps import write_mrc_map
        from causalscope.daemon.formats.particles_read import read_particles
        from causalscope.models.reconstruction.ab_initio import ab_initio

        s, model = self.settings, self._classifier
        if model is None or class_set.selected_particles < s.ab_initio_min_particles:
            return
        selected = [row.class_index for row in class_set.classes if row.selected]
        index = np.flatnonzero(np.isin(self._assigned["class_index"], selected))
        if len(index) > s.ab_initio_max_particles:
            rng = np.random.default_rng(self._version)
            index = np.sort(rng.choice(index, s.ab_initio_max_particles, replace=False))
        images, ctfs, _ = model.stored()
        apix = model.grid.pixel_size_angstrom
        result = ab_initio(
            images[torch.as_tensor(index)],
            replace(ctfs.take(index), pixel_size_angstrom=apix),
            pixel_size_angstrom=apix,
            settings=replace(
                s.ab_initio or AbInitioSettings(),
                symmetry=s.symmetry,
                final_resolution_angstrom=max(s.ab_initio_resolution_angstrom, 2.5 * apix),
            ),
            device=self.device,
        )
        path = self.state_dir / "maps" / f"v{self._version:04d}_ab_initio.mrc"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mrc_map(path, result.volume.numpy(), pixel_size_angstrom=apix)
        self._initial_model = str(path)
        for star in self._stars.values():  # every particle held, as if it had just arrived
            particles = read_particles(Path(star))
            assert particles.images is not None
            if len(particles.images):
                self._add_to_map(torch.as_tensor(particles.images), particles.ctfs)

    def _new_classifier(self, box: int, ctfs: ParticleCtfs) -> Class2D:
        settings = replace(
            self.settings.class2d or Class2DSettings(),
            n_classes=self.settings.classes,
            particle_diameter_angstrom=self.settings.particle_diameter_angstrom,
        )
        return Class2D(
            box_px=box, pixel_size_angstrom=ctfs.pixel_size_angstrom, settings=settings,
            device=self.device, store=particle_store(self.state_dir),
        )  # fmt: skip

    def _update_map(self) -> MapUpdate | None:
        from causalscope.daemon.formats.maps import write_refinement_maps
        from causalscope.models.reconstruction.coverage import orientation_coverage
        from causalscope.models.reconstruction.symmetry import symmetry_matrices

        refinement = self._refinement
        if refinement is None or min(refinement.half_counts()) == 0:
            return None
        latest = self._latest.map if self._latest is not None else None
        if latest is not None and latest.particles == refinement.particle_count:
            return latest  # nothing new (a relabelling): the map stands
        fsc = refinement.update()
        paths = write_refinement_maps(
            self.state_dir / "maps", refinement, stem=f"v{self._version:04d}_"
        )
        coverage = orientation_coverage(
            np.concatenate(self._rotations), symmetry=symmetry_matrices(self.settings.symmetry)
        )
        self._history.append((refinement.particle_count, refinement.resolution_angstrom))
        novelty = self._map_novelty(refinement)
        return MapUpdate(
            particles=refinement.particle_count,
            symmetry=self.settings.symmetry,
            pixel_size_angstrom=refinement.pixel_size_angstrom,
            resolution_angstrom=finite_or_none(fsc.resolution_angstrom(0.143)),
            resolution_unmasked_angstrom=finite_or_none(
                fsc.resolution_angstrom(0.143, masked=False)
            ),
            resolution_fsc_05_angstrom=finite_or_none(fsc.resolution_angstrom(0.5)),
            fsc_masked=tuple(float(v) for v in fsc.masked),
            fsc_unmasked=tuple(float(v) for v in fsc.unmasked),
            half_map_1=paths["half1"],
            half_map_2=paths["half2"],
            map_path=paths["map"],
            fsc_star_path=paths["fsc_star"],
            coverage=coverage.coverage,
            largest_gap_deg=coverage.largest_gap_deg,
            symmetry_correlations=self._reference_symmetry(refinement),
            initial_model=self.settings.reference or self._initial_model or "",
            ab_initio=self.settings.reference is None,
            novelty=None if novelty is None else novelty.novelty,
            nearest=None if novelty is None else novelty.nearest,
        )

    def _map_novelty(self, refinement: RunningRefinement) -> Any:
        """The map against the novelty index (None without one, or before its first
        structure)."""
        index = self._novelty_index()
        if index is None or not index.entries("structure"):
            return None
        half_a, half_b = refinement.half_maps()
        return index.map_novelty(
            ((half_a + half_b) / 2).cpu().numpy(),
            pixel_size_angstrom=refinement.pixel_size_angstrom,
            scale=self.settings.novelty_scale,
        )

    def _reference_symmetry(self, refinement: RunningRefinement) -> tuple[float, ...]:
        """The reference's self-correlations under the set symmetry (computed once)."""
        if self._symmetry_correlations is None:
            self._symmetry_correlations = parts.reference_symmetry(
                self.settings.reference,
                self.settings.symmetry,
                pixel_size_angstrom=refinement.pixel_size_angstrom,
                box_px=refinement.box_px,
            )
        return self._symmetry_correlations

    # --- state --------------------------------------------------------------------------

    def save(self) -> None:
        """Write everything held, atomically (nothing queued is saved: see the module)."""
        state: dict[str, Any] = {
            "state_version": _STATE_VERSION,
            "consumed": {k: v for k, v in self._consumed.items() if k not in self._queued_ids()},
            "version": self._version,
            "geometry": self._geometry,
            "classifier": self._classifier,
            "assigned": self._assigned,
            "rows": self._rows,
            "refinement": None if self._refinement is None else self._refinement.state_dict(),
            "stars": {k: v for k, v in self._stars.items() if k not in self._queued_ids()},
            "initial_model": self._initial_model,
            "rotations": self._rotations,
            "history": self._history,
            "latest": self._latest,
        }
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.part")
        torch.save(state, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.state_path)

    def _queued_ids(self) -> set[str]:
        # consume() appends to _queued and _consumed together; update() empties _queued
        return set(list(self._consumed)[-len(self._queued) :]) if self._queued else set()

    def _load(self) -> None:
        if not self.state_path.exists():
            return
        state = torch.load(self.state_path, weights_only=False, map_location="cpu")
        if state.get("state_version") != _STATE_VERSION:
            raise ValueError(
                f"{self.state_path}: state version {state.get('state_version')}, expected "
                f"{_STATE_VERSION}"
            )
        self._consumed = dict(state["consumed"])
        self._version = int(state["version"])
        self._geometry = state["geometry"]
        self._classifier = state["classifier"]  # saved on the CPU, moved to this device
        if self._classifier is not None:
            self._classifier.to(self.device)
        self._assigned = state["assigned"]
        self._rows = state["rows"]
        self._rotations = state["rotations"]
        self._history = state["history"]
        self._latest = state["latest"]
        self._stars = dict(state.get("stars", {}))
        self._initial_model = state.get("initial_model")
        if state["refinement"] is not None:
            saved = state["refinement"]
            self._refinement = self._start_map(saved["pixel_size_angstrom"])
            self._refinement.load_state_dict(saved)
