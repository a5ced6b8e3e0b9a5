"""The CTF fit stays on its input's device: checked on a CPU with CUDA's device rules
enforced (:mod:`tests._fake_cuda`, the input moved to "cuda"), and by reading ``_model.py``
for tensors made without ``device=``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from causalscope.models.ctf_estimation import CtfEstimate, _model, estimate_ctf
from causalscope.models.ctf_estimation._model import (
    Optics,
    make_band,
    moving_average,
    ring_lag_px,
    ring_model,
    ring_sums,
    window_attenuation,
)
from causalscope.models.ctf_estimation.spectrum import tile_window
from causalscope.models.parallel import one_torch_thread
from tests._fake_cuda import DeviceError, FakeCuda
from tests.models.ctf_estimation.conftest import OPTICS, simulate

#: torch functions that make a tensor from nothing: each call needs ``device=``
FACTORIES = {
    "arange",
    "as_tensor",
    "empty",
    "eye",
    "full",
    "linspace",
    "logspace",
    "ones",
    "rand",
    "randint",
    "randn",
    "tensor",
    "zeros",
}


def test_the_emulation_refuses_what_cuda_refuses_and_passes_what_it_accepts() -> None:
    with FakeCuda():
        x = torch.arange(4.0).to("cuda")
        _ = x * torch.tensor(2.0)  # a 0-dim CPU tensor is a scalar to CUDA
        _ = x[torch.tensor([0, 2])]  # a CPU index into a device tensor
        _ = x + torch.ones(4, device=x.device)  # made on the input's device
        with pytest.raises(DeviceError, match=r"CPU tensors \[\(4,\)\]"):
            _ = x + torch.ones(4)
        with pytest.raises(DeviceError):
            _ = torch.stack([x, torch.zeros(4)])
        with pytest.raises(DeviceError):
            _ = x.numpy()


def test_model_functions_follow_the_input_device() -> None:
    optics = Optics(300.0, 2.7, 0.07)
    spectrum = torch.rand(96, 96, generator=torch.Generator().manual_seed(0)) + 0.5
    # the searches start from parameters made on the CPU
    params = torch.tensor([12_000.0, 150.0, -80.0, 0.3], dtype=torch.float64)

    def run(device: str) -> list[torch.Tensor]:
        image = spectrum.clone().to(device)
        band = make_band(image, pixel_size_angstrom=1.1, k_min=0.03, k_max=0.4)
        window = tile_window(96, taper_px=6)  # a window made on the CPU
        lag = ring_lag_px(band, params, optics)
        attenuation = window_attenuation(lag * band.cos1, lag * band.sin1, window)
        model = ring_model(band, params, optics, attenuation=attenuation)
        sums = ring_sums(model, band.ring, band.n_rings)
        return [model, attenuation, sums, moving_average(sums, 3)]

    with FakeCuda():  # a CPU tensor meeting the device's would raise
        outputs = run("cuda")
        assert all(t.device.type == "cuda" for t in outputs)
        on_device = [t.cpu() for t in outputs]
    for a, b in zip(on_device, run("cpu"), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _fit_both_ways(**options: object) -> tuple[CtfEstimate, CtfEstimate]:
    image = simulate(15_000.0, 400.0, 30.0, 40.0, 40.0, 512, seed=3)
    options = {**OPTICS, "box_px": 256, **options}
    plain = estimate_ctf(image.clone(), **options)  # type: ignore[arg-type]
    # the mode is thread-local: pieces shared between Python threads (models.parallel, one per
    # torch thread on a CPU) would run outside it, unchecked; a device mix raises in it
    with one_torch_thread(), FakeCuda():
        on_device = estimate_ctf(image.clone().to("cuda"), **options)  # type: ignore[arg-type]
    return plain, on_device


def test_estimate_ctf_keeps_to_the_input_device_and_gives_the_same_fit() -> None:
    plain, on_device = _fit_both_ways()
    assert on_device.to_dict() == plain.to_dict()
    mean = 0.5 * (plain.defocus_u_angstrom + plain.defocus_v_angstrom)
    assert abs(mean - 15_000.0) < 300.0


def test_the_phase_shift_search_keeps_to_the_input_device() -> None:
    plain, on_device = _fit_both_ways(estimate_phase_shift=True)
    assert on_device.to_dict() == plain.to_dict()


def test_the_ice_estimate_keeps_to_the_input_device() -> None:
    """With the noise floor known (the worker's integer counts), the ice fit runs too: its
    thickness grid and ring frequencies were CPU tensors that met the spectrum's on a GPU."""
    image = simulate(15_000.0, 400.0, 30.0, 40.0, 40.0, 512, seed=3)
    plain, on_device = _fit_both_ways(noise_variance=float(image.mean()))
    assert on_device.to_dict() == plain.to_dict()
    assert plain.ice_thickness_rings_nm is not None  # the ring fit ran


def test_no_tensor_is_made_without_a_device_in_the_model() -> None:
    tree = ast.parse(Path(_model.__file__).read_text())
    missing = [
        f"line {node.lineno}: torch.{node.func.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "torch"
        and node.func.attr in FACTORIES
        and not any(keyword.arg == "device" for keyword in node.keywords)
    ]
    assert missing == []
