"""Atomic models (PDB/mmCIF via gemmi) and maps (MRC via mrcfile) as atoms for the simulator.

:mod:`models` never reads files; the simulator gets an :class:`AtomicStructure` from here.
Electron scattering factors are gemmi's ``c4322`` coefficients (International Tables vol. C,
table 4.3.2.2): ``f(s) = sum_i a_i exp(-b_i s^2)`` in Angstrom, ``s = sin(theta) / lambda``
``= q / 2`` with ``q`` the spatial frequency in 1/Angstrom.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gemmi
import mrcfile
import numpy as np

from causalscope.daemon.formats._common import file_size
from causalscope.models.errors import FormatError

__all__ = ["AtomicStructure", "read_map_as_atoms", "read_structure"]


@dataclass(frozen=True)
class AtomicStructure:
    """Atoms ready for projection.

    Attributes
    ----------
    name
        Structure name (PDB id or file stem).
    coords_angstrom
        ``(n, 3)`` float32 (x, y, z), centred on the centre of mass (weights for a map).
    element_index
        ``(n,)`` int32 index into ``elements``.
    elements
        Element symbols present, e.g. ``("C", "N", "O", "S")``.
    scattering_a, scattering_b
        ``(n_elements, 5)`` float64 electron form-factor coefficients (``a`` in Angstrom, ``b``
        in Angstrom^2), rows in the order of ``elements``.
    b_iso_angstrom2
        ``(n,)`` float32 isotropic B-factor of each atom (0 for map pseudo-atoms).
    weights
        ``(n,)`` float32 density of each pseudo-atom for a map; None for a model.
    """

    name: str
    coords_angstrom: np.ndarray
    element_index: np.ndarray
    elements: tuple[str, ...]
    scattering_a: np.ndarray
    scattering_b: np.ndarray
    b_iso_angstrom2: np.ndarray
    weights: np.ndarray | None = None

    @property
    def n_atoms(self) -> int:
        """Number of atoms (or pseudo-atoms)."""
        return int(self.coords_angstrom.shape[0])


def _coefficients(elements: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([gemmi.Element(e).c4322.a for e in elements], dtype=np.float64)
    b = np.array([gemmi.Element(e).c4322.b for e in elements], dtype=np.float64)
    return a.reshape(len(elements), -1), b.reshape(len(elements), -1)


def _needs_expansion(assembly: gemmi.Assembly) -> bool:
    return any(
        not op.transform.is_identity() for gen in assembly.generators for op in gen.operators
    )


def read_structure(
    path: str | Path, *, assembly: bool = True, keep_waters: bool = False
) -> AtomicStructure:
    """Read a PDB or mmCIF model with gemmi.

    Hydrogens are dropped, only the first conformer of alternative locations is kept, and only
    the first model (NMR ensembles). Waters are dropped unless ``keep_waters`` (the simulator
    models the solvent as ice). With ``assembly``, the first biological assembly is built with
    ``gemmi.make_assembly`` when its operators are not all the identity (a deposited asymmetric
    unit); files that already hold the whole assembly (6z6u: 24 chains, 5a1a: 4 chains) are
    used as they are.

    Raises
    ------
    FormatError
        Unreadable file, no atoms left, or an atom of unknown element.
    """
    path = Path(path)
    file_size(path, "atomic model")
    try:
        st = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise FormatError("Unreadable atomic model", f"{path}: {exc}", path=path) from exc
    if len(st) == 0:
        raise FormatError("Atomic model has no model", f"{path} holds no atoms", path=path)
    st.remove_hydrogens()
    st.remove_alternative_conformations()
    if not keep_waters:
        st.remove_waters()
    st.remove_empty_chains()
    model = st[0]
    if assembly and len(st.assemblies) and _needs_expansion(st.assemblies[0]):
        model = gemmi.make_assembly(st.assemblies[0], model, gemmi.HowToNameCopiedChain.AddNumber)
    symbols: list[str] = []
    coords: list[tuple[float, float, float]] = []
    b_iso: list[float] = []
    for cra in model.all():
        symbol = cra.atom.element.name
        if symbol == "X":
            raise FormatError(
                "Unknown element in atomic model",
                f"{path}: atom {cra.atom.name} of {cra.residue.name} {cra.residue.seqid} in "
                f"chain {cra.chain.name} has no element",
                path=path,
            )
        symbols.append(symbol)
        coords.append((cra.atom.pos.x, cra.atom.pos.y, cra.atom.pos.z))
        b_iso.append(cra.atom.b_iso)
    if not symbols:
        raise FormatError("Atomic model has no atoms", f"{path}: nothing left", path=path)
    elements = tuple(sorted(set(symbols)))
    lookup = {e: i for i, e in enumerate(elements)}
    index = np.array([lookup[s] for s in symbols], dtype=np.int32)
    xyz = np.array(coords, dtype=np.float64)
    mass = np.array([gemmi.Element(e).weight for e in elements])[index]
    centre = (xyz * mass[:, None]).sum(axis=0) / mass.sum()
    a, b = _coefficients(elements)
    return AtomicStructure(
        name=st.name or path.stem,
        coords_angstrom=(xyz - centre).astype(np.float32),
        element_index=index,
        elements=elements,
        scattering_a=a,
        scattering_b=b,
        b_iso_angstrom2=np.array(b_iso, dtype=np.float32),
    )


def read_map_as_atoms(
    path: str | Path,
    *,
    threshold_sigma: float = 2.0,
    voxel_size_angstrom: float | None = None,
) -> AtomicStructure:
    """Turn an MRC map into pseudo-atoms: one carbon per voxel above the threshold.

    Parameters
    ----------
    path
        An MRC map (``.mrc``/``.map``); the axis order (MAPC/MAPR/MAPS) is honoured.
    threshold_sigma
        Voxels with density above ``mean + threshold_sigma * std`` become pseudo-atoms.
    voxel_size_angstrom
        Overrides the header's voxel size (needed when the header says 0).

    Returns
    -------
    AtomicStructure
        Pseudo-atoms at voxel centres, element ``("C",)``, B = 0, ``weights`` = density.
    """
    path = Path(path)
    file_size(path, "map")
    try:
        with mrcfile.open(path, mode="r") as mrc:
            data = np.asarray(mrc.data, dtype=np.float32)
            header = mrc.header
            axes = (int(header.maps), int(header.mapr), int(header.mapc))
            size = mrc.voxel_size
            header_voxel = (float(size.x), float(size.y), float(size.z))
    except ValueError as exc:
        raise FormatError("Unreadable map", f"{path}: {exc}", path=path) from exc
    if data.ndim != 3 or sorted(axes) != [1, 2, 3]:
        raise FormatError(
            "Not a 3D map", f"{path}: shape {data.shape}, axis order {axes}", path=path
        )
    # Array axes are (sections, rows, columns) = (MAPS, MAPR, MAPC); reorder to (z, y, x).
    volume = np.transpose(data, [axes.index(3), axes.index(2), axes.index(1)])
    voxel = header_voxel
    if voxel_size_angstrom is not None:
        voxel = (voxel_size_angstrom, voxel_size_angstrom, voxel_size_angstrom)
    if min(voxel) <= 0:
        raise FormatError(
            "Map has no voxel size",
            f"{path}: voxel size {header_voxel} in the header; pass voxel_size_angstrom",
            path=path,
        )
    std = float(volume.std())
    if std == 0:
        raise FormatError("Flat map", f"{path}: every voxel equals {volume.flat[0]}", path=path)
    threshold = float(volume.mean()) + threshold_sigma * std
    zyx = np.argwhere(volume > threshold)
    if zyx.size == 0:
        raise FormatError(
            "Empty map at this threshold",
            f"{path}: no voxel above {threshold:.4g} ({threshold_sigma} sigma)",
            path=path,
        )
    weights = volume[tuple(zyx.T)]
    xyz = zyx[:, ::-1] * np.asarray(voxel, dtype=np.float64)
    positive = np.clip(weights, 0.0, None).astype(np.float64)
    centre = (
        (xyz * positive[:, None]).sum(axis=0) / positive.sum()
        if positive.sum() > 0
        else xyz.mean(axis=0)
    )
    a, b = _coefficients(("C",))
    return AtomicStructure(
        name=path.stem,
        coords_angstrom=(xyz - centre).astype(np.float32),
        element_index=np.zeros(len(zyx), dtype=np.int32),
        elements=("C",),
        scattering_a=a,
        scattering_b=b,
        b_iso_angstrom2=np.zeros(len(zyx), dtype=np.float32),
        weights=weights.astype(np.float32),
    )
