"""Reading particles from RELION STAR files (3.0 and 3.1+) and their MRCS stacks.

:func:`read_particles` gives a :class:`ParticleSet`: per-particle CTF (optics-group voltage, Cs
and amplitude contrast joined in), poses and origin offsets when the file has them, the half-set
(``rlnRandomSubset``) when it has one, and the images (``N@stack`` references resolved beside
the STAR file or else from the working folder, as RELION does; each stack opened once).
RELION 3.0 files carry the optics in every row and the pixel size as
``rlnDetectorPixelSize * 1e4 / rlnMagnification``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

from causalscope.daemon.formats._common import FormatError
from causalscope.models.reconstruction import ParticleCtfs

__all__ = ["ParticleSet", "read_particles"]

_OPTICS_COLUMNS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")


@dataclass(frozen=True)
class ParticleSet:
    """``n`` particles: ``images`` ``(n, b, b)`` float32 (None when not loaded), ``ctfs``,
    ``euler_deg`` ``(n, 3)`` (RELION rot, tilt, psi; None without poses), ``offsets_px``
    ``(n, 2)`` (RELION's origin, zero without one), ``half_set`` ``(n,)`` 1 or 2 (None without
    one), ``image_names`` and ``micrograph_names``."""

    images: np.ndarray | None
    ctfs: ParticleCtfs
    euler_deg: np.ndarray | None
    offsets_px: np.ndarray
    half_set: np.ndarray | None
    image_names: tuple[str, ...]
    micrograph_names: tuple[str, ...]

    @property
    def pixel_size_angstrom(self) -> float:
        return self.ctfs.pixel_size_angstrom

    def __len__(self) -> int:
        return len(self.ctfs)


def _bad(path: Path, message: str) -> FormatError:
    return FormatError("Unreadable particle file", message, path=path)


def _tables(path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    try:
        data = starfile.read(path, always_dict=True)
    except Exception as error:  # starfile raises several kinds on a bad file
        raise _bad(path, f"{path}: not a readable STAR file ({error})") from error
    particles = data.get("particles")
    if particles is None:  # RELION 3.0: one unnamed block
        blocks = [t for t in data.values() if isinstance(t, pd.DataFrame) and "rlnImageName" in t]
        particles = blocks[0] if blocks else None
    if particles is None or "rlnImageName" not in particles:
        raise _bad(path, f"{path}: no particle table with rlnImageName (blocks {list(data)})")
    return particles.reset_index(drop=True), data.get("optics")


def _joined(path: Path, particles: pd.DataFrame, optics: pd.DataFrame | None) -> pd.DataFrame:
    """Particles with their optics columns and ``pixel_size`` joined in."""
    table = particles.copy()
    if optics is not None:
        if "rlnOpticsGroup" not in table:
            table["rlnOpticsGroup"] = int(optics["rlnOpticsGroup"].iloc[0])
        groups = optics.set_index("rlnOpticsGroup")
        unknown = sorted(set(table["rlnOpticsGroup"]) - set(groups.index))
        if unknown:
            raise _bad(path, f"{path}: particles name optics groups {unknown} the file lacks")
        rows = groups.loc[table["rlnOpticsGroup"]]
        for column in (*_OPTICS_COLUMNS, "rlnImagePixelSize", "rlnCtfDataArePhaseFlipped"):
            if column in rows and column not in table:
                table[column] = rows[column].to_numpy()
    if "rlnImagePixelSize" in table:
        table["pixel_size"] = table["rlnImagePixelSize"].astype(float)
    elif {"rlnDetectorPixelSize", "rlnMagnification"} <= set(table):
        table["pixel_size"] = table["rlnDetectorPixelSize"] * 1e4 / table["rlnMagnification"]
    else:
        raise _bad(path, f"{path}: no pixel size (rlnImagePixelSize or detector/magnification)")
    missing = [c for c in (*_OPTICS_COLUMNS, "rlnDefocusU", "rlnDefocusV") if c not in table]
    if missing:
        raise _bad(path, f"{path}: particles lack {missing}")
    return table


def _load_images(path: Path, names: pd.Series) -> np.ndarray:
    parts = names.str.split("@", n=1, expand=True)
    if parts.shape[1] != 2 or parts[1].isna().any():
        bad = names[parts[1].isna()].iloc[0] if parts.shape[1] == 2 else names.iloc[0]
        raise _bad(path, f"{path}: image name {bad!r} is not N@stack")
    index = parts[0].astype(int).to_numpy() - 1
    images: list[np.ndarray | None] = [None] * len(names)
    for stack, rows in parts.groupby(1).groups.items():
        stack_path = path.parent / str(stack)
        if not stack_path.exists() and Path(str(stack)).exists():  # relative to the project
            stack_path = Path(str(stack))
        if not stack_path.exists():
            raise _bad(path, f"{path}: particle stack {stack_path} does not exist")
        with mrcfile.mmap(stack_path, permissive=True) as mrc:
            data = mrc.data if mrc.data.ndim == 3 else mrc.data[None]
            for row in rows:
                i = int(index[row])
                if not 0 <= i < len(data):
                    raise _bad(stack_path, f"{stack_path}: image {i + 1} of {len(data)} asked for")
                images[row] = np.array(data[i], dtype=np.float32)
    return np.stack(images)  # type: ignore[arg-type]


def read_particles(path: str | Path, *, load_images: bool = True) -> ParticleSet:
    """The particles of a RELION particle STAR file (and their images, ``load_images``).

    Raises
    ------
    FormatError
        Unreadable file, missing columns, several pixel sizes, or a missing stack.
    """
    path = Path(path)
    particles, optics = _tables(path)
    table = _joined(path, particles, optics)
    pixel_sizes = np.unique(table["pixel_size"].round(6))
    if len(pixel_sizes) != 1:
        raise _bad(path, f"{path}: particles of several pixel sizes {pixel_sizes.tolist()}")
    flipped = table.get("rlnCtfDataArePhaseFlipped", pd.Series([0])).astype(int)
    ctfs = ParticleCtfs(
        table["rlnDefocusU"].to_numpy(float),
        table["rlnDefocusV"].to_numpy(float),
        table.get("rlnDefocusAngle", pd.Series(0.0, index=table.index)).to_numpy(float),
        voltage_kv=table["rlnVoltage"].to_numpy(float),
        spherical_aberration_mm=table["rlnSphericalAberration"].to_numpy(float),
        amplitude_contrast=table["rlnAmplitudeContrast"].to_numpy(float),
        pixel_size_angstrom=float(pixel_sizes[0]),
        phase_flipped=bool(flipped.any()),
    )
    angles = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    euler = table[angles].to_numpy(float) if set(angles) <= set(table) else None
    if {"rlnOriginXAngst", "rlnOriginYAngst"} <= set(table):
        offsets = table[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(float) / pixel_sizes[0]
    elif {"rlnOriginX", "rlnOriginY"} <= set(table):  # RELION 3.0: pixels
        offsets = table[["rlnOriginX", "rlnOriginY"]].to_numpy(float)
    else:
        offsets = np.zeros((len(table), 2))
    half = table["rlnRandomSubset"].to_numpy(int) if "rlnRandomSubset" in table else None
    names = table["rlnImageName"].astype(str)
    return ParticleSet(
        images=_load_images(path, names) if load_images else None,
        ctfs=ctfs,
        euler_deg=euler,
        offsets_px=offsets,
        half_set=half,
        image_names=tuple(names),
        micrograph_names=tuple(table.get("rlnMicrographName", names).astype(str)),
    )
