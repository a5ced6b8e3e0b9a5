"""3D maps as MRC volumes, and the FSC of a refinement as RELION's ``postprocess.star``.

:func:`write_mrc_map` / :func:`read_mrc_map`: a ``(b, b, b)`` map indexed ``[z, y, x]`` with its
voxel size (space group 1, a volume, not a stack). :func:`write_fsc_star`: ``data_general``
(final resolution, the half-maps' names, the shell where phase randomisation began) and
``data_fsc`` (spectral index, resolution in 1/A and A, the corrected and unmasked FSC), the
blocks and labels RELION's post-processing writes, so its tools and plotting scripts read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pandas as pd
import starfile

from causalscope.daemon.formats._common import check_positive_pixel_size, output_path
from causalscope.models.errors import FormatError

__all__ = ["read_mrc_map", "write_fsc_star", "write_mrc_map", "write_refinement_maps"]


def write_mrc_map(
    path: str | Path, volume: np.ndarray, *, pixel_size_angstrom: float, atomic: bool = True
) -> Path:
    """Write a ``(b, b, b)`` float map (mode 2) with its voxel size."""
    path = Path(path)
    data = np.asarray(volume, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"{path}: a map must be (d, h, w), got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError(f"{path}: the map holds non-finite values")
    check_positive_pixel_size(pixel_size_angstrom)
    with output_path(path, atomic=atomic) as target:
        with mrcfile.new(target, overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.set_volume()
            mrc.voxel_size = pixel_size_angstrom
    return path


def read_mrc_map(path: str | Path) -> tuple[np.ndarray, float]:
    """A cubic map and its voxel size (A)."""
    path = Path(path)
    try:
        with mrcfile.open(path, permissive=True) as mrc:
            data = np.array(mrc.data, dtype=np.float32)
            voxel = float(mrc.voxel_size.x)
    except (OSError, ValueError) as error:
        raise FormatError("Unreadable map", f"{path}: {error}", path=path) from error
    if data.ndim != 3 or len(set(data.shape)) != 1:
        raise FormatError(
            "Not a cubic map", f"{path}: shape {data.shape}, need (b, b, b)", path=path
        )
    if not voxel > 0:
        raise FormatError("Map without a pixel size", f"{path}: voxel size {voxel}", path=path)
    return data, voxel


def write_fsc_star(
    path: str | Path,
    *,
    corrected: np.ndarray,
    unmasked: np.ndarray,
    pixel_size_angstrom: float,
    resolution_angstrom: float,
    half_maps: tuple[str, str],
    randomise_from_angstrom: float | None = None,
    atomic: bool = True,
) -> Path:
    """Write RELION's ``postprocess.star`` blocks for an FSC of ``s`` shells (shell ``i`` at
    ``i / (2 (s - 1))`` cycles per pixel)."""
    path = Path(path)
    corrected, unmasked = np.asarray(corrected, float), np.asarray(unmasked, float)
    if corrected.shape != unmasked.shape or corrected.ndim != 1 or corrected.size < 2:
        raise ValueError(
            f"{path}: FSC curves must be (s,) each, got {corrected.shape}, {unmasked.shape}"
        )
    shells = np.arange(corrected.size)
    frequency = shells / (2 * (corrected.size - 1) * pixel_size_angstrom)
    with np.errstate(divide="ignore"):
        angstrom = np.where(frequency > 0, 1 / np.where(frequency > 0, frequency, 1), 999.0)
    general = {
        "rlnFinalResolution": resolution_angstrom,
        "rlnUnfilteredMapHalf1": half_maps[0],
        "rlnUnfilteredMapHalf2": half_maps[1],
        "rlnRandomiseFrom": randomise_from_angstrom if randomise_from_angstrom else 0.0,
    }
    fsc = pd.DataFrame(
        {
            "rlnSpectralIndex": shells,
            "rlnResolution": frequency,
            "rlnAngstromResolution": angstrom,
            "rlnFourierShellCorrelationCorrected": corrected,
            "rlnFourierShellCorrelationUnmaskedMaps": unmasked,
        }
    )
    with output_path(path, atomic=atomic) as target:
        starfile.write({"general": general, "fsc": fsc}, target, overwrite=True)
    return path


def write_refinement_maps(folder: str | Path, refinement: Any, *, stem: str = "") -> dict[str, str]:
    """A refinement's half-maps, its map (their mean low-passed at its resolution) and its FSC
    (``postprocess.star``) in ``folder``, names prefixed ``stem``; the paths by kind
    (``half1``, ``half2``, ``map``, ``fsc_star``). ``refinement``: a
    :class:`~models.reconstruction.refine.RunningRefinement` after an update."""
    from causalscope.models.reconstruction.refine import low_pass

    folder = Path(folder)
    if refinement.fsc is None:
        raise ValueError(f"{folder}: the refinement has no FSC yet (update it first)")
    apix = refinement.pixel_size_angstrom
    half_a, half_b = refinement.half_maps()
    resolution = refinement.resolution_angstrom
    full = low_pass((half_a + half_b) / 2, resolution_angstrom=resolution, pixel_size_angstrom=apix)
    paths: dict[str, str] = {}
    for kind, data in (("half1", half_a), ("half2", half_b), ("map", full)):
        path = write_mrc_map(
            folder / f"{stem}{kind}.mrc", data.cpu().numpy(), pixel_size_angstrom=apix
        )
        paths[kind] = str(path)
    paths["fsc_star"] = str(
        write_fsc_star(
            folder / f"{stem}postprocess.star",
            corrected=refinement.fsc.masked.numpy(),
            unmasked=refinement.fsc.unmasked.numpy(),
            pixel_size_angstrom=apix,
            resolution_angstrom=resolution,
            half_maps=(f"{stem}half1.mrc", f"{stem}half2.mrc"),
        )
    )
    return paths
