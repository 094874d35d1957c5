import math

import pytest
import torch

from datadistill.methods.losses import abs_power, attention_map, mean_matching_loss
from helpers import make_distiller, make_tiny_dataset


# --------------------------------------------------------------------------- mean_matching_loss
def test_mean_matching_loss_zero_for_identical_sets():
    x = torch.randn(3, 5, 4, 2, 2)
    assert mean_matching_loss(x, x.clone()).item() == 0.0


def test_mean_matching_loss_zero_for_equal_class_means_with_different_samples():
    real = torch.tensor([[[1.0, 3.0], [3.0, 5.0]],     # class 0 mean (2, 4)
                         [[0.0, 0.0], [4.0, -2.0]]])   # class 1 mean (2, -1)
    syn = torch.tensor([[[2.0, 4.0]],
                        [[2.0, -1.0]]])
    assert mean_matching_loss(real, syn).item() == 0.0
    syn2 = torch.tensor([[[0.0, 4.0], [4.0, 4.0], [2.0, 4.0]],
                         [[1.0, -1.0], [3.0, -1.0], [2.0, -1.0]]])
    assert mean_matching_loss(real, syn2).item() == 0.0


def test_mean_matching_loss_positive_when_means_differ():
    real = torch.zeros(2, 3, 4)
    syn = torch.zeros(2, 1, 4)
    syn[1, 0, 2] = 0.5
    assert mean_matching_loss(real, syn).item() > 0


def test_mean_matching_loss_hand_computation():
    real = torch.tensor([[[1.0, 2.0], [3.0, 4.0]],   # mean (2, 3)
                         [[0.0, 0.0], [2.0, 2.0]]])  # mean (1, 1)
    syn = torch.tensor([[[0.0, 0.0]],
                        [[1.0, 3.0]]])
    # class 0: (2-0)² + (3-0)² = 13; class 1: (1-1)² + (1-3)² = 4
    assert mean_matching_loss(real, syn).item() == pytest.approx(17.0)


def test_mean_matching_loss_flattens_trailing_dims():
    real = torch.randn(2, 4, 3, 5)
    syn = torch.randn(2, 2, 3, 5)
    expected = ((real.mean(1) - syn.mean(1)) ** 2).sum()
    assert torch.allclose(mean_matching_loss(real, syn), expected)
    assert torch.allclose(mean_matching_loss(real, syn), mean_matching_loss(real.flatten(2), syn.flatten(2)))


@pytest.mark.parametrize("real_shape, syn_shape", [
    ((2, 3, 4), (3, 1, 4)),   # different number of classes
    ((2, 3, 4), (2, 1, 5)),   # different feature size
    ((2, 3, 4, 4), (2, 1, 4, 5)),
])
def test_mean_matching_loss_rejects_mismatched_shapes(real_shape, syn_shape):
    with pytest.raises(ValueError):
        mean_matching_loss(torch.zeros(real_shape), torch.zeros(syn_shape))


def test_mean_matching_loss_gradient():
    real = torch.randn(2, 3, 4)
    syn = torch.randn(2, 2, 4, requires_grad=True)
    mean_matching_loss(real, syn).backward()
    # d/d syn[g, i] of ||m_r - m_s||² = -2 (m_r - m_s) / n
    expected = (-2 * (real.mean(1) - syn.detach().mean(1)) / 2).unsqueeze(1).expand(2, 2, 4)
    assert torch.allclose(syn.grad, expected, atol=1e-6)


# --------------------------------------------------------------------------- attention_map
FMAP = torch.tensor([[[[1.0, -2.0], [0.0, 3.0]],
                      [[-1.0, 0.0], [2.0, 1.0]]]])  # (N=1, C=2, H=2, W=2)


def test_attention_map_shape_and_unit_norm():
    f = torch.randn(5, 7, 3, 4)
    for p in (1, 2, 4):
        a = attention_map(f, p)
        assert a.shape == (5, 12)
        assert torch.allclose(a.norm(dim=1), torch.ones(5), atol=1e-6)


