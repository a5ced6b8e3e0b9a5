"""The recorded session's running reconstructions, built by hand with a known truth.

Five updates: the first with 2D classes only, then a map and a forecast each. The maps'
resolutions follow Rosenthal-Henderson, ``1/d**2 = (2/B) ln(N/N5) + 1/d5**2`` with
``B = 60 A^2`` and ``d5 = 4.1 A`` at ``N5 = 12,300`` particles, and every forecast is that
law's: the resolution at twice the particles and the particles needed for 3.0 A. Each FSC curve
is a logistic falloff that crosses 0.143 exactly at the map's resolution (masked) or 0.5 A
coarser (unmasked); the FSC-0.5 resolution is where the masked curve crosses 0.5. Twelve class
averages (shapes, and three of junk) go into a gallery PNG written by the daemon's own writer.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from causalscope.actors._evaluation_results import (
    ClassRow,
    ClassSetUpdate,
    EvaluationUpdate,
    ForecastUpdate,
    MapUpdate,
)
from causalscope.daemon.store import SessionStore

BFACTOR = 60.0
TARGET = 3.0
PARTICLES = (2_000, 4_500, 7_200, 9_800, 12_300)
LAST_RESOLUTION = 4.1
PARTICLES_PER_HOUR = 15_000.0
MAP_PIXEL = 1.3
CLASS_PIXEL = 2.6
BOX = 24
N_SHELLS = 41
CLASS_PARTICLES = (2100, 1800, 1500, 1400, 1200, 1000, 900, 700, 600, 500, 350, 250)
JUNK = (0.1, 0.15, 0.2, 0.12, 0.3, 0.25, 0.2, 0.18, 0.8, 0.9, 0.35, 0.7)
#: The operator rejected class index 7 before the last update, and class 10 after it.
LABELLED_BEFORE = (7, "reject")
LABELLED_AFTER = (10, "reject")


def rh_resolution(particles: float) -> float:
    """The resolution (A) the Rosenthal-Henderson law gives for ``particles``."""
    inverse = (2 / BFACTOR) * math.log(particles / PARTICLES[-1]) + LAST_RESOLUTION**-2
    return 1 / math.sqrt(inverse)


def particles_needed(resolution: float) -> float:
    """The particles the law needs for ``resolution`` (A)."""
    ratio = (resolution**-2 - LAST_RESOLUTION**-2) / (2 / BFACTOR)
    return PARTICLES[-1] * math.exp(ratio)


def fsc_curve(resolution: float) -> tuple[float, ...]:
    """A logistic FSC over :data:`N_SHELLS` shells that is 0.143 at ``1/resolution``."""
    width = 0.012  # 1/A
    centre = 1 / resolution - width * math.log(1 / 0.143 - 1)
    shells = np.arange(N_SHELLS) / (2 * (N_SHELLS - 1)) / MAP_PIXEL
    return tuple(float(v) for v in 1 / (1 + np.exp((shells - centre) / width)))


def fsc_05_resolution(resolution: float) -> float:
    """Where :func:`fsc_curve` crosses 0.5 (A)."""
    return 1 / (1 / resolution - 0.012 * math.log(1 / 0.143 - 1))


def averages() -> np.ndarray:
    """Twelve ``BOX x BOX`` class averages: discs, rings, ellipses, a dimer; junk at 8, 9, 11."""
    y, x = np.mgrid[0:BOX, 0:BOX].astype(np.float64) - (BOX - 1) / 2

    def soft(distance: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(distance / 0.8))

    def ellipse(a: float, b: float, angle_deg: float, dx: float = 0.0) -> np.ndarray:
        t = math.radians(angle_deg)
        u = (x - dx) * math.cos(t) + y * math.sin(t)
        v = -(x - dx) * math.sin(t) + y * math.cos(t)
        return soft((np.hypot(u / a, v / b) - 1) * min(a, b))

    r = np.hypot(x, y)
    rng = np.random.default_rng(0)
    shapes = [
        soft(r - 7),
        soft(np.abs(r - 7) - 1.5),
        ellipse(9, 4, 0),
        ellipse(9, 4, 45),
        ellipse(4, 4, 0, -4.5) + ellipse(4, 4, 0, 4.5),
        ellipse(4, 9, 0),
        soft(np.abs(r - 5.5) - 2.5),
        ellipse(3, 3, 0, -5) + ellipse(3, 3, 0, 5) + soft(np.hypot(x, y + 5) - 3),
        rng.normal(0.5, 0.2, (BOX, BOX)),
        np.clip((x + y) / BOX + 0.5, 0, 1),
        soft(r - 4),
        soft(np.hypot(x - 7, y - 6) - 2) * 0.8 + 0.1,
    ]
    return np.stack(shapes).astype(np.float32)


def _classes(scale: float, labels: dict[int, str]) -> tuple[ClassRow, ...]:
    rows = []
    for k, (particles, junk) in enumerate(zip(CLASS_PARTICLES, JUNK, strict=True)):
        auto = junk < 0.5
        label = labels.get(k)
        selected = auto if label is None else label == "select"
        resolution = None if k in (8, 11) else (25.0 if k == 9 else 8.5 + 0.7 * k)
        n = round(particles * scale)
        rows.append(ClassRow(k, n, 0.8 * n, resolution, junk, auto, selected, label))
    return tuple(rows)


def make_update(version: int, folder: Path, labels: dict[int, str]) -> EvaluationUpdate:
    """The ``version``-th update (from 1; past the fifth, 2,500 particles per version) with the
    operator's ``labels`` applied; its files named in ``folder``."""
    particles = PARTICLES[version - 1] if version <= len(PARTICLES) else 2_500 * version
    classes = _classes(particles / PARTICLES[-1], labels)
    stem = folder / f"v{version:04d}_"
    class_set = ClassSetUpdate(
        n_classes=len(classes),
        particles=particles,
        selected_particles=sum(c.particles for c in classes if c.selected),
        pixel_size_angstrom=CLASS_PIXEL,
        averages_path=f"{stem}class_averages.mrcs",
        gallery_path=f"{stem}classes.png",
        model_star_path=f"{stem}model.star",
        selected_star_path=str(folder / "selected_particles.star"),
        classes=classes,
    )
    if version == 1:
        return EvaluationUpdate(version, particles, 8 * version, 4.0, class_set, None, None)
    resolution = rh_resolution(particles)
    volume = MapUpdate(
        particles=particles,
        symmetry="O",
        pixel_size_angstrom=MAP_PIXEL,
        resolution_angstrom=resolution,
        resolution_unmasked_angstrom=resolution + 0.5,
        resolution_fsc_05_angstrom=fsc_05_resolution(resolution),
        fsc_masked=fsc_curve(resolution),
        fsc_unmasked=fsc_curve(resolution + 0.5),
        half_map_1=f"{stem}half1.mrc",
        half_map_2=f"{stem}half2.mrc",
        map_path=f"{stem}map.mrc",
        fsc_star_path=f"{stem}postprocess.star",
        coverage=0.9,
        largest_gap_deg=12.0,
    )
    needed = particles_needed(TARGET)
    forecast = ForecastUpdate(
        particles=particles,
        bfactor_angstrom2=BFACTOR if version >= 4 else None,
        bfactor_sd_angstrom2=6.0 if version >= 4 else None,
        ssnr_bfactor_angstrom2=58.0,
        target_resolution_angstrom=TARGET,
        particles_needed=needed,
        resolution_at_double_angstrom=rh_resolution(2 * particles),
        particles_per_hour=PARTICLES_PER_HOUR,
        hours_to_target=(needed - particles) / PARTICLES_PER_HOUR,
    )
    return EvaluationUpdate(version, particles, 8 * version, 30.0, class_set, volume, forecast)


def write_gallery(update: EvaluationUpdate) -> Path:
    """Write the update's gallery PNG with the daemon's writer (rejected classes crossed out)."""
    from causalscope.daemon.formats.classes import class_gallery
    from causalscope.daemon.formats.png import write_png

    assert update.class_set is not None
    keep = np.array([c.selected for c in update.class_set.classes])
    return Path(write_png(Path(update.class_set.gallery_path), class_gallery(averages(), keep)))


def store_evaluations(
    store: SessionStore, folder: Path, *, gallery: bool = True
) -> list[EvaluationUpdate]:
    """Commit the five updates and the operator's two labels; write the last gallery."""
    updates = []
    labels: dict[int, str] = {}
    for version in range(1, len(PARTICLES) + 1):
        if version == len(PARTICLES):
            store.add_class_label(*LABELLED_BEFORE)
            labels[LABELLED_BEFORE[0]] = LABELLED_BEFORE[1]
        update = make_update(version, folder, labels)
        assert store.commit_evaluation(update)
        updates.append(update)
    if gallery:
        write_gallery(updates[-1])
    store.add_class_label(*LABELLED_AFTER)
    return updates
