"""DC's evaluation augmentation (augment/dc.py): shapes, the ranges of its parameters, each op against
a hand-made case, and its use by the training loop."""

import pytest
import torch

from datadistill.augment import DSA, DCAugment, DCAugParams, make_augmentation
from datadistill.augment.dc import crop, rotate, scale
from datadistill.errors import ConfigError
from datadistill.runtime import make_generator
from datadistill.training import TrainRecipe, fit_network
from helpers import tiny_builder

N, C, H, W = 6, 2, 16, 16


def batch(seed=0, n=N):
    return torch.randn(n, C, H, W, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("strategy", ["dc:crop", "dc:scale", "dc:rotate", "dc:noise", "dc:crop_scale_rotate",
                                      "dc:crop_noise"])
def test_keeps_shape_dtype_and_input(strategy):
    x = batch()
    before = x.clone()
    out = DCAugment(strategy)(x, make_generator(0))
    assert out.shape == x.shape and out.dtype == x.dtype and not out.requires_grad
    assert torch.isfinite(out).all()
    assert torch.equal(x, before)  # the reference augments in place; ours leaves the input alone
    assert not torch.equal(out, x)


def test_parameter_ranges_are_honoured():
    """Over many draws: ops only from the strategy (each drawn), crop offsets in [0, 8) (shifts of at
    most 4 px), resize factors in [0.8, 1.2], integer angles in [-45, 44]; the extremes are reached."""
    aug = DCAugment("dc:crop_scale_rotate")
    d = aug.sample(4000, (C, H, W), make_generator(3))
    assert set(d.ops.tolist()) == {0, 1, 2}
    assert d.offsets.min() == 0 and d.offsets.max() == 7
    shifts = 4 - d.offsets
    assert shifts.abs().max() <= 4
    assert d.factors.min() >= 0.8 and d.factors.max() <= 1.2
    assert d.factors.min() < 0.801 and d.factors.max() > 1.199
    assert d.angles.dtype == torch.int64 and d.angles.min() == -45 and d.angles.max() == 44


def test_crop_moves_the_content_by_pad_minus_offset_and_fills_with_the_channel_mean():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 5] = 1.0
    fill = torch.tensor([0.25])
    out = crop(x, torch.tensor([[1, 6]]), 4, fill)  # content moves down 3, left 2
    assert out[0, 0, 6, 3] == 1.0 and out.eq(1.0).sum() == 1
    assert torch.all(out[0, 0, :3] == 0.25)      # rows shifted in from the padding
    assert torch.all(out[0, 0, :, 6:] == 0.25)   # columns shifted in from the padding
    assert torch.equal(crop(x, torch.tensor([[4, 4]]), 4, fill), x)  # offset = pad: no shift


def test_crop_fill_is_the_batch_mean_per_channel():
    """Every padded pixel of a crop holds the mean of its channel over the whole batch (DC's `mean`)."""
    x = batch()
    aug = DCAugment("dc:crop")
    draw = aug.sample(N, (C, H, W), make_generator(1))
    draw.offsets[:] = torch.tensor([0, 0])  # content moves 4 down and 4 right
    out = aug.apply(x, draw)
    mean = x.mean(dim=(0, 2, 3))
    for c in range(C):
        assert torch.allclose(out[:, c, :4, :], mean[c].expand(N, 4, W))
    assert torch.equal(out[:, :, 4:, 4:], x[:, :, :-4, :-4])


def test_scale_by_one_is_identity_and_shrinking_pads_with_zeros():
    img = torch.arange(1.0, 1 + H * W).view(1, H, W)
    assert torch.equal(scale(img, 1.0, 1.0), img)
    small = scale(img, 0.5, 0.5)  # 8×8 resized image centred: rows/cols 4..11, zeros around it
    assert small.shape == img.shape
    assert torch.all(small[:, :4] == 0) and torch.all(small[:, :, 12:] == 0)
    assert torch.equal(small[0, 4:12, 4:12], img[0, ::2, ::2])  # nearest neighbour of a halving
    big = scale(img, 2.0, 2.0)  # the centre, each pixel repeated twice
    assert torch.equal(big[0, ::2, ::2], img[0, 4:12, 4:12])


def test_rotation_by_0_and_90_degrees():
    img = torch.randn(C, H, W, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(rotate(img, 0, 0.0), img, atol=1e-5)
    assert torch.allclose(rotate(img, 90, 0.0), torch.rot90(img, 1, dims=(1, 2)), atol=1e-5)


def test_noise_has_the_given_scale():
    x = batch(n=50)
    out = DCAugment("dc:noise")(x, make_generator(2))
    diff = (out - x) / DCAugParams().noise
    assert diff.std().item() == pytest.approx(1.0, abs=0.05)
    assert diff.abs().max().item() < 6


def test_same_generator_same_result():
    x = batch()
    aug = DCAugment("dc:crop_scale_rotate")
    assert torch.equal(aug(x, make_generator(4)), aug(x, make_generator(4)))


@pytest.mark.parametrize("bad", ["dc:flip", "dc:", "dc:crop_color"])
def test_unknown_ops_are_refused(bad):
    with pytest.raises(ConfigError, match="DC augmentation"):
        make_augmentation(bad)
    with pytest.raises(ConfigError, match="dc:crop_scale_rotate"):
        TrainRecipe(epochs=1, lr=0.01, augmentation=bad)


def test_bad_magnitudes_are_refused():
    with pytest.raises(ConfigError, match="crop"):
        DCAugParams(crop=0)
    with pytest.raises(ConfigError, match="scale"):
        DCAugParams(scale=1.5)


def test_make_augmentation_picks_the_kind():
    assert isinstance(make_augmentation("dc:crop_noise"), DCAugment)
    assert isinstance(make_augmentation("crop_rotate"), DSA)
    assert not make_augmentation("none").enabled


def test_training_loop_uses_dc_augmentation():
    """fit_network trains with DC's augmentation; the result repeats with the same seeds and differs
    from training without augmentation."""
    x, y = batch(n=6)[:, :1], torch.arange(6) % 3
    x = torch.nn.functional.pad(x, [6, 6, 6, 6])  # 1×28×28, the tiny ConvNet's input

    def train(strategy):
        torch.manual_seed(0)
        net = tiny_builder(1, 3, (28, 28))
        fit_network(net, (x, y), TrainRecipe(epochs=2, lr=0.01, batch_size=4, augmentation=strategy),
                    make_generator(0))
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    a, b = train("dc:crop_scale_rotate"), train("dc:crop_scale_rotate")
    assert torch.equal(a, b)
    assert not torch.equal(a, train("none"))
