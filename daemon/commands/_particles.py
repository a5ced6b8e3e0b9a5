"""Particles for the commands that read them: STAR files or session folders, loaded and binned."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from causalscope.models.errors import InputError

__all__ = ["load_particles", "star_files"]


def star_files(paths: list[Path]) -> list[Path]:
    """STAR files as given, and each folder's ``particles/*.star`` (else its ``*.star``)."""
    stars: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("particles/*.star")) or sorted(path.glob("*.star"))
            if not found:
                raise InputError("No particles", f"{path} holds no particles/*.star", path=path)
            stars += found
        elif path.is_file():
            stars.append(path)
        else:
            raise InputError("No such file", f"{path} does not exist", path=path)
    return stars


def load_particles(stars: list[Path], box_px: int) -> tuple[Any, Any, Any, np.ndarray, float]:
    """Images binned to at most ``box_px``, their CTFs, the STAR rows, half-sets (the files'
    ``rlnRandomSubset`` when every file has one, else alternating) and the binned pixel size."""
    import pandas as pd
    import starfile
    import torch

    from causalscope.daemon.formats.particles_read import read_particles
    from causalscope.models.reconstruction import ParticleCtfs
    from causalscope.models.reconstruction.resample import fourier_crop

    sets = [read_particles(star) for star in stars]
    sizes = {(s.pixel_size_angstrom, s.images.shape[-1]) for s in sets if s.images is not None}
    if len(sizes) != 1:
        raise InputError("Mixed particles", f"pixel sizes and boxes differ: {sorted(sizes)}")
    pixel, box = sizes.pop()
    target = min(box, box_px - box_px % 2)
    images = torch.cat([torch.as_tensor(s.images) for s in sets if s.images is not None])
    images = fourier_crop(images, target)
    apix = pixel * box / target
    ctfs = replace(ParticleCtfs.concatenate([s.ctfs for s in sets]), pixel_size_angstrom=apix)
    halves = [s.half_set for s in sets if s.half_set is not None]
    n = len(images)
    half_set = np.concatenate(halves) if len(halves) == len(sets) else 1 + np.arange(n) % 2
    rows = pd.concat(
        [starfile.read(star, always_dict=True)["particles"] for star in stars], ignore_index=True
    )
    return images, ctfs, rows, half_set, apix
