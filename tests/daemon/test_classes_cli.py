"""`causalscope classes`: simulated particles with junk, written as the pipeline writes them,
classified in batches; the selection keeps particles and drops most junk, and the operator's
choice overrides it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from causalscope.daemon.cli import main
from causalscope.daemon.formats.particles_star import write_particle_stack, write_particles_star
from causalscope.daemon.formats.png import read_png
from causalscope.models.simulate import phantom_specimen, simulate_particle_stack
from causalscope.models.simulate.specimen import Specimen

BOX, APIX, N = 48, 4.0, 240


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    folder = tmp_path_factory.mktemp("session")
    shell = phantom_specimen()
    every = slice(None, None, 4)  # every 4th atom, weight 4: the low resolution is kept
    shell = Specimen(
        shell.coords_angstrom[every],
        shell.element_index[every],
        shell.elements,
        shell.scattering_a,
        shell.scattering_b,
        shell.weights[every] * 4.0,
    )
    stack = simulate_particle_stack(
        {"shell": shell},
        n=N,
        box_px=BOX,
        pixel_size_angstrom=APIX,
        seed=3,
        junk_fractions={"ice": 0.1, "carbon": 0.1},
    )
    names = write_particle_stack(
        folder / "particles" / "e1.mrcs", stack.images, pixel_size_angstrom=APIX
    )
    table = pd.DataFrame(
        {
            "x_px": np.zeros(N),
            "y_px": np.zeros(N),
            "image_name": names,
            "micrograph_name": ["e1.mrc"] * N,
            "defocus_u_angstrom": stack.defocus_u_angstrom,
            "defocus_v_angstrom": stack.defocus_v_angstrom,
            "defocus_angle_deg": stack.defocus_angle_deg,
        }
    )
    optics = {
        "pixel_size_angstrom": APIX,
        "image_size_px": BOX,
        "voltage_kv": stack.voltage_kv,
        "spherical_aberration_mm": stack.spherical_aberration_mm,
        "amplitude_contrast": stack.amplitude_contrast,
        "phase_flipped": True,
    }
    write_particles_star(folder / "particles" / "e1.star", optics, table)
    return folder, stack.labels


def _run(folder: Path, out: Path, *extra: str) -> dict[str, object]:
    code = main(
        [
            "classes",
            str(folder),
            "--out",
            str(out),
            "--diameter-angstrom",
            "130",
            "--classes",
            "6",
            "--batch",
            "80",
            *extra,
        ]
    )
    assert code == 0
    return json.loads((out / "summary.json").read_text())


def test_classes_select_particles_and_drop_junk(
    session: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    folder, labels = session
    summary = _run(folder, tmp_path / "auto")
    everything = starfile.read(tmp_path / "auto" / "particles.star")
    selected = starfile.read(tmp_path / "auto" / "selected_particles.star")
    assert len(everything) == N and 0 < len(selected) < N
    chosen = np.isin(everything["rlnImageName"], selected["rlnImageName"])
    junk = labels != "shell"
    # measured: 96 % of the shells kept, no junk
    assert chosen[~junk].mean() > 0.8
    assert chosen[junk].mean() < 0.3
    classes = json.loads((tmp_path / "auto" / "classes.json").read_text())
    assert len(classes) == 6 and summary["selected_classes"] == sum(c["selected"] for c in classes)
    gallery = read_png(tmp_path / "auto" / "classes.png")
    assert gallery.ndim == 2 and gallery.shape[1] > 6 * 16
    model = starfile.read(tmp_path / "auto" / "model.star")
    assert np.isclose(model["rlnClassDistribution"].sum(), 1.0)

    kept = [c["class_index"] + 1 for c in classes if c["selected"]]
    manual = _run(folder, tmp_path / "manual", "--reject", str(kept[0]))
    assert manual["selected_classes"] == summary["selected_classes"] - 1


def test_a_class_that_does_not_exist_is_refused(
    session: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    folder, _ = session
    code = main(
        [
            "classes",
            str(folder),
            "--out",
            str(tmp_path),
            "--diameter-angstrom",
            "130",
            "--classes",
            "6",
            "--select",
            "7",
        ]
    )
    assert code != 0
