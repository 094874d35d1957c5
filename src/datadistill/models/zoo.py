"""The model zoo for 28–32 px inputs: the cross-architecture networks of dataset distillation.

The architectures follow the DC paper (Zhao, Mopuri & Bilen, ICLR 2021) and its reference code
(VICO-UoE DatasetCondensation, ``networks.py`` / ``utils.get_network``), which the whole field reuses
for cross-architecture evaluation. ResNet-18 is torchvision's ``ResNet(BasicBlock, [2, 2, 2, 2])``
with the small-image stem. Every model takes images (N, C, H, W) float32 normalised per channel and
provides ``forward(x) -> (N, classes)`` logits, ``embed(x) -> (N, embedding_dim)`` (the input of the
final Linear, ``classifier``) and ``features(x) -> Features``.

| name           | architecture                                      | params MNIST | params CIFAR-10 | eval lr |
|----------------|---------------------------------------------------|-------------:|----------------:|--------:|
| ``mlp``        | 3-layer MLP, hidden 128 (width/depth args)        |      118,282 |         411,146 |    0.01 |
| ``lenet``      | LeNet-5 (ReLU, max pooling)                       |       61,706 |          62,006 |    0.01 |
| ``alexnet``    | 5-conv AlexNet for small images, no norm          |    1,865,802 |       1,872,202 |    0.01 |
| ``alexnet_bn`` | the same with BatchNorm after each conv           |    1,867,722 |       1,874,122 |    0.01 |
| ``vgg11``      | VGG-11, instance norm (the field's "VGG11")       |    9,229,962 |       9,231,114 |    0.01 |
| ``vgg11_bn``   | VGG-11 with BatchNorm                             |    9,229,962 |       9,231,114 |    0.01 |
| ``resnet18``   | ResNet-18, instance norm (the field's "ResNet18") |   11,172,810 |      11,173,962 |    0.01 |
| ``resnet18_bn``| ResNet-18 with BatchNorm                          |   11,172,810 |      11,173,962 |    0.01 |

The eval lr column is each model's entry in ``datadistill.models.MODELS`` (its ``eval_lr``), read by
``datadistill.models.default_eval_lr``: the reference code trains every evaluation network with
``lr_net = 0.01`` whatever the architecture; a builder that needs another rate declares it with
``@register_model(name, eval_lr=...)``. ``mlp`` is also an architecture-search family (``search``:
depth and width).

Instance norm is ``nn.GroupNorm(c, c, affine=True)``, as in the ConvNet (reference §2). 28×28 inputs
get extra padding in the first convolution (LeNet 2, AlexNet 4, VGG 3) so the maps match 32 px
inputs, as in the reference code (which keys this on ``channel == 1``; here it is keyed on 28×28).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from datadistill.errors import ConfigError
from datadistill.models.convnet import Features
from datadistill.models.entries import register_model


def has_batchnorm(net: nn.Module) -> bool:
    """True when any submodule of ``net`` is a BatchNorm (``nn.modules.batchnorm._BatchNorm``)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def _instance_norm(c: int) -> nn.Module:
    return nn.GroupNorm(c, c, affine=True)


def _norm(kind: str, c: int) -> nn.Module:
    return {"instancenorm": _instance_norm, "batchnorm": nn.BatchNorm2d, "none": lambda _: nn.Identity()}[kind](c)


class _SizeTracker:
    """Follows (H, W) through convolutions and poolings; raises ConfigError when a map vanishes."""

    def __init__(self, arch: str, image_size: tuple[int, int]) -> None:
        self.arch, self.image_size = arch, tuple(image_size)
        self.h, self.w = self.image_size

    def _check(self) -> None:
        if self.h < 1 or self.w < 1:
            raise ConfigError(f"image size {self.image_size} is too small for {self.arch}: "
                              f"a feature map would shrink below 1×1")

    def conv(self, kernel: int, padding: int) -> None:
        self.h, self.w = self.h + 2 * padding - kernel + 1, self.w + 2 * padding - kernel + 1
        self._check()

    def pool(self) -> None:
        self.h, self.w = self.h // 2, self.w // 2
        self._check()


