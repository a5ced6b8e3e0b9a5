"""`causalscope reconstruct`: particles written as the pipeline writes them, refined from a
low-passed reference, give back half-maps, an FSC file RELION reads and poses near the truth."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile
import torch

from causalscope.daemon.cli import main
from causalscope.daemon.formats.maps import write_mrc_map
from causalscope.daemon.formats.particles_star import write_particle_stack, write_particles_star
from causalscope.models.rotations import euler_matrices, rotation_angle_deg
from tests.models.reconstruction._maps import blob_map, particle_images

APIX = 2.0


def test_reconstruct_a_session_folder(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    truth = blob_map(32, seed=4, n_blobs=40, reach=0.33, widths_px=(0.8, 1.6))
    images, rotations, ctfs, offsets = particle_images(truth, 160, pixel_size_angstrom=APIX, seed=5)
    generator = torch.Generator().manual_seed(0)
    images = images + images.std() * torch.randn(images.shape, generator=generator)
    session = tmp_path / "session"
    for part, index in enumerate((np.arange(0, 80), np.arange(80, 160))):  # two exposures
        names = write_particle_stack(
            session / "particles" / f"e{part}.mrcs", images[index].numpy(), pixel_size_angstrom=APIX
        )
        table = pd.DataFrame(
            {
                "x_px": np.full(len(index), 100.0),
                "y_px": np.full(len(index), 100.0),
                "image_name": names,
                "micrograph_name": [f"e{part}.mrc"] * len(index),
                "defocus_u_angstrom": ctfs.defocus_u_angstrom[index],
                "defocus_v_angstrom": ctfs.defocus_v_angstrom[index],
                "defocus_angle_deg": ctfs.defocus_angle_deg[index],
            }
        )
        optics = {
            "pixel_size_angstrom": APIX,
            "image_size_px": 32,
            "voltage_kv": 300.0,
            "spherical_aberration_mm": 2.7,
            "amplitude_contrast": 0.1,
        }
        write_particles_star(session / "particles" / f"e{part}.star", optics, table)
    reference = tmp_path / "reference.mrc"
    write_mrc_map(reference, truth.numpy(), pixel_size_angstrom=APIX)
    out = tmp_path / "refined"
    code = main(
        [
            "reconstruct",
            str(session),
            "--reference",
            str(reference),
            "--out",
            str(out),
            "--iterations",
            "2",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["particles"] == 160 and summary["box_px"] == 32
    assert summary["resolution_angstrom"] < 15.0  # from a 30 A start; measured 8-9 A
    assert summary["orientation_coverage"] > 0.9  # random poses
    progress = capsys.readouterr().err
    assert "pass 1/2" in progress and "pass 2/2" in progress
    for name in ("half1.mrc", "half2.mrc", "map.mrc"):
        with mrcfile.open(out / name) as mrc:
            assert mrc.data.shape == (32, 32, 32) and mrc.voxel_size.x == APIX
    fsc = starfile.read(out / "postprocess.star")
    assert float(fsc["general"]["rlnFinalResolution"]) == summary["resolution_angstrom"]
    assert len(fsc["fsc"]) == 17
    posed = starfile.read(out / "particles.star")
    found = euler_matrices(posed[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy())
    assert float(np.median(rotation_angle_deg(found, rotations.numpy()))) < 8.0
    shifts = posed[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy() / APIX
    assert float(np.median(np.linalg.norm(shifts - offsets.numpy(), axis=1))) < 1.0


def test_reconstruct_without_reference_uses_the_selected_particles(
    tmp_path: Path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    truth = blob_map(32, seed=3, n_blobs=20)
    images, _, ctfs, _ = particle_images(truth, 240, pixel_size_angstrom=3.0, seed=1)
    generator = torch.Generator().manual_seed(0)
    images = images + images.std() * torch.randn(images.shape, generator=generator)
    session = tmp_path / "session"
    stack = session / "particles" / "e0.mrcs"
    names = write_particle_stack(stack.resolve(), images.numpy(), pixel_size_angstrom=3.0)
    table = pd.DataFrame(
        {
            "x_px": np.full(240, 100.0),
            "y_px": np.full(240, 100.0),
            "image_name": names,
            "micrograph_name": ["e0.mrc"] * 240,
            "defocus_u_angstrom": ctfs.defocus_u_angstrom,
            "defocus_v_angstrom": ctfs.defocus_v_angstrom,
            "defocus_angle_deg": ctfs.defocus_angle_deg,
        }
    )
    optics = {
        "pixel_size_angstrom": 3.0,
        "image_size_px": 32,
        "voltage_kv": 300.0,
        "spherical_aberration_mm": 2.7,
        "amplitude_contrast": 0.1,
    }
    write_particles_star(session / "particles" / "e0.star", optics, table)
    # the 2D selection keeps 200 of them (the stack's names are absolute, as the pipeline's)
    write_particles_star(
        session / "reconstruction" / "classes" / "selected_particles.star", optics, table[:200]
    )
    out = tmp_path / "ab_initio"
    threads = torch.get_num_threads()
    try:
        code = main(
            [
                "reconstruct",
                str(session),
                "--out",
                str(out),
                "--iterations",
                "1",
                "--ab-initio-iterations",
                "8",
                "--ab-initio-resolution",
                "15",
                "--threads",
                "1",
            ]
        )
    finally:  # --threads sets the process's count
        torch.set_num_threads(threads)
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["particles"] == 200
    assert summary["ab_initio"]["hand"] == "undetermined from projections alone"
    with mrcfile.open(out / "ab_initio.mrc") as mrc:
        assert mrc.data.shape == (32, 32, 32) and mrc.voxel_size.x == 3.0
    # one pass from the ab-initio map low-passed to 30 A: measured 16.3 A
    assert summary["resolution_angstrom"] < 20.0
    err = capsys.readouterr().err
    assert "ab initio 8/8" in err and "hand is undetermined" in err and "pass 1/1" in err
