"""Atomic models and maps for the simulator (gemmi, mrcfile); RELION MTF tables (starfile)."""

from __future__ import annotations

from pathlib import Path

import gemmi
import mrcfile
import numpy as np
import pytest

from causalscope.daemon.formats import read_map_as_atoms, read_mtf_star, read_structure
from causalscope.models.errors import FormatError


def _atom(serial: int, name: str, element: str, x: float) -> str:
    return (
        f"ATOM  {serial:5d} {name:<4s} ALA A   1    {x:8.3f}{0.0:8.3f}{0.0:8.3f}"
        f"  1.00 20.00          {element:>2s}"
    )


def _biomt(op: int, rows: list[tuple[float, float, float]]) -> list[str]:
    return [
        f"REMARK 350   BIOMT{i + 1} {op:3d}{r[0]:10.6f}{r[1]:10.6f}{r[2]:10.6f}{0.0:15.5f}"
        for i, r in enumerate(rows)
    ]


def test_apoferritin_model(shared_data: Path) -> None:
    model = read_structure(shared_data / "models" / "6z6u.pdb")
    # The deposited file is the whole 24-mer (assembly operator = identity): no expansion.
    assert model.name == "6z6u"
    assert model.n_atoms == 32618
    assert model.elements == ("C", "Mg", "N", "Na", "O", "S")
    assert np.bincount(model.element_index).tolist() == [20184, 2, 5784, 24, 6504, 120]
    assert model.coords_angstrom.dtype == np.float32
    assert np.abs(model.coords_angstrom.mean(axis=0)).max() < 0.01  # centred (mass ~ count)
    # apoferritin: a shell of about 12 nm diameter; the outermost atom is 67.1 A from the centre
    assert np.linalg.norm(model.coords_angstrom, axis=1).max() == pytest.approx(67.11, abs=0.01)
    carbon = gemmi.Element("C").c4322
    np.testing.assert_array_equal(model.scattering_a[0], carbon.a)
    np.testing.assert_array_equal(model.scattering_b[0], carbon.b)
    assert model.scattering_a.shape == (6, 5)
    # f(0) = sum(a) = 2.509 A for carbon (International Tables C, table 4.3.2.2)
    assert model.scattering_a[0].sum() == pytest.approx(2.509, abs=0.01)
    assert model.weights is None


def test_beta_galactosidase_drops_waters(shared_data: Path) -> None:
    path = shared_data / "models" / "5a1a.pdb"
    model = read_structure(path)
    assert model.n_atoms == 32920
    assert model.elements == ("C", "Mg", "N", "Na", "O", "S")
    assert read_structure(path, keep_waters=True).n_atoms == 32920 + 776
    assert float(model.b_iso_angstrom2.mean()) == pytest.approx(19.17, abs=0.01)


def test_assembly_is_built_and_hydrogens_dropped(tmp_path: Path) -> None:
    path = tmp_path / "dimer.pdb"
    lines = [
        "REMARK 350 BIOMOLECULE: 1",
        "REMARK 350 APPLY THE FOLLOWING TO CHAINS: A",
        *_biomt(1, [(1, 0, 0), (0, 1, 0), (0, 0, 1)]),
        *_biomt(2, [(-1, 0, 0), (0, -1, 0), (0, 0, 1)]),
        "CRYST1    1.000    1.000    1.000  90.00  90.00  90.00 P 1           1",
        _atom(1, " N", "N", 10.0),
        _atom(2, " CA", "C", 12.0),
        _atom(3, " H", "H", 11.0),
        "END",
    ]
    path.write_text("\n".join(lines) + "\n")
    dimer = read_structure(path)
    assert dimer.n_atoms == 4 and dimer.elements == ("C", "N")
    assert sorted(dimer.coords_angstrom[:, 0].round(3).tolist()) == [-12.0, -10.0, 10.0, 12.0]
    monomer = read_structure(path, assembly=False)
    assert monomer.n_atoms == 2
    # centre of mass: (14.007 * 10 + 12.011 * 12) / 26.018 = 10.923
    np.testing.assert_allclose(
        monomer.coords_angstrom[:, 0], [10 - 10.9233, 12 - 10.9233], atol=1e-3
    )


def test_mmcif_reads_like_pdb(shared_data: Path, tmp_path: Path) -> None:
    st = gemmi.read_structure(str(shared_data / "models" / "6z6u.pdb"))
    st.setup_entities()
    cif = tmp_path / "6z6u.cif"
    st.make_mmcif_document().write_file(str(cif))
    from_cif = read_structure(cif)
    from_pdb = read_structure(shared_data / "models" / "6z6u.pdb")
    assert from_cif.n_atoms == from_pdb.n_atoms
    np.testing.assert_allclose(from_cif.coords_angstrom, from_pdb.coords_angstrom, atol=1e-3)


