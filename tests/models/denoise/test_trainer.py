"""The session fine-tuner: bounded reservoir, training, weights and checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from causalscope.actors.denoiser import DenoiserTrainer
from causalscope.models.denoise import UNet, load_weights, save_weights


def test_reservoir_stays_bounded_and_crops_large_pairs() -> None:
    trainer = DenoiserTrainer(save_weights(UNet()), crop_px=32, capacity=3, max_side_px=96)
    kept = [
        trainer.add_pair(torch.poisson(torch.full((128, 160), 5.0)), torch.full((128, 160), 5.0))
        for _ in range(20)
    ]
    assert len(trainer.pairs) == 3
    assert trainer.seen == 20
    assert all(kept[:3])
    assert not all(kept[3:])  # later pairs replace earlier ones only by chance
    assert all(tuple(p.shape) == (2, 96, 96) for p in trainer.pairs)
    with pytest.raises(ValueError, match="smaller than crop_px"):
        trainer.add_pair(torch.zeros(16, 16), torch.zeros(16, 16))


def test_train_and_checkpoint_round_trip(tmp_path: Path, small_pairs) -> None:
    trainer = DenoiserTrainer(save_weights(UNet()), crop_px=64, lr=2e-3, seed=1, capacity=4)
    with pytest.raises(ValueError, match="no pairs"):
        trainer.train(1)
    for even, odd in small_pairs:
        trainer.add_pair(even, odd)
    first = trainer.train(5)
    second = trainer.train(20)
    assert second["steps"] == 25 and second["pairs"] == 3
    assert second["loss"] < first["loss"]
    path = trainer.checkpoint(tmp_path / "session" / "denoiser.pt")
    assert path.read_bytes() == trainer.weights()
    assert [p.name for p in path.parent.iterdir()] == ["denoiser.pt"]  # no temporary left
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(load_weights(path.read_bytes())(x), trainer.model(x))


def test_trainer_starts_from_the_shipped_model() -> None:
    from causalscope.models.denoise import default_model

    assert DenoiserTrainer(None).weights() == save_weights(default_model())
