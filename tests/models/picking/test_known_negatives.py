"""Known negatives in the learned picker's training (picks that the session's 2D classes
excluded): their PN risk term by hand, its gradient, and their map around the picks."""

from __future__ import annotations

import math

import pytest
import torch

from causalscope.models.picking.learned import nnpu_loss, positive_map, prepare_micrograph


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_known_negatives_add_the_pn_risk_negative_term() -> None:
    # pixels known to hold no particle (picks of excluded 2D classes) add pi E_N[l(f, -1)]
    # per positive's weight: with one positive, pi * sum_N softplus(f)
    logits = torch.tensor([[0.0, 1.0], [-1.0, 2.0]], requires_grad=True)
    positive = torch.tensor([[True, False], [False, False]])
    negative = torch.tensor([[False, True], [False, True]])
    prior = 0.25
    plain, _ = nnpu_loss(logits, positive, prior)
    objective, risk = nnpu_loss(logits, positive, prior, negative=negative)
    known = prior * (_softplus(1.0) + _softplus(2.0))
    assert float((objective - plain).detach()) == pytest.approx(known, rel=1e-6)
    assert float(risk) == pytest.approx(float(plain) + known, rel=1e-6)
    (objective - plain).backward()
    assert logits.grad is not None
    # only the known negatives are pushed down, each by pi * sigmoid(f)
    pushed = [prior / (1 + math.exp(-f)) for f in (1.0, 2.0)]
    expected = torch.tensor([[0.0, pushed[0]], [0.0, pushed[1]]])
    assert torch.allclose(logits.grad, expected, atol=1e-6)
    with pytest.raises(ValueError, match="negatives"):
        nnpu_loss(logits, positive, prior, negative=negative[:1])


def test_known_negatives_are_marked_around_their_picks_and_never_on_a_particle() -> None:
    image = torch.zeros(240, 240)
    particles = torch.tensor([[60.0, 60.0], [180.0, 120.0]])
    # one pick of junk far from any particle, one a quarter diameter beside the first particle
    junk = torch.tensor([[120.0, 200.0], [66.0, 60.0]])
    item = prepare_micrograph(image, particles, diameter_px=24.0, negative_xy_px=junk)
    assert item.negative is not None and item.negative.shape == item.positive.shape
    assert not (item.negative & item.positive).any()
    far = positive_map(junk[:1], tuple(item.positive.shape), stride=2, radius_px=4.5)
    assert (item.negative & far).sum() == far.sum()  # every pixel around the far one
    beside = positive_map(junk[1:], tuple(item.positive.shape), stride=2, radius_px=4.5)
    assert 0 < (item.negative & beside).sum() < beside.sum()  # the particle's own pixels kept
    assert prepare_micrograph(image, particles, diameter_px=24.0).negative is None