class StagedNet(nn.Module):
    """A feed-forward network given as stages (each ending in its activation), one pooling per stage,
    a ``head`` from the last pooled map to the embedding, and a Linear ``classifier``.

    ``features`` returns each stage's activation output before its pooling (2-D activations, the MLP
    hidden layers, reshaped to (N, D, 1, 1)) and its output after the pooling, as the next stage
    receives it.
    """

    def __init__(self, stages: Sequence[nn.Module], pools: Sequence[nn.Module], head: nn.Module,
                 embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.pools = nn.ModuleList(pools)
        self.head = head
        self.embedding_dim = embedding_dim
        self.classifier = nn.Linear(embedding_dim, num_classes)

    def features(self, x: torch.Tensor) -> Features:
        """Per-stage activations (pre-pooling, 4-D), outputs (after pooling) and the embedding, for
        (N, C, H, W) input."""
        activations, outputs = [], []
        for stage, pool in zip(self.stages, self.pools):
            x = stage(x)
            activations.append(x if x.dim() == 4 else x[:, :, None, None])
            x = pool(x)
            outputs.append(x)
        return Features(activations=activations, embedding=self.head(x), outputs=outputs)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the classifier, shape (N, embedding_dim)."""
        for stage, pool in zip(self.stages, self.pools):
            x = pool(stage(x))
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_classes) for images (N, C, H, W) float32 normalised per channel."""
        return self.classifier(self.embed(x))


@register_model("mlp", search={"depth": int, "width": int})
def mlp(channels: int, num_classes: int, image_size: tuple[int, int], *, width: int = 128,
        depth: int = 2) -> StagedNet:
    """MLP (DC / VICO ``MLP``): Flatten → Linear(C·H·W, W) → ReLU → (depth − 1) × [Linear(W, W) →
    ReLU] → Linear(W, classes). The defaults (W = 128, 2 hidden layers) are the reference MLP;
    ``width``/``depth`` size it for architecture search. ``features`` gives the ``depth`` hidden
    activations as (N, W, 1, 1).

    Args:
        width: W, units of every hidden layer (≥ 1).
        depth: hidden layers (≥ 1).

    Raises:
        ConfigError: ``width`` or ``depth`` is not an integer ≥ 1.
    """
    for name, value in (("width", width), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"mlp {name} = {value!r} is invalid: expected an integer ≥ 1")
    h, w = image_size
    stages = [nn.Sequential(nn.Flatten(), nn.Linear(channels * h * w, width), nn.ReLU())]
    stages += [nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth - 1)]
    return StagedNet(stages, [nn.Identity() for _ in stages], nn.Identity(), width, num_classes)


@register_model("lenet")
def lenet(channels: int, num_classes: int, image_size: tuple[int, int]) -> StagedNet:
    """LeNet (DC / VICO ``LeNet``): Conv(C, 6, 5; padding 2 for 28×28 else 0) → ReLU → MaxPool2 →
    Conv(6, 16, 5) → ReLU → MaxPool2 → Linear(16·h·w, 120) → ReLU → Linear(120, 84) → ReLU →
    Linear(84, classes); h = w = 5 for 28 and 32 px. The embedding is the 84-d hidden layer.

    Raises:
        ConfigError: for an image too small for two 5×5 convolutions and two poolings.
    """
    size = _SizeTracker("lenet", image_size)
    pad = 2 if tuple(image_size) == (28, 28) else 0
    for kernel, padding in ((5, pad), (5, 0)):
        size.conv(kernel, padding)
        size.pool()
    stages = [nn.Sequential(nn.Conv2d(channels, 6, 5, padding=pad), nn.ReLU()),
              nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU())]
    head = nn.Sequential(nn.Flatten(), nn.Linear(16 * size.h * size.w, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
    return StagedNet(stages, [nn.MaxPool2d(2, 2), nn.MaxPool2d(2, 2)], head, 84, num_classes)


def _alexnet(channels: int, num_classes: int, image_size: tuple[int, int], norm: str) -> StagedNet:
    """AlexNet for small images (DC / VICO ``AlexNet``; ``alexnet_bn`` adds BatchNorm2d after each
    conv): Conv(C, 128, 5; padding 4 for 28×28 else 2) → MaxPool2 → Conv(128, 192, 5, p2) → MaxPool2 →
    Conv(192, 256, 3, p1) → Conv(256, 192, 3, p1) → Conv(192, 192, 3, p1) → MaxPool2 →
    Linear(192·h·w, classes), every conv followed by [norm →] ReLU; h = w = 4 for 28 and 32 px.

    Raises:
        ConfigError: for an image too small for three poolings (e.g. 4×4).
    """
    name = "alexnet" if norm == "none" else "alexnet_bn"
    size = _SizeTracker(name, image_size)
    first_pad = 4 if tuple(image_size) == (28, 28) else 2
    # (out channels, kernel, padding, pools after)
    spec = [(128, 5, first_pad, True), (192, 5, 2, True), (256, 3, 1, False), (192, 3, 1, False), (192, 3, 1, True)]
    stages, pools, in_ch = [], [], channels
    for out_ch, kernel, pad, pooled in spec:
        stages.append(nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, padding=pad), _norm(norm, out_ch), nn.ReLU()))
        pools.append(nn.MaxPool2d(2, 2) if pooled else nn.Identity())
        size.conv(kernel, pad)
        if pooled:
            size.pool()
        in_ch = out_ch
    return StagedNet(stages, pools, nn.Flatten(), 192 * size.h * size.w, num_classes)