def test_unreadable_model(tmp_path: Path) -> None:
    path = tmp_path / "junk.pdb"
    path.write_text("this is not a PDB file\n")
    with pytest.raises(FormatError, match=r"junk\.pdb"):
        read_structure(path)


def test_map_as_atoms(shared_data: Path) -> None:
    # EMD-3001 stores its axes as MAPC, MAPR, MAPS = 3, 1, 2 and has anisotropic voxels.
    atoms = read_map_as_atoms(shared_data / "maps" / "EMD-3001.map", threshold_sigma=2.0)
    assert atoms.elements == ("C",) and atoms.weights is not None
    assert atoms.n_atoms == 3785
    with mrcfile.open(shared_data / "maps" / "EMD-3001.map") as mrc:
        data = np.asarray(mrc.data)
    assert atoms.n_atoms == int((data > data.mean() + 2 * data.std()).sum())
    assert float(atoms.weights.min()) > data.mean() + 2 * data.std()
    weighted = (atoms.coords_angstrom * atoms.weights[:, None]).sum(axis=0)
    np.testing.assert_allclose(weighted / atoms.weights.sum(), 0, atol=1e-3)
    # x is the longest axis (73 columns of 0.448 A -> 32.7 A box)
    extent = atoms.coords_angstrom.max(axis=0) - atoms.coords_angstrom.min(axis=0)
    assert extent[2] > extent[0] > extent[1]


def test_map_axis_order_is_honoured(tmp_path: Path) -> None:
    volume = np.zeros((4, 5, 6), dtype=np.float32)  # (z, y, x)
    volume[1, 2, 3] = 10.0
    volume[1, 2, 5] = 10.0
    path = tmp_path / "blob.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(volume)
        mrc.voxel_size = 2.0
    atoms = read_map_as_atoms(path, threshold_sigma=1.0)
    assert atoms.n_atoms == 2
    np.testing.assert_allclose(atoms.coords_angstrom, [[-2.0, 0, 0], [2.0, 0, 0]])


def test_map_without_voxel_size(shared_data: Path) -> None:
    path = shared_data / "maps" / "clean70SRibosome_vol_65p.mrc"
    with pytest.raises(FormatError, match="pass voxel_size_angstrom"):
        read_map_as_atoms(path)
    assert read_map_as_atoms(path, voxel_size_angstrom=4.0).n_atoms == 10904


@pytest.mark.parametrize(
    ("name", "value_at_half_nyquist"),
    [
        ("mtf_k2_300kV.star", 0.7333),
        ("mtf_k2_200kV.star", 0.5383),
        ("mtf_falcon4EC_300kV.star", 0.5348),
        ("mtf_falcon3EC_300kV.star", 0.5724),
        ("mtf_de20_300kV.star", 0.5696),
        ("mtf_falcon2_300kV.star", 0.2187),
    ],
)
def test_real_mtf_tables(shared_data: Path, name: str, value_at_half_nyquist: float) -> None:
    frequency, mtf = read_mtf_star(shared_data / "mtf" / name)
    assert frequency[0] == 0 and frequency[-1] <= 0.5
    assert np.all(np.diff(frequency) > 0)
    assert mtf[0] == pytest.approx(1.0, abs=1e-3)
    # 0.5 Nyquist = 0.25 / pixel
    assert np.interp(0.25, frequency, mtf) == pytest.approx(value_at_half_nyquist, abs=1e-4)


def test_k2_300kv_mtf_at_nyquist(shared_data: Path) -> None:
    frequency, mtf = read_mtf_star(shared_data / "mtf" / "mtf_k2_300kV.star")
    assert len(frequency) == 1001 and frequency[-1] == 0.5
    assert mtf[-1] == pytest.approx(0.388115)


def _star(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "mtf_bad.star"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    ("body", "title", "message"),
    [
        (
            "data_mtf\nloop_\n_rlnResolutionInversePixel\n_rlnFscValue\n0 1\n0.5 0.3\n",
            "Not an MTF table",
            "needs columns _rlnResolutionInversePixel and _rlnMtfValue",
        ),
        (
            "data_mtf\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n0 1\n0.3 0.5\n0.2 0.4\n",
            "Bad MTF table",
            "does not increase at row 3",
        ),
        (
            "data_mtf\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n0 1\n0.5 1.5\n",
            "Bad MTF table",
            "_rlnMtfValue = 1.5 at row 2 is outside [0, 1.2]",
        ),
        (
            "data_mtf\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n0 1\n2 0.5\n",
            "Bad MTF table",
            "spans 0.0..2.0",
        ),
    ],
)
def test_bad_mtf_tables(tmp_path: Path, body: str, title: str, message: str) -> None:
    with pytest.raises(FormatError) as err:
        read_mtf_star(_star(tmp_path, body))
    assert err.value.title == title
    assert message in err.value.message and "mtf_bad.star" in err.value.message
