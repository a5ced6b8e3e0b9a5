"""Template picking from ``processing.picking.reference`` in the exposure worker.

A low-dose simulated movie of the built-in phantom is processed with the phantom itself as the
reference, written as an MRC map and as an mmCIF model, and the picks are scored against the
simulator's particle positions (global motion only, on one torch thread, to stay quick). The
reference's file errors surface when the settings load or the worker is built, never per
exposure.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import gemmi
import mrcfile
import numpy as np
import pytest
import torch

from causalscope.config import Settings, load_settings, render_toml
from causalscope.models.errors import ConfigError, FormatError
from causalscope.models.picking import match_picks
from causalscope.models.records import AcquisitionMetadata, ExposureRecord
from causalscope.models.simulate.exposure import SimulatedExposure
from causalscope.models.simulate.specimen import Specimen, phantom_specimen
from tests.actors._movies import make_worker, worker_metadata, worker_movie

SIZE = 1024
FRAMES = 8
#: low dose, where templates help most: on this movie the blob picker reaches F1 = 0.77
#: (denoised) and 0.81 (Wiener) at the default threshold, templates 0.97 and 0.95
DOSE = 8.0
#: F1 the template picker must reach on it (within a quarter diameter)
MIN_F1 = 0.9


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def movie() -> tuple[SimulatedExposure, np.ndarray]:
    return worker_movie(size=SIZE, n_frames=FRAMES, dose=DOSE, seed=21)


def write_map(
    path: Path, specimen: Specimen, *, voxel_angstrom: float = 2.0, box: int = 80
) -> Path:
    """The specimen's atoms binned on a grid and blurred (sigma 3 A): a map of it."""
    index = np.round(specimen.coords_angstrom / voxel_angstrom + box // 2).astype(int)
    volume = np.zeros((box, box, box), dtype=np.float64)
    np.add.at(volume, (index[:, 2], index[:, 1], index[:, 0]), 1.0)
    k = np.fft.fftfreq(box, d=voxel_angstrom)
    k2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
    blurred = np.fft.ifftn(np.fft.fftn(volume) * np.exp(-2 * np.pi**2 * 3.0**2 * k2)).real
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(blurred.astype(np.float32))
        mrc.voxel_size = voxel_angstrom
    return path


def write_mmcif(path: Path, specimen: Specimen, *, every: int = 4) -> Path:
    """Every ``every``-th atom of the specimen as an mmCIF model (residues of 10 atoms)."""
    coords = specimen.coords_angstrom[::every]
    symbols = [specimen.elements[i] for i in specimen.element_index[::every]]
    structure = gemmi.Structure()
    structure.name = "phantom"
    model = gemmi.Model(1)
    chain = gemmi.Chain("A")
    for start in range(0, len(coords), 10):
        residue = gemmi.Residue()
        residue.name = "UNK"
        residue.seqid = gemmi.SeqId(start // 10 + 1, " ")
        for j in range(start, min(start + 10, len(coords))):
            atom = gemmi.Atom()
            atom.name = f"{symbols[j]}{j - start}"  # unique within the residue
            atom.element = gemmi.Element(symbols[j])
            atom.pos = gemmi.Position(*(float(v) for v in coords[j]))
            atom.occ = 1.0
            residue.add_atom(atom)
        chain.add_residue(residue)
    model.add_chain(chain)
    structure.add_model(model)
    structure.setup_entities()
    structure.make_mmcif_document().write_file(str(path))
    return path


def _settings(reference: Path | str, **picking: object) -> Settings:
    overrides = {
        "device": "cpu",
        "motion": {"patches_x": 1, "patches_y": 1},
        "picking": {"reference": str(reference), **picking},
    }
    return load_settings(None, None, {"processing": overrides})


def _metadata() -> AcquisitionMetadata:
    return worker_metadata(dose=DOSE, n_frames=FRAMES)


def _process(settings: Settings, movie: tuple[SimulatedExposure, np.ndarray], out: Path):
    sim, gain = movie
    worker = make_worker(settings, out, gain=gain)
    return worker.process(sim.frames, exposure_id="e", movie_path="e.tiff", metadata=_metadata())


def _f1(record: ExposureRecord, sim: SimulatedExposure) -> float:
    picking = record.picking
    assert picking is not None
    truth = np.asarray(sim.truth["particles"], dtype=np.float64)
    assert record.pixel_size_angstrom is not None
    radius = 0.25 * picking.particle_diameter_angstrom / record.pixel_size_angstrom
    match = match_picks(np.asarray(picking.picks_xy_px).reshape(-1, 2), truth, radius_px=radius)
    return match.f1


def test_map_reference_picks_by_template_on_the_denoised_micrograph(movie, tmp_path) -> None:
    reference = write_map(tmp_path / "phantom.mrc", phantom_specimen())
    record = _process(_settings(reference), movie, tmp_path / "out")
    assert record.picking is not None and record.picking.picker == "template"
    assert "denoised" in record.outputs and "templates" in record.timings_s
    assert _f1(record, movie[0]) >= MIN_F1


def test_mmcif_reference_picks_by_template_on_the_wiener_micrograph(movie, tmp_path) -> None:
    reference = write_mmcif(tmp_path / "phantom.cif", phantom_specimen())
    record = _process(_settings(reference, denoise=False), movie, tmp_path / "out")
    assert record.picking is not None and record.picking.picker == "template"
    assert "denoised" not in record.outputs
    assert _f1(record, movie[0]) >= MIN_F1
    # the particles are extracted in the same box as with blobs
    with mrcfile.open(record.outputs["particles"]) as mrc:
        assert mrc.data.shape[0] == record.picking.n_particles


def test_templates_are_projected_once_per_pixel_size(tmp_path) -> None:
    reference = write_mmcif(tmp_path / "phantom.cif", phantom_specimen(), every=16)
    stage = make_worker(_settings(reference, template_views=3), tmp_path, device=None).restore
    first = stage.templates_for(1.0)
    assert first is not None and tuple(first.shape) == (3, 180, 180)
    assert stage.templates_for(1.0) is first
    coarser = stage.templates_for(2.0)
    assert coarser is not None and tuple(coarser.shape) == (3, 90, 90)


def test_no_reference_picks_blobs(tmp_path) -> None:
    settings = load_settings(None, None, {"processing": {"device": "cpu"}})
    assert settings.processing.picking.reference is None
    stage = make_worker(settings, tmp_path, device=None).restore
    assert not stage.uses_templates and stage.templates_for(1.0) is None


def test_missing_reference_is_a_config_error_naming_the_file(tmp_path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('[processing.picking]\nreference = "nowhere/apoferritin.mrc"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = caught.value.message
    assert "processing.picking.reference" in message and str(path) in message
    assert "nowhere/apoferritin.mrc" in message and "does not exist" in message


def test_reference_of_unknown_kind_is_a_config_error(tmp_path) -> None:
    junk = tmp_path / "reference.txt"
    junk.write_text("not a map\n")
    with pytest.raises(ConfigError, match=r"expected an MRC map or a PDB/mmCIF.*reference\.txt"):
        _settings(junk)


def test_unreadable_reference_fails_when_the_worker_is_built(tmp_path) -> None:
    junk = tmp_path / "junk.pdb"
    junk.write_text("this is not a PDB file\n")
    settings = _settings(junk)  # the file exists: the settings cannot tell more
    with pytest.raises(FormatError, match=r"junk\.pdb"):
        make_worker(settings, tmp_path, device=None)
    junk.unlink()  # gone between loading the settings and starting the worker
    with pytest.raises(FormatError, match=r"Reference not found.*junk\.pdb"):
        make_worker(settings, tmp_path, device=None)


def test_relative_reference_resolves_against_the_working_directory_and_round_trips(
    tmp_path, monkeypatch
) -> None:
    write_mmcif(tmp_path / "phantom.cif", phantom_specimen(), every=64)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "settings.toml"
    path.write_text('[processing.picking]\nreference = "phantom.cif"\ntemplate_views = 5\n')
    settings = load_settings(path)
    picking = settings.processing.picking
    assert picking.reference == tmp_path / "phantom.cif" and picking.template_views == 5
    rendered = tmp_path / "rendered.toml"
    rendered.write_text(render_toml(settings))
    assert tomllib.loads(rendered.read_text())["processing"]["picking"]["reference"] == str(
        tmp_path / "phantom.cif"
    )
    assert load_settings(rendered) == settings
    # an empty string unsets it: blob picking
    assert _settings("").processing.picking.reference is None
