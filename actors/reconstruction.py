"""The reconstruction evaluator: one per session, it keeps the running gold-standard 3D map.

:class:`ReconstructionEvaluator` is a plain class (usable without Ray). The daemon hands it
each committed exposure's particles (the ``particles/<id>.star`` the exposure actor wrote) in
commit order; it reads them, bins them to ``box_px``, aligns them against the current
half-maps and adds them to their half-sets' sums (:class:`~models.reconstruction.refine.
RunningRefinement`); :meth:`ReconstructionEvaluator.update` rebuilds the half-maps, writes them
and answers with a :class:`ReconstructionUpdate`.

Exactly once across restarts: the sums and the list of exposures they hold are written
together, to a temporary file renamed over ``state.pt`` (:func:`os.replace` is atomic), after
every ``save_every`` exposures and at every update. A process killed at any point leaves
either the old state or the new one; on restart the evaluator loads it and skips what it
holds, so exposures after it are added again, once, and none twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalscope.models.reconstruction.refine import RefinementSettings, RunningRefinement

__all__ = ["ReconstructionEvaluator", "ReconstructionUpdate"]

_STATE_VERSION = 1


@dataclass(frozen=True)
class ReconstructionUpdate:
    """One rebuilt map: its version, particle count, resolutions (A), FSC curves and files."""

    version: int
    particles: int
    resolution_angstrom: float
    resolution_unmasked_angstrom: float
    resolution_fsc_05_angstrom: float
    fsc_masked: tuple[float, ...]
    fsc_unmasked: tuple[float, ...]
    half_maps: tuple[str, str]
    pixel_size_angstrom: float


class ReconstructionEvaluator:
    """The running 3D refinement of one session, against ``reference`` (a map and its pixel
    size), particles binned to ``box_px``; its state and maps live in ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        reference: np.ndarray,
        reference_pixel_angstrom: float,
        box_px: int = 64,
        settings: RefinementSettings | None = None,
        save_every: int = 1,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._reference = (np.asarray(reference, dtype=np.float32), float(reference_pixel_angstrom))
        self._box_px = box_px
        self._settings = settings or RefinementSettings()
        self._save_every = max(1, save_every)
        self._refinement: RunningRefinement | None = None
        self._consumed: dict[str, int] = {}
        self._version = 0
        self._unsaved = 0
        self._load()

    @property
    def state_path(self) -> Path:
        return self.state_dir / "state.pt"

    @property
    def particle_counts(self) -> dict[str, int]:
        """Particles held per exposure (saved or not)."""
        return dict(self._consumed)

    @property
    def particle_count(self) -> int:
        return sum(self._consumed.values())

    def _start(self, pixel_size_angstrom: float) -> RunningRefinement:
        from causalscope.models.reconstruction.resample import rescale_map

        volume, reference_pixel = self._reference
        reference = rescale_map(
            torch.as_tensor(volume),
            from_pixel_angstrom=reference_pixel,
            to_pixel_angstrom=pixel_size_angstrom,
            box_px=self._box_px,
        )
        return RunningRefinement(
            reference, pixel_size_angstrom=pixel_size_angstrom, settings=self._settings
        )

    def consume(self, exposure_id: str, particles_star: Path) -> int:
        """Add one exposure's particles (once: 0 if its particles are already held)."""
        from causalscope.daemon.formats.particles_read import read_particles
        from causalscope.models.reconstruction.resample import fourier_crop

        if exposure_id in self._consumed:
            return 0
        particles = read_particles(particles_star)
        assert particles.images is not None
        box = particles.images.shape[-1]
        target = min(box, self._box_px)
        apix = particles.pixel_size_angstrom * box / target
        if self._refinement is None:
            self._refinement = self._start(apix)
        elif abs(self._refinement.pixel_size_angstrom - apix) > 1e-3 * apix:
            raise ValueError(
                f"{particles_star}: particles at {apix:.4f} A/px after binning, the session's "
                f"map is at {self._refinement.pixel_size_angstrom:.4f}"
            )
        images = fourier_crop(torch.as_tensor(particles.images), target)
        ctfs = replace(particles.ctfs, pixel_size_angstrom=apix)
        first = self.particle_count
        half_set = 1 + (first + np.arange(len(images))) % 2
        self._refinement.add(images, ctfs, half_set)
        self._consumed[exposure_id] = len(images)
        self._unsaved += 1
        if self._unsaved >= self._save_every:
            self.save()
        return len(images)

    def update(self) -> ReconstructionUpdate | None:
        """Rebuild the half-maps and their FSC, write the maps, save; None before both
        half-sets hold particles."""
        from causalscope.daemon.formats.maps import write_mrc_map

        refinement = self._refinement
        if refinement is None or refinement.particle_count < 2:
            return None
        fsc = refinement.update()
        self._version += 1
        half_a, half_b = refinement.half_maps()
        names = []
        for h, volume in enumerate((half_a, half_b), start=1):
            path = self.state_dir / "maps" / f"v{self._version:04d}_half{h}.mrc"
            write_mrc_map(path, volume.numpy(), pixel_size_angstrom=refinement.pixel_size_angstrom)
            names.append(str(path))
        self.save()
        return ReconstructionUpdate(
            version=self._version,
            particles=self.particle_count,
            resolution_angstrom=refinement.resolution_angstrom,
            resolution_unmasked_angstrom=fsc.resolution_angstrom(0.143, masked=False),
            resolution_fsc_05_angstrom=fsc.resolution_angstrom(0.5),
            fsc_masked=tuple(float(v) for v in fsc.masked),
            fsc_unmasked=tuple(float(v) for v in fsc.unmasked),
            half_maps=(names[0], names[1]),
            pixel_size_angstrom=refinement.pixel_size_angstrom,
        )

    def save(self) -> None:
        """Write the sums and the exposures they hold together, atomically."""
        state: dict[str, Any] = {
            "state_version": _STATE_VERSION,
            "consumed": dict(self._consumed),
            "version": self._version,
            "refinement": None if self._refinement is None else self._refinement.state_dict(),
        }
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.part")
        torch.save(state, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.state_path)
        self._unsaved = 0

    def _load(self) -> None:
        if not self.state_path.exists():
            return
        state = torch.load(self.state_path, weights_only=False)
        if state.get("state_version") != _STATE_VERSION:
            raise ValueError(
                f"{self.state_path}: state version {state.get('state_version')}, expected "
                f"{_STATE_VERSION}"
            )
        self._consumed = dict(state["consumed"])
        self._version = int(state["version"])
        if state["refinement"] is not None:
            saved = state["refinement"]
            self._refinement = self._start(saved["pixel_size_angstrom"])
            self._refinement.load_state_dict(saved)
