import pytest
import torch
import torch.nn.functional as F

from datadistill.errors import ConfigError, UnknownNameError
from datadistill.models import MODELS, ConvNet, build_model, list_models
from datadistill.models.convnet import NORMS, AvgPool2


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_convnet_parameter_count_mnist():
    assert n_params(build_model("convnet", 1, 10, (28, 28))) == 317_706


def test_convnet_parameter_count_cifar():
    assert n_params(build_model("convnet", 3, 10, (32, 32))) == 320_010


def test_convnet_features_shapes_mnist():
    net = build_model("convnet", 1, 10, (28, 28))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        f = net.features(x)
    assert [tuple(a.shape) for a in f.activations] == [(2, 128, 32, 32), (2, 128, 16, 16), (2, 128, 8, 8)]
    assert f.embedding.shape == (2, 2048)
    assert net.embedding_dim == 2048
    assert f.embedding.dtype == torch.float32


def test_embed_equals_features_embedding_and_forward_shape():
    torch.manual_seed(0)
    net = build_model("convnet", 1, 10, (28, 28), width=8)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        e = net.embed(x)
        assert torch.allclose(e, net.features(x).embedding)
        logits = net(x)
    assert e.shape == (3, 8 * 4 * 4)
    assert logits.shape == (3, 10)
    assert torch.allclose(logits, net.classifier(e))


def test_features_activations_are_pre_pooling():
    net = build_model("convnet", 1, 10, (28, 28), width=8)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        f = net.features(x)
        assert torch.allclose(f.activations[0], net.blocks[0](x))
        assert torch.allclose(f.activations[1], net.blocks[1](F.avg_pool2d(f.activations[0], 2)), atol=1e-5)


@pytest.mark.parametrize("norm", NORMS)
def test_every_norm_builds_and_runs(norm):
    net = ConvNet(1, 10, (28, 28), width=8, norm=norm)
    x = torch.randn(4, 1, 28, 28, requires_grad=True)
    out = net(x)
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("activation", ["relu", "leakyrelu", "sigmoid"])
@pytest.mark.parametrize("pooling", ["avgpooling", "maxpooling", "none"])
def test_activations_and_poolings(activation, pooling):
    net = ConvNet(3, 5, (16, 16), width=4, depth=2, activation=activation, pooling=pooling)
    x = torch.randn(2, 3, 16, 16)
    assert net(x).shape == (2, 5)
    assert net.embed(x).shape == (2, net.embedding_dim)


def test_registered_variants():
    names = list_models()
    for name in ("convnet", "convnet_bn", "convnet_ln", "convnet_nn", "convnet_d1", "convnet_d7"):
        assert name in names
    bn = build_model("convnet_bn", 1, 10, (28, 28), width=8)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules())
    d1 = build_model("convnet_d1", 1, 10, (28, 28), width=8)
    assert len(d1.blocks) == 1
    assert d1.features(torch.randn(1, 1, 28, 28)).embedding.shape == (1, 8 * 16 * 16)


@pytest.mark.parametrize("size", [(8, 8), (7, 7), (9, 6), (6, 11), (5, 5)])
def test_avgpool2_matches_f_avg_pool2d(size):
    x = torch.randn(2, 3, *size)
    assert torch.allclose(AvgPool2()(x), F.avg_pool2d(x, 2, 2), atol=1e-6)
    assert torch.allclose(AvgPool2()(x), torch.nn.AvgPool2d(2, 2)(x), atol=1e-6)


def test_avgpool2_gradient_matches():
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    AvgPool2()(x).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 0.25))


def test_odd_image_sizes_work():
    net = ConvNet(1, 4, (30, 30), width=4)  # 30 → 15 → 7 → 3
    assert net.embedding_dim == 4 * 3 * 3
    assert net(torch.randn(2, 1, 30, 30)).shape == (2, 4)


def test_unknown_norm_activation_pooling_raise_config_error():
    with pytest.raises(ConfigError, match="norm.*nosuchnorm"):
        ConvNet(1, 10, (28, 28), width=8, norm="nosuchnorm")
    with pytest.raises(ConfigError, match="tanh"):
        ConvNet(1, 10, (28, 28), width=8, activation="tanh")
    with pytest.raises(ConfigError, match="sumpooling"):
        ConvNet(1, 10, (28, 28), width=8, pooling="sumpooling")


def test_bad_depth_or_tiny_image_raise_config_error():
    with pytest.raises(ConfigError):
        ConvNet(1, 10, (28, 28), width=8, depth=0)
    with pytest.raises(ConfigError, match="too small"):
        ConvNet(1, 10, (4, 4), width=8, depth=3)


def test_unknown_model_name_lists_names():
    with pytest.raises(UnknownNameError) as info:
        build_model("resnet999", 1, 10, (28, 28))
    msg = str(info.value)
    assert "resnet999" in msg
    for name in MODELS.names():
        assert name in msg


def test_build_model_kwargs_and_initialisation_from_default_generator():
    torch.manual_seed(3)
    a = build_model("convnet", 1, 10, (28, 28), width=8)
    torch.manual_seed(3)
    b = build_model("convnet", 1, 10, (28, 28), width=8)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = build_model("convnet", 1, 10, [28, 28], width=8)  # a list image size is accepted
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_no_hooks_left_after_features():
    net = build_model("convnet", 1, 10, (28, 28), width=8)
    x = torch.randn(2, 1, 28, 28)
    net.features(x)
    with torch.no_grad():
        net.features(x)
    net.embed(x)
    for m in net.modules():
        assert len(m._forward_hooks) == 0
        assert len(m._forward_pre_hooks) == 0
        assert len(m._backward_hooks) == 0