def test_attention_map_hand_computation_p1():
    # Σ_c |F_c| = [[2, 2], [2, 4]] → / sqrt(4 + 4 + 4 + 16)
    expected = torch.tensor([[2.0, 2.0, 2.0, 4.0]]) / math.sqrt(28.0)
    assert torch.allclose(attention_map(FMAP, 1), expected, atol=1e-6)
    assert torch.allclose(attention_map(FMAP), expected, atol=1e-6)  # default p = 1


def test_attention_map_hand_computation_p4():
    # Σ_c |F_c|^4 = [[1 + 1, 16 + 0], [0 + 16, 81 + 1]]
    raw = torch.tensor([[2.0, 16.0, 16.0, 82.0]])
    expected = raw / math.sqrt(4.0 + 256.0 + 256.0 + 82.0 ** 2)
    assert torch.allclose(attention_map(FMAP, 4), expected, atol=1e-6)


@pytest.mark.parametrize("power", [1, 2, 3, 4, 5, 7, 8, 2.5, 0.5, 17])
def test_abs_power_matches_pow_in_value_and_gradient(power):
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([-2.0, -0.5, 0.1, 0.3, 1.5], dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(abs_power(x, power), x.detach().abs() ** power)
    # gradient away from 0 (|x|^p is not differentiable there for p < 1): d|y|^p/dy = p |y|^(p-1) sign(y)
    (g,) = torch.autograd.grad(abs_power(y, power).sum(), y)
    torch.testing.assert_close(g, power * y.detach().abs() ** (power - 1) * y.detach().sign())


def test_attention_map_sign_invariant():
    f = torch.randn(3, 4, 5, 5)
    signs = torch.randint(0, 2, f.shape).float() * 2 - 1
    for p in (1, 4):
        assert torch.allclose(attention_map(f, p), attention_map(f * signs, p), atol=1e-6)
        assert torch.allclose(attention_map(f, p), attention_map(-f, p))


def test_attention_map_zero_map_stays_zero_and_leading_dims():
    assert torch.equal(attention_map(torch.zeros(2, 3, 4, 4)), torch.zeros(2, 16))
    f = torch.randn(2, 3, 4, 5, 6)  # (G, n, C, H, W)
    a = attention_map(f)
    assert a.shape == (2, 3, 30)
    assert torch.allclose(a, attention_map(f.flatten(0, 1)).view(2, 3, 30))


# --------------------------------------------------------------------------- DM / DataDAM losses
METHOD_NAMES = ["dm", "datadam"]


@pytest.fixture
def loss_data(tiny_model):
    data = make_tiny_dataset()
    torch.manual_seed(0)
    return data


def _real_batch(distiller, n, seed=1):
    return distiller.real.sample(n, torch.Generator().manual_seed(seed))


def _net(distiller, seed=0):
    torch.manual_seed(seed)
    return distiller.fresh_network()


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_class_loss_zero_when_synthetic_equals_real(loss_data, method):
    d = make_distiller(method, loss_data)
    net = _net(d)
    real = _real_batch(d, 3)  # (G=3, 3, 1, 28, 28)
    syn = real.clone().requires_grad_(True)
    loss = d.class_loss(net, real, syn, chunk=9)
    assert loss.item() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_class_loss_positive_when_synthetic_differs(loss_data, method):
    d = make_distiller(method, loss_data)
    net = _net(d)
    real = _real_batch(d, 3)
    syn = _real_batch(d, 2, seed=5).requires_grad_(True)
    assert d.class_loss(net, real, syn, chunk=9).item() > 0
    # a swap of classes also changes the loss from zero
    syn2 = real.flip(0).clone().requires_grad_(True)
    assert d.class_loss(net, real, syn2, chunk=9).item() > 0


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_class_loss_chunked_equals_unchunked(loss_data, method):
    d = make_distiller(method, loss_data)
    net = _net(d)
    real = _real_batch(d, 4)
    syn = _real_batch(d, 2, seed=3) + 0.1 * torch.randn(3, 2, 1, 28, 28)
    full = d.class_loss(net, real, syn, chunk=12)
    for chunk in (1, 3, 5):
        assert torch.allclose(d.class_loss(net, real, syn, chunk=chunk), full, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_class_loss_per_class_sum_equals_batched(loss_data, method):
    d = make_distiller(method, loss_data)
    net = _net(d)
    real = _real_batch(d, 4)
    syn = torch.randn(3, 2, 1, 28, 28)
    batched = d.class_loss(net, real, syn, chunk=32)
    per_class = sum(d.class_loss(net, real[c:c + 1], syn[c:c + 1], chunk=4) for c in range(3))
    assert torch.allclose(batched, per_class, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_batched_and_per_class_steps_give_same_loss(loss_data, method):
    """A full step (DSA on) with batched=False matches batched=True for instance norm."""
    runs = []
    for batched in (True, False):
        d = make_distiller(method, loss_data, dsa="color_crop_cutout_scale_rotate", batched=batched, seed=3)
        d.initialise("real")
        torch.manual_seed(11)
        loss = d.step()["loss"]
        runs.append((loss, d.images.detach().clone()))
    (l1, im1), (l2, im2) = runs
    assert l1 == pytest.approx(l2, rel=1e-4, abs=1e-6)
    assert torch.allclose(im1, im2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_chunk_setting_does_not_change_step(loss_data, method):
    runs = []
    for chunk in (1, 0, 100):
        d = make_distiller(method, loss_data, chunk=chunk, seed=4)
        d.initialise("noise")
        torch.manual_seed(5)
        runs.append(d.step()["loss"])
    assert runs[0] == pytest.approx(runs[1], rel=1e-4) and runs[1] == pytest.approx(runs[2], rel=1e-4)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_gradient_reaches_synthetic_images(loss_data, method):
    d = make_distiller(method, loss_data)
    net = _net(d)
    real = _real_batch(d, 3)
    syn = torch.randn(3, 2, 1, 28, 28, requires_grad=True)
    d.class_loss(net, real, syn, chunk=6).backward()
    assert syn.grad is not None
    assert torch.isfinite(syn.grad).all()
    for c in range(3):  # every class's images get a gradient
        assert syn.grad[c].abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())  # the network is frozen


def test_dm_loss_is_mean_matching_of_embeddings(loss_data):
    d = make_distiller("dm", loss_data)
    net = _net(d)
    real = _real_batch(d, 3)
    syn = torch.randn(3, 2, 1, 28, 28)
    with torch.no_grad():
        er = net.embed(real.flatten(0, 1)).view(3, 3, -1)
        es = net.embed(syn.flatten(0, 1)).view(3, 2, -1)
    expected = ((er.mean(1) - es.mean(1)) ** 2).sum()
    assert torch.allclose(d.class_loss(net, real, syn, chunk=9), expected, rtol=1e-5)


@pytest.mark.parametrize("power", [1.0, 4.0])
def test_datadam_loss_formula(loss_data, power):
    d = make_distiller("datadam", loss_data, attention_power=power, task_balance=0.5, loss_scale=3.0)
    net = _net(d)
    real = _real_batch(d, 3)
    syn = torch.randn(3, 2, 1, 28, 28)
    with torch.no_grad():
        fr, fs = net.features(real.flatten(0, 1)), net.features(syn.flatten(0, 1))

        def mm(a, b):
            return ((a.view(3, 3, -1).mean(1) - b.view(3, 2, -1).mean(1)) ** 2).sum()

        att = sum(mm(attention_map(a, power), attention_map(b, power))
                  for a, b in zip(fr.activations[:-1], fs.activations[:-1]))
        expected = 3.0 * (att + 0.5 * mm(fr.embedding, fs.embedding))
    assert len(fr.activations) == 3  # two attention terms plus the embedding term
    assert torch.allclose(d.class_loss(net, real, syn, chunk=9), expected, rtol=1e-5)
