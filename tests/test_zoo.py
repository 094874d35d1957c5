"""The model zoo (models/zoo.py): MLP, LeNet, AlexNet, VGG-11, ResNet-18 for 28–32 px inputs."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state
from torchvision.models.vgg import make_layers

from datadistill.errors import ConfigError, UnknownNameError
from datadistill.models import MODELS, build_model, default_eval_lr, has_batchnorm
from datadistill.models.zoo import VGG11_CFG

ZOO_NAMES = ["mlp", "lenet", "alexnet", "alexnet_bn", "vgg11", "vgg11_bn", "resnet18", "resnet18_bn"]
INPUTS = [(1, 28, 28), (3, 32, 32)]
NO_BN = ["mlp", "lenet", "alexnet", "vgg11", "resnet18"]


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_lenet_parameter_count_mnist():
    # conv1 1·6·25+6 = 156; conv2 6·16·25+16 = 2,416; fc1 400·120+120 = 48,120;
    # fc2 120·84+84 = 10,164; fc3 84·10+10 = 850; total 61,706
    assert n_params(build_model("lenet", 1, 10, (28, 28))) == 61_706


def test_mlp_parameter_count_mnist():
    # 784·128+128 = 100,480; 128·128+128 = 16,512; 128·10+10 = 1,290; total 118,282
    assert n_params(build_model("mlp", 1, 10, (28, 28))) == 118_282


def test_alexnet_parameter_count_mnist():
    # convs 3,328 + 614,592 + 442,624 + 442,560 + 331,968; fc 192·4·4·10+10 = 30,730; total 1,865,802
    assert n_params(build_model("alexnet", 1, 10, (28, 28))) == 1_865_802


def test_resnet18_bn_parameter_count_cifar10():
    assert n_params(build_model("resnet18_bn", 3, 10, (32, 32))) == 11_173_962
    assert n_params(build_model("resnet18", 3, 10, (32, 32))) == 11_173_962  # GroupNorm has BN's affine params


def test_vgg11_bn_matches_torchvision_make_layers():
    ours = build_model("vgg11_bn", 3, 10, (32, 32))
    tv = make_layers(list(VGG11_CFG), batch_norm=True)
    assert n_params(ours) == n_params(tv) + 512 * 10 + 10
    ours_shapes = [tuple(p.shape) for p in ours.parameters()]
    assert ours_shapes == [tuple(p.shape) for p in tv.parameters()] + [(10, 512), (10,)]


@pytest.mark.parametrize("shape", INPUTS, ids=["mnist", "cifar"])
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_shapes_embed_and_features(name, shape):
    torch.manual_seed(0)
    net = build_model(name, shape[0], 10, shape[1:]).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        logits = net(x)
        e = net.embed(x)
        f = net.features(x)
    assert logits.shape == (2, 10)
    assert e.shape == (2, net.classifier.in_features) == (2, net.embedding_dim)
    assert torch.allclose(net.classifier(e), logits, atol=1e-6)
    assert torch.allclose(f.embedding, e, atol=1e-6)
    assert len(f.activations) >= 2
    assert all(a.dim() == 4 and a.shape[0] == 2 for a in f.activations)


@pytest.mark.parametrize(("name", "shape", "expected"), [
    ("mlp", (1, 28, 28), [(128, 1, 1), (128, 1, 1)]),
    ("lenet", (1, 28, 28), [(6, 28, 28), (16, 10, 10)]),
    ("lenet", (3, 32, 32), [(6, 28, 28), (16, 10, 10)]),
    ("alexnet", (1, 28, 28), [(128, 32, 32), (192, 16, 16), (256, 8, 8), (192, 8, 8), (192, 8, 8)]),
    ("vgg11", (1, 28, 28), [(64, 32, 32), (128, 16, 16), (256, 8, 8), (256, 8, 8), (512, 4, 4), (512, 4, 4),
                            (512, 2, 2), (512, 2, 2)]),
    ("resnet18", (3, 32, 32), [(64, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]),
])
def test_activation_shapes_are_pre_pooling(name, shape, expected):
    net = build_model(name, shape[0], 10, shape[1:])
    with torch.no_grad():
        f = net.features(torch.randn(2, *shape))
    assert [tuple(a.shape[1:]) for a in f.activations] == expected


def test_embedding_sizes():
    assert build_model("lenet", 1, 10, (28, 28)).head[1].in_features == 16 * 5 * 5
    assert build_model("lenet", 3, 10, (32, 32)).head[1].in_features == 16 * 5 * 5
    assert build_model("alexnet", 3, 10, (32, 32)).embedding_dim == 192 * 4 * 4
    assert build_model("alexnet", 1, 10, (28, 28)).embedding_dim == 192 * 4 * 4
    assert build_model("vgg11", 1, 10, (28, 28)).embedding_dim == 512
    assert build_model("lenet", 1, 10, (36, 36)).head[1].in_features == 16 * 6 * 6  # 36→32→16→12→6
    assert build_model("alexnet", 3, 10, (64, 64)).embedding_dim == 192 * 8 * 8
    assert build_model("vgg11", 3, 10, (64, 64)).embedding_dim == 512 * 2 * 2


def test_first_conv_padding_depends_on_28px():
    assert build_model("lenet", 1, 10, (28, 28)).stages[0][0].padding == (2, 2)
    assert build_model("lenet", 1, 10, (32, 32)).stages[0][0].padding == (0, 0)
    assert build_model("alexnet", 1, 10, (28, 28)).stages[0][0].padding == (4, 4)
    assert build_model("alexnet", 3, 10, (32, 32)).stages[0][0].padding == (2, 2)
    assert build_model("vgg11_bn", 1, 10, (28, 28)).stages[0][0].padding == (3, 3)
    assert build_model("vgg11_bn", 3, 10, (32, 32)).stages[0][0].padding == (1, 1)


def test_resnet18_small_image_stem():
    for name in ("resnet18", "resnet18_bn"):
        net = build_model(name, 3, 10, (32, 32))
        assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.padding == (1, 1)
        assert net.conv1.bias is None
        assert isinstance(net.maxpool, nn.Identity)
        assert net.classifier is net.fc
    assert build_model("resnet18", 1, 10, (28, 28)).conv1.in_channels == 1


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_sgd_steps_lower_the_loss(name):
    torch.manual_seed(0)
    net = build_model(name, 1, 10, (28, 28)).train()
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    losses = []
    for _ in range(3):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = F.cross_entropy(net(x), y).item()
    assert final < losses[0], (losses, final)


def test_batchnorm_presence():
    for name in NO_BN:
        assert not has_batchnorm(build_model(name, 1, 10, (28, 28))), name
    for name in ("alexnet_bn", "vgg11_bn", "resnet18_bn"):
        assert has_batchnorm(build_model(name, 1, 10, (28, 28))), name
    for name in ("vgg11", "resnet18"):  # the instance-norm forms use GroupNorm(c, c)
        gns = [m for m in build_model(name, 1, 10, (28, 28)).modules() if isinstance(m, nn.GroupNorm)]
        assert gns and all(m.num_groups == m.num_channels for m in gns)
    assert has_batchnorm(nn.Sequential(nn.BatchNorm1d(3)))


@pytest.mark.parametrize("name", NO_BN)
def test_vmap_over_stacked_copies_matches_separate_models(name):
    torch.manual_seed(0)
    shape = (3, 32, 32)
    nets = [build_model(name, 3, 10, shape[1:]) for _ in range(2)]
    params, buffers = stack_module_state(nets)
    base = build_model(name, 3, 10, shape[1:]).to("meta")
    x = torch.randn(2, *shape)

    def run(p, b, inp):
        return functional_call(base, (p, b), (inp,))

    with torch.no_grad():
        batched = torch.vmap(run, in_dims=(0, 0, None))(params, buffers, x)
        separate = torch.stack([net(x) for net in nets])
    assert batched.shape == (2, 2, 10)
    assert not torch.allclose(separate[0], separate[1])
    assert torch.allclose(batched, separate, atol=1e-5)


@pytest.mark.parametrize(("name", "size"), [("vgg11", (8, 8)), ("vgg11_bn", (16, 16)), ("alexnet", (4, 4)),
                                            ("alexnet_bn", (6, 6)), ("lenet", (8, 8)), ("lenet", (12, 40))])
def test_too_small_image_raises_config_error(name, size):
    with pytest.raises(ConfigError, match="too small") as info:
        build_model(name, 3, 10, size)
    assert f"({size[0]}, {size[1]})" in str(info.value) and name in str(info.value)


def test_smallest_accepted_images_run():
    assert build_model("vgg11", 3, 10, (32, 32)).embedding_dim == 512
    assert build_model("alexnet", 3, 10, (8, 8))(torch.randn(1, 3, 8, 8)).shape == (1, 10)  # 8→4→2→1
    assert build_model("lenet", 1, 10, (16, 16))(torch.randn(1, 1, 16, 16)).shape == (1, 10)  # 12→6→2→1
    assert build_model("resnet18", 3, 10, (8, 8))(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_default_eval_lr():
    for name in ZOO_NAMES + ["convnet", "convnet_bn"]:
        assert default_eval_lr(name) == 0.01
    assert default_eval_lr("ResNet18") == 0.01
    with pytest.raises(UnknownNameError, match="resnet999"):
        default_eval_lr("resnet999")


def test_zoo_names_are_registered():
    for name in ZOO_NAMES:
        assert name in MODELS
