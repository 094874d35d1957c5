"""The gradient distance of DC / DSA (``gradient_distance``): the layer-wise row cosine of the paper
(conv gradients compared per output channel, 1-D gradients ignored), ``mse`` and ``cos``, each checked
against hand computations, and its argument checks."""

import math

import pytest
import torch

from datadistill.methods.losses import gradient_distance

EPS = 1e-6


def _cos_term(a, b):
    """1 − a·b / (‖a‖‖b‖ + eps) for plain Python vectors."""
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return 1 - dot / (na * nb + EPS)


# --------------------------------------------------------------------------- gradient_distance
def test_layerwise_zero_for_identical_gradients():
    torch.manual_seed(0)
    grads = [torch.randn(3, 4, 2, 3, 3), torch.randn(3, 4), torch.randn(3, 5, 7), torch.randn(3, 5)]
    d = gradient_distance(grads, [g.clone() for g in grads], "layerwise")
    assert d.dim() == 0
    assert 0 <= d.item() <= 1e-5
    for name in ("mse", "cos"):
        assert gradient_distance(grads, [g.clone() for g in grads], name).item() == pytest.approx(0.0, abs=1e-5)


def test_layerwise_hand_computation_one_class():
    # conv gradient (G=1, out=2, in=1, kh=1, kw=2): rows (1, 0) | (1, 1) versus (0, 1) | (2, 2)
    conv_real = torch.tensor([[[[[1.0, 0.0]]], [[[1.0, 1.0]]]]])
    conv_syn = torch.tensor([[[[[0.0, 1.0]]], [[[2.0, 2.0]]]]])
    # linear gradient (G=1, out=1, in=2): (3, 4) versus (4, 3), cos = 24/25
    lin_real = torch.tensor([[[3.0, 4.0]]])
    lin_syn = torch.tensor([[[4.0, 3.0]]])
    assert conv_real.shape == (1, 2, 1, 1, 2)
    expected = (1 - 0 / (1 * 1 + EPS)) + (1 - 4 / (math.sqrt(2) * math.sqrt(8) + EPS)) + (1 - 24 / (25 + EPS))
    got = gradient_distance([conv_real, lin_real], [conv_syn, lin_syn], "layerwise")
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert got.item() == pytest.approx(1.04, abs=1e-5)  # sanity of the hand numbers


def test_layerwise_hand_computation_sums_over_classes_and_rows():
    real = torch.tensor([[[1.0, 2.0, 2.0], [0.0, 3.0, 4.0]],     # class 0: rows of a (2, 3) linear gradient
                         [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]])    # class 1
    syn = torch.tensor([[[-1.0, -2.0, -2.0], [0.0, 4.0, 3.0]],   # opposite row → 1 + 9/(9+eps); cos 24/25
                        [[0.0, 5.0, 0.0], [2.0, 2.0, 0.0]]])     # orthogonal → 1; parallel → ≈ 0
    expected = sum(_cos_term(r, s) for r, s in zip(real.flatten(0, 1).tolist(), syn.flatten(0, 1).tolist()))
    assert expected == pytest.approx(2 + 1 / 25 + 1, abs=1e-5)
    assert gradient_distance([real], [syn]).item() == pytest.approx(expected, rel=1e-6)  # layerwise is the default


def test_layerwise_flattens_conv_rows_per_output_channel():
    """A conv gradient (out, in, kh, kw) is compared row by row over in·kh·kw, not as one vector."""
    torch.manual_seed(1)
    real = torch.randn(2, 3, 2, 3, 3)
    syn = torch.randn(2, 3, 2, 3, 3)
    rows_r, rows_s = real.reshape(6, 18).tolist(), syn.reshape(6, 18).tolist()
    expected = sum(_cos_term(r, s) for r, s in zip(rows_r, rows_s))
    assert gradient_distance([real], [syn], "layerwise").item() == pytest.approx(expected, rel=1e-5)
    # a per-row rescaling changes no cosine (but a whole-vector cosine would change)
    scale = torch.tensor([1.0, 10.0, 0.1]).view(1, 3, 1, 1, 1)
    assert gradient_distance([real], [syn * scale], "layerwise").item() == pytest.approx(expected, rel=1e-4)
    assert gradient_distance([real], [syn * scale], "cos").item() != pytest.approx(
        gradient_distance([real], [syn], "cos").item(), rel=1e-3)


def test_layerwise_zero_gradient_is_guarded_by_eps():
    real = torch.ones(2, 3, 4)
    syn = torch.zeros(2, 3, 4)
    d = gradient_distance([real], [syn], "layerwise")
    assert torch.isfinite(d)
    assert d.item() == pytest.approx(6.0)  # 6 rows, each 1 − 0


def test_layerwise_ignores_one_dimensional_gradients_but_mse_does_not():
    torch.manual_seed(2)
    weight_r, weight_s = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    bias_r, bias_s = torch.randn(2, 4), torch.randn(2, 4)
    base = gradient_distance([weight_r, bias_r], [weight_s, bias_s], "layerwise")
    changed = gradient_distance([weight_r, bias_r], [weight_s, bias_s + 5.0], "layerwise")
    only_weight = gradient_distance([weight_r], [weight_s], "layerwise")
    assert changed.item() == base.item() == only_weight.item()
    assert gradient_distance([bias_r], [bias_s], "layerwise").item() == 0.0
    mse_base = gradient_distance([weight_r, bias_r], [weight_s, bias_s], "mse")
    mse_changed = gradient_distance([weight_r, bias_r], [weight_s, bias_s + 5.0], "mse")
    assert mse_changed.item() > mse_base.item()


def test_mse_hand_computation():
    real = [torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[[3.0]], [[1.0]]])]   # G = 2
    syn = [torch.tensor([[0.0, 0.0], [0.0, 1.0]]), torch.tensor([[[1.0]], [[1.0]]])]
    # class 0: 1 + 4 + (3 − 1)² = 9; class 1: 1 + 0 = 1
    assert gradient_distance(real, syn, "mse").item() == pytest.approx(10.0)


def test_cos_hand_computation_concatenates_parameters_per_class():
    real = [torch.tensor([[1.0, 0.0], [0.0, 3.0]]), torch.tensor([[[0.0]], [[4.0]]])]
    syn = [torch.tensor([[1.0, 1.0], [0.0, 3.0]]), torch.tensor([[[0.0]], [[4.0]]])]
    # class 0: (1, 0, 0) vs (1, 1, 0) → 1 − 1/(√2 + eps); class 1: identical (0, 3, 4) → 1 − 25/(25 + eps)
    expected = (1 - 1 / (math.sqrt(2) + EPS)) + (1 - 25 / (25 + EPS))
    assert gradient_distance(real, syn, "cos").item() == pytest.approx(expected, rel=1e-6)
    # the 1-D gradients count for cos: changing only them changes the distance
    syn2 = [syn[0], torch.tensor([[[0.0]], [[-4.0]]])]
    assert gradient_distance(real, syn2, "cos").item() > expected + 0.5


def test_gradient_distance_rejects_bad_arguments():
    a = [torch.zeros(1, 2, 3)]
    with pytest.raises(ValueError, match="l2"):
        gradient_distance(a, a, "l2")
    with pytest.raises(ValueError):
        gradient_distance([torch.zeros(1, 2, 3)], [torch.zeros(1, 3, 2)])
    with pytest.raises(ValueError):
        gradient_distance([torch.zeros(1, 2, 3)], [torch.zeros(2, 2, 3)])
    with pytest.raises(ValueError):
        gradient_distance([torch.zeros(1, 2, 3), torch.zeros(1, 2)], [torch.zeros(1, 2, 3)])