VGG11_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def _vgg11(channels: int, num_classes: int, image_size: tuple[int, int], norm: str) -> StagedNet:
    """VGG-11 (DC / VICO ``VGG11`` with instance norm, ``VGG11BN`` with BatchNorm): for each entry of
    :data:`VGG11_CFG` a Conv3×3(padding 1; the first conv padding 3 for 28×28, so maps run
    32 → 16 → 8 → 4 → 2 → 1) → norm → ReLU, ``M`` a MaxPool2; then Linear(512·h·w, classes).

    Both norms are built here: torchvision's ``vgg.make_layers`` offers only BatchNorm or no norm,
    hard-codes 3 input channels and padding 1 (so MNIST would need its first conv swapped) and returns
    one flat Sequential that ``features`` would have to re-split into stages; one local builder for
    both norms is simpler. ``vgg11_bn`` has the same layers and parameter count as ``make_layers``.

    Raises:
        ConfigError: for an image too small for five poolings (e.g. 8×8).
    """
    name = "vgg11" if norm == "instancenorm" else "vgg11_bn"
    size = _SizeTracker(name, image_size)
    stages, pools, in_ch = [], [], channels
    for i, v in enumerate(VGG11_CFG):
        if v == "M":
            pools[-1] = nn.MaxPool2d(2, 2)
            size.pool()
            continue
        pad = 3 if i == 0 and tuple(image_size) == (28, 28) else 1
        stages.append(nn.Sequential(nn.Conv2d(in_ch, v, 3, padding=pad), _norm(norm, v), nn.ReLU()))
        pools.append(nn.Identity())
        size.conv(3, pad)
        in_ch = v
    return StagedNet(stages, pools, nn.Flatten(), in_ch * size.h * size.w, num_classes)


def _variant(builder, **fixed):
    def build(channels: int, num_classes: int, image_size: tuple[int, int]) -> nn.Module:
        return builder(channels, num_classes, tuple(image_size), **fixed)

    build.__doc__ = builder.__doc__
    return build


register_model("alexnet")(_variant(_alexnet, norm="none"))
register_model("alexnet_bn")(_variant(_alexnet, norm="batchnorm"))
register_model("vgg11")(_variant(_vgg11, norm="instancenorm"))
register_model("vgg11_bn")(_variant(_vgg11, norm="batchnorm"))
def _resnet18(channels: int, num_classes: int, image_size: tuple[int, int], norm_layer) -> nn.Module:
    from datadistill.models.resnet import ResNet18  # torchvision is imported only when a ResNet is built

    return ResNet18(channels, num_classes, norm_layer)


register_model("resnet18")(lambda channels, num_classes, image_size: _resnet18(channels, num_classes, image_size, _instance_norm))
register_model("resnet18_bn")(lambda channels, num_classes, image_size: _resnet18(channels, num_classes, image_size, nn.BatchNorm2d))
