"""The U-Net, tiled inference, training and the weights format."""

from __future__ import annotations

import io

import pytest
import torch

from causalscope.models.denoise import (
    UNet,
    denoise,
    denoise_half_sums,
    load_weights,
    noise2noise_step,
    normalised_pair,
    parameter_count,
    random_crops,
    save_weights,
    train_noise2noise,
)


def _random_model(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    model = UNet()
    with torch.no_grad():  # a non-trivial map: the default head starts at zero (identity)
        model.head.weight.normal_(0.0, 0.3)
        if model.head.bias is not None:
            model.head.bias.normal_(0.0, 0.1)
    return model.eval()


def test_model_is_compact_and_starts_as_identity() -> None:
    model = UNet().eval()
    assert 100_000 < parameter_count(model) < 300_000
    x = torch.randn(2, 1, 64, 96)
    torch.testing.assert_close(model(x), x, rtol=0, atol=0)


def test_identity_model_tiles_exactly_on_odd_sizes() -> None:
    image = torch.rand(3, 300, 212) * 50 + 10  # not multiples of 16: padding and edge tiles
    out = denoise(image, UNet().eval(), tile_px=128, overlap_px=32, batch=3)
    assert out.shape == image.shape
    torch.testing.assert_close(out, image, rtol=1e-5, atol=1e-4)


def test_tiled_equals_untiled_within_tolerance() -> None:
    model = _random_model()
    image = torch.poisson(torch.full((384, 384), 20.0))
    whole = denoise(image, model, tile_px=384, overlap_px=0)
    tiled = denoise(image, model, tile_px=192, overlap_px=64, batch=2)
    change = (whole - image).std()
    error = (tiled - whole).abs()
    # the blended seams differ by a few per cent of what the network changes, the rest by less
    assert float(error.mean()) < 0.03 * float(change)
    assert float(error.max()) < 0.5 * float(change)
    # and a tiling without overlap is visibly worse: the test can fail
    hard = denoise(image, model, tile_px=192, overlap_px=0)
    assert float((hard - whole).abs().mean()) > 1.5 * float(error.mean())


def test_channels_last_network_equals_the_plain_layout() -> None:
    """Reference: the same weights run as contiguous NCHW convolutions. The channels-last
    layout the network keeps (faster on the CPU) changes the result by float rounding only."""
    import torch.nn.functional as F

    model = _random_model(2)
    assert all(
        p.is_contiguous(memory_format=torch.channels_last)
        for p in model.parameters()
        if p.ndim == 4
    )

    def block(layers: torch.nn.Sequential, h: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            if isinstance(layer, torch.nn.Conv2d):
                h = F.conv2d(h, layer.weight.contiguous(), layer.bias, padding=layer.padding)
            else:
                h = layer(h)
        return h.contiguous()

    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        h = F.pixel_unshuffle(x, 2)
        skips = []
        for i, layers in enumerate(model.down):
            h = block(layers, F.max_pool2d(h, 2) if i > 0 else h)
            skips.append(h)
        for layers, skip in zip(model.up, reversed(skips[:-1]), strict=True):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(layers, torch.cat([h, skip], dim=1))
        plain = x + F.pixel_shuffle(block(torch.nn.Sequential(model.head), h), 2)
        fast = model(x)
    assert fast.is_contiguous()
    assert float((fast - x).abs().mean()) > 0.01  # the random head changes the image
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)


def test_batched_call_equals_loop() -> None:
    model = _random_model(1)
    images = torch.poisson(torch.full((2, 160, 160), 10.0))
    together = denoise(images, model, tile_px=128, overlap_px=32)
    for i in range(2):
        torch.testing.assert_close(together[i], denoise(images[i], model, tile_px=128))


def test_denoise_rejects_bad_input() -> None:
    model = UNet()
    with pytest.raises(ValueError, match="floating-point"):
        denoise(torch.zeros(64, 64, dtype=torch.int32), model)
    with pytest.raises(ValueError, match="non-finite"):
        denoise(torch.full((64, 64), float("nan")), model)
    with pytest.raises(ValueError, match="tile_px"):
        denoise(torch.zeros(64, 64), model, tile_px=64, overlap_px=40)
    with pytest.raises(ValueError, match="match in shape"):
        denoise_half_sums(torch.zeros(64, 64), torch.zeros(64, 32), model)


def test_training_lowers_the_noise2noise_loss(small_pairs) -> None:
    torch.manual_seed(0)
    model = UNet()
    held_out = [normalised_pair(e, o) for e, o in small_pairs]
    inputs, targets = random_crops(held_out, 16, 64, torch.Generator().manual_seed(99))

    def loss() -> float:
        with torch.no_grad():
            return float(torch.mean((model.eval()(inputs) - targets) ** 2))

    before = loss()
    report = train_noise2noise(model, small_pairs, steps=60, crop_px=64, lr=3e-3, seed=0)
    after = loss()
    assert len(report.losses) == 60
    assert report.final_loss < 0.9 * report.first_loss
    # the identity start carries the noise of both halves; 60 steps remove a good part
    assert after < 0.9 * before


def test_step_rejects_mismatched_shapes() -> None:
    model = UNet()
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match="must match"):
        noise2noise_step(model, optimizer, torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 16))


def test_weights_round_trip_through_bytes_and_files() -> None:
    model = _random_model(2)
    data = save_weights(model)
    buffer = io.BytesIO()
    assert save_weights(model, buffer) == data
    buffer.seek(0)
    x = torch.randn(1, 1, 64, 64)
    for loaded in (load_weights(data), load_weights(buffer)):
        assert loaded.channels == model.channels
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a denoiser weights file"):
        load_weights(b"not weights")
    other = io.BytesIO()
    torch.save({"format": "something else"}, other)
    with pytest.raises(ValueError, match="something else"):
        load_weights(other.getvalue())
