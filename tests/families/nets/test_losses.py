"""Soft multi-class Dice and Dice + CE on hand-made inputs with values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from physeg.families.nets.losses import dice_ce_loss, one_hot, soft_dice_loss  # noqa: E402

pytestmark = pytest.mark.torch


def _probs(rows):
    """(1, K, 1, N) probabilities from a list of per-pixel K-vectors."""
    p = torch.tensor(rows, dtype=torch.float64).T  # (K, N)
    return p[None, :, None, :]


def test_perfect_prediction_is_zero_and_opposite_is_one():
    t = torch.tensor([[[0, 1, 2, 1]]])
    p = one_hot(t, 3).double()
    assert float(soft_dice_loss(p, t, from_logits=False, smooth=0.0)) == pytest.approx(0.0)
    wrong = one_hot((t + 1) % 3, 3).double()
    assert float(soft_dice_loss(wrong, t, from_logits=False, smooth=0.0)) == pytest.approx(1.0)


def test_half_half_prediction_by_hand():
    # 4 pixels, all class 0; prediction 0.5/0.5 everywhere.
    # class 0: 2*2 / (4 + 2) = 2/3; class 1: 0 / (0 + 2) = 0  ->  uniform loss 1 - 1/3.
    p = _probs([[0.5, 0.5]] * 4)
    t = torch.zeros(1, 1, 4, dtype=torch.long)
    loss = soft_dice_loss(p, t, from_logits=False, smooth=0.0)
    assert float(loss) == pytest.approx(2.0 / 3.0)
    # weights (1, 0): only class 0 counts -> 1 - 2/3
    w = soft_dice_loss(p, t, from_logits=False, smooth=0.0, class_weights=[1.0, 0.0])
    assert float(w) == pytest.approx(1.0 / 3.0)
    # weights (1, 3): (2/3 * 1 + 0 * 3) / 4 = 1/6 -> 5/6
    w = soft_dice_loss(p, t, from_logits=False, smooth=0.0, class_weights=[1.0, 3.0])
    assert float(w) == pytest.approx(5.0 / 6.0)
    # "volume" weights: class 1 is absent (volume 0) -> weight 0 -> same as (1, 0)
    v = soft_dice_loss(p, t, from_logits=False, smooth=0.0, class_weights="volume")
    assert float(v) == pytest.approx(1.0 / 3.0)


def test_volume_weights_by_hand():
    # 8 pixels: class 0 on 7, class 1 on 1; prediction exactly right on class 0's pixels,
    # 0.5/0.5 on the class-1 pixel.
    rows = [[1.0, 0.0]] * 7 + [[0.5, 0.5]]
    p = _probs(rows)
    t = torch.tensor([[[0] * 7 + [1]]])
    d0 = 2 * 7 / (7 + 7.5)
    d1 = 2 * 0.5 / (1 + 0.5)
    w0, w1 = 7 ** (-1 / 3), 1.0
    expect = 1 - (w0 * d0 + w1 * d1) / (w0 + w1)
    got = soft_dice_loss(p, t, from_logits=False, smooth=0.0, class_weights="volume")
    assert float(got) == pytest.approx(expect)
    uni = soft_dice_loss(p, t, from_logits=False, smooth=0.0)
    assert float(uni) == pytest.approx(1 - (d0 + d1) / 2)


def test_logits_softmax_and_valid_mask():
    t = torch.tensor([[[0, 1, 1, 0]]])
    logits = torch.zeros(1, 2, 1, 4, dtype=torch.float64)  # softmax -> 0.5 everywhere
    # class 0: 2*1/(2+2) = 0.5; class 1: same -> loss 0.5
    assert float(soft_dice_loss(logits, t, smooth=0.0)) == pytest.approx(0.5)
    # wrong predictions on masked-out pixels do not count
    p = one_hot(t, 2).double()
    p[0, :, 0, 3] = torch.tensor([0.0, 1.0])
    valid = torch.tensor([[[1, 1, 1, 0]]])
    assert float(soft_dice_loss(p, t, from_logits=False, valid=valid, smooth=0.0)) == (
        pytest.approx(0.0))
    assert float(soft_dice_loss(p, t, from_logits=False, smooth=0.0)) > 0.1


def test_image_reduction_by_hand():
    # image 1 perfect; image 2: class 0 everywhere in truth, predicted class 1 everywhere.
    t = torch.tensor([[[0, 1]], [[0, 0]]])
    p = torch.stack([one_hot(t[0:1], 2)[0], one_hot(torch.tensor([[[1, 1]]]), 2)[0]]).double()
    # per image: image 1 dice (1, 1); image 2: class 0 = 0, class 1 = 0/(2+0) = 0
    per_image = soft_dice_loss(p, t, from_logits=False, smooth=0.0, reduction="image")
    assert float(per_image) == pytest.approx(0.5)
    # batch: class 0: 2*1 / (3 + 1) = 0.5; class 1: 2*1 / (1 + 3) = 0.5 -> 0.5
    assert float(soft_dice_loss(p, t, from_logits=False, smooth=0.0)) == pytest.approx(0.5)


def test_dice_ce_by_hand_and_gradient():
    t = torch.tensor([[[0, 1, 1, 0]]])
    logits = torch.zeros(1, 2, 1, 4, dtype=torch.float64, requires_grad=True)
    loss = dice_ce_loss(logits, t, smooth=0.0, ce_weight=2.0)
    assert float(loss.detach()) == pytest.approx(0.5 + 2.0 * math.log(2.0))
    loss.backward()
    assert torch.isfinite(logits.grad).all() and float(logits.grad.abs().sum()) > 0
    assert float(dice_ce_loss(logits.detach(), t, ce_weight=0.0, smooth=0.0)) == pytest.approx(0.5)


def test_errors_are_explained():
    p = torch.zeros(1, 2, 2, 2)
    with pytest.raises(ValueError, match="class_weights must hold 2"):
        soft_dice_loss(p, torch.zeros(1, 2, 2, dtype=torch.long), class_weights=[1, 2, 3])
    with pytest.raises(ValueError, match="target labels must lie in 0..1"):
        soft_dice_loss(p, torch.full((1, 2, 2), 5))
    with pytest.raises(ValueError, match="reduction must be"):
        soft_dice_loss(p, torch.zeros(1, 2, 2, dtype=torch.long), reduction="mean")
    with pytest.raises(ValueError, match="does not match logits"):
        soft_dice_loss(p, torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="ce_weight must be >= 0"):
        dice_ce_loss(p, torch.zeros(1, 2, 2, dtype=torch.long), ce_weight=-1)


def test_loss_in_unit_interval_random():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 5, 6, generator=g)
    t = torch.randint(0, 4, (3, 5, 6), generator=g)
    val = float(soft_dice_loss(logits, t))
    assert 0.0 < val < 1.0
    np.testing.assert_allclose(val, float(soft_dice_loss(torch.softmax(logits, 1), one_hot(t, 4),
                                                         from_logits=False)), rtol=1e-6)
