import pytest
import torch

from datadistill.augment import DSA, OPS, DSAParams, DSATransform, default_strategy, parse_strategy
from datadistill.errors import ConfigError
from datadistill.runtime import make_generator

G, N, C, H, W = 4, 3, 2, 12, 12


def batch(seed=0, g=G, n=N):
    return torch.randn(g, n, C, H, W, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("op", OPS)
def test_transform_is_siamese_within_and_across_batches(op):
    x = batch()
    t = DSA(op).sample(G, make_generator(1))
    doubled = torch.cat([x, x], dim=1)          # (G, 2n, …): every image twice in its group
    out = t(doubled)
    assert out.shape == doubled.shape
    assert torch.equal(out[:, :N], out[:, N:])
    # applying the same transform to another batch (other size) gives the same result per image
    assert torch.equal(t(x), out[:, :N])
    assert torch.equal(t(x[:, :1]), out[:, :1])
    # and applying it twice gives the same output
    assert torch.equal(t(x), t(x))


@pytest.mark.parametrize("op", OPS)
def test_gradient_flows_to_input(op):
    x = batch().requires_grad_(True)
    # rotate/scale/crop/cutout/color change pixels; flip may be a no-op, but still differentiable
    t = DSA(op).sample(G, make_generator(2))
    y = t(x)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("op", OPS)
def test_ops_keep_shape_and_accept_4d_input(op):
    t = DSA(op).sample(G, make_generator(3))
    x = batch()
    assert t(x).shape == x.shape
    x4 = x[:, 0]  # (G, C, H, W): one image per group
    y4 = t(x4)
    assert y4.shape == x4.shape
    assert torch.equal(y4, t(x4.unsqueeze(1)).squeeze(1))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("n", [1, 5])
def test_single_channel_output_has_standard_nchw_strides(op, n):
    # torch reads a (N, 1, H, W) tensor with channel stride 1 as channels-last, and then runs the
    # network's convolutions and GroupNorm in their slower channels-last kernels
    t = DSA(op).sample(3, make_generator(9), shared_op=True)
    x = torch.randn(3, n, 1, 8, 8)
    y = t(x).reshape(3 * n, 1, 8, 8)
    assert y.stride() == (64, 64, 8, 1)
    assert torch.nn.functional.conv2d(y, torch.randn(4, 1, 3, 3)).is_contiguous()  # not channels-last
    y4 = t(torch.randn(3, 1, 8, 8))
    assert y4.stride() == (64, 64, 8, 1)


def test_ops_actually_change_images():
    x = batch()
    gen = make_generator(4)
    for op in ("color", "crop", "cutout", "scale", "rotate"):
        changed = False
        for _ in range(5):  # crop may draw a zero shift for a group; some draw must change something
            if not torch.equal(DSA(op).sample(G, gen)(x), x):
                changed = True
                break
        assert changed, op


def test_flip_flips_or_keeps_each_group():
    x = batch()
    t = DSA("flip").sample(G, make_generator(5))
    y = t(x)
    flipped = t.draws["flip"] < DSAParams().flip_prob
    for g in range(G):
        expected = x[g].flip(-1) if flipped[g] else x[g]
        assert torch.equal(y[g], expected)


def test_flip_probability_extremes():
    x = batch()
    always = DSA("flip", DSAParams(flip_prob=1.0)).sample(G, make_generator(6))
    never = DSA("flip", DSAParams(flip_prob=0.0)).sample(G, make_generator(6))
    assert torch.equal(always(x), x.flip(-1))
    assert torch.equal(never(x), x)


def test_crop_with_zero_translation_is_identity():
    x = batch()
    t = DSA("crop", DSAParams(crop_ratio=0.0)).sample(G, make_generator(7))
    assert torch.equal(t(x), x)


def test_crop_shifts_content_and_zero_fills():
    x = batch() + 10.0  # no zero pixels in the input
    t = DSA("crop").sample(G, make_generator(8))
    y = t(x)
    for g in range(G):
        # every output pixel is either 0 (filled) or a pixel of the same image and channel
        vals = set(x[g].flatten().tolist()) | {0.0}
        assert set(y[g].flatten().tolist()) <= vals


def test_cutout_zeroes_a_square_and_keeps_the_rest():
    x = batch() + 10.0
    t = DSA("cutout").sample(G, make_generator(9))
    y = t(x)
    zero = y == 0
    assert torch.equal(y[~zero], x[~zero])
    assert zero.any()
    # the same mask for every image and channel of a group
    for g in range(G):
        assert (zero[g] == zero[g, 0, 0]).all()


def test_scale_and_rotate_with_neutral_parameters_are_identity():
    x = batch()
    t = DSA("scale", DSAParams(scale_ratio=1.0)).sample(G, make_generator(10))
    assert torch.allclose(t(x), x, atol=1e-5)
    t = DSA("rotate", DSAParams(rotate_degrees=0.0)).sample(G, make_generator(10))
    assert torch.allclose(t(x), x, atol=1e-5)


def test_dsa_none_is_identity():
    x = batch()
    dsa = DSA("none")
    assert not dsa.enabled
    assert torch.equal(dsa(x[:, 0]), x[:, 0])
    t = dsa.sample(G, make_generator(0))
    assert torch.equal(t(x), x)
    assert parse_strategy("none") == () and parse_strategy("") == ()


def test_unknown_op_raises_config_error_naming_it():
    with pytest.raises(ConfigError, match="blur"):
        DSA("color_blur_crop")
    with pytest.raises(ConfigError, match="sharpen"):
        parse_strategy("sharpen")


def test_parse_strategy_splits_ops():
    assert parse_strategy("color_crop_cutout_flip_scale_rotate") == OPS
    assert parse_strategy("rotate_color") == ("rotate", "color")


def test_default_strategy_per_dataset():
    assert "flip" not in parse_strategy(default_strategy("mnist"))
    assert "flip" not in parse_strategy(default_strategy("MNIST"))
    assert "flip" not in parse_strategy(default_strategy("svhn"))
    assert "flip" in parse_strategy(default_strategy("cifar10"))
    assert set(parse_strategy(default_strategy("mnist"))) == set(OPS) - {"flip"}


def test_transform_rejects_batch_with_other_group_count():
    t = DSA("color_crop").sample(G, make_generator(0))
    assert isinstance(t, DSATransform) and t.num_groups == G
    with pytest.raises(ValueError, match=str(G)):
        t(batch(g=G + 1))
    with pytest.raises(ValueError):
        t(batch(g=G - 1)[:, 0])


@pytest.mark.parametrize("strategy", ["color_crop_cutout_flip_scale_rotate", "rotate", "crop"])
def test_same_seed_same_output(strategy):
    x = batch()
    a = DSA(strategy).sample(G, make_generator(42))(x)
    b = DSA(strategy).sample(G, make_generator(42))(x)
    assert torch.equal(a, b)
    dsa = DSA(strategy)
    assert torch.equal(dsa(x[:, 0], make_generator(3)), dsa(x[:, 0], make_generator(3)))


def test_different_seeds_give_different_output():
    x = batch()
    a = DSA("rotate").sample(G, make_generator(1))(x)
    b = DSA("rotate").sample(G, make_generator(2))(x)
    assert not torch.equal(a, b)


def test_different_groups_get_different_parameters():
    img = torch.randn(1, 1, C, H, W)
    x = img.expand(G, N, C, H, W).contiguous()   # the same images in every group
    t = DSA("rotate").sample(G, make_generator(0))
    y = t(x)
    assert len(set(t.draws["rotate"].tolist())) == G
    for g in range(1, G):
        assert not torch.allclose(y[0], y[g])


def test_per_group_ops_when_not_shared():
    """With several ops, groups get independently drawn ops, each applied to its own group."""
    dsa = DSA("color_crop_cutout_flip_scale_rotate")
    g = 32
    t = dsa.sample(g, make_generator(0))
    assert len(set(t.op_index.tolist())) > 1
    x = batch(g=g)
    y = t(x)
    for k in range(g):
        single = DSATransform(t.op_index[k:k + 1], t.ops, {n: v[k:k + 1] for n, v in t.draws.items()}, t.params)
        assert torch.allclose(y[k], single(x[k:k + 1])[0], atol=1e-6)


def test_shared_op_uses_one_op_for_all_groups():
    t = DSA("color_crop_cutout_flip_scale_rotate").sample(16, make_generator(1), shared_op=True)
    assert len(set(t.op_index.tolist())) == 1
