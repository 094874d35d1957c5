"""The ConvNet family used across dataset distillation (Gidaris & Komodakis 2018; DC, Zhao et al. 2021).

Each block is Conv3×3 → norm → activation → pooling(2); a linear classifier follows the last block.

Registered names (evaluation lr 0.01 each): ``convnet`` (searchable by ``datadistill nas``: depth,
width, activation, norm, pooling), ``convnet_bn`` / ``convnet_ln`` / ``convnet_nn`` (batch, layer or
no norm), ``convnet_d1`` … ``convnet_d7`` (fixed depth) and ``convnet_w32`` / ``convnet_w64`` (narrow
ConvNet-3s: CPU-sized experts and students for the MTT family).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from datadistill.errors import ConfigError
from datadistill.models.entries import register_model

NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
ACTIVATIONS = ("relu", "leakyrelu", "sigmoid")
POOLINGS = ("avgpooling", "maxpooling", "none")


@dataclass(frozen=True)
class Features:
    """Intermediate outputs of a forward pass.

    Attributes:
        activations: one tensor per block, the activation output before pooling,
            shape (N, width, H_b, W_b) float32.
        embedding: the flattened output of the last block (after pooling), shape (N, D) float32.
        outputs: one tensor per block, its output as the next block receives it (after pooling),
            (N, ...) float32; None when a model does not give them (DM ``layers=all`` needs them).
    """

    activations: list[torch.Tensor]
    embedding: torch.Tensor
    outputs: list[torch.Tensor] | None = None


class AvgPool2(nn.Module):
    """2×2 average pooling, stride 2.

    For even H and W this is the mean of four strided slices, which on CPU is several times faster
    than ``F.avg_pool2d`` on NCHW tensors of these shapes (reference §9); odd sizes fall back to
    ``F.avg_pool2d`` (floor mode, as ``nn.AvgPool2d(2, 2)``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            return F.avg_pool2d(x, 2, 2)
        return (x[..., ::2, ::2] + x[..., 1::2, ::2] + x[..., ::2, 1::2] + x[..., 1::2, 1::2]) * 0.25


def _norm(kind: str, channels: int, h: int, w: int) -> nn.Module:
    if kind == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels, affine=True)
    if kind == "layernorm":
        return nn.LayerNorm([channels, h, w], elementwise_affine=True)
    if kind == "groupnorm":
        return nn.GroupNorm(4, channels, affine=True)
    return nn.Identity()


DEPTH_BY_SIZE = ((32, 3), (64, 4), (128, 5))  # larger images: depth 7 (the seeds' ConvNet-7 at 224 px)


def default_depth(image_size: tuple[int, int]) -> int:
    """The field's ConvNet depth for an input size: 3 up to 32 px (MNIST, CIFAR), 4 up to 64 px
    (TinyImageNet, ConvNetD4), 5 up to 128 px (ConvNetD5), 7 above (MHIST at 224 px, ConvNet-7)."""
    side = max(image_size)
    return next((d for limit, d in DEPTH_BY_SIZE if side <= limit), 7)


def _activation(kind: str) -> nn.Module:
    return {"relu": nn.ReLU(), "leakyrelu": nn.LeakyReLU(0.01), "sigmoid": nn.Sigmoid()}[kind]


class ConvNet(nn.Module):
    """ConvNet-D with width W (the field's default: D = 3, W = 128, instance norm, ReLU, avg pooling).

    Inputs of 28×28 (MNIST, Fashion-MNIST) use padding 3 in the first convolution, so the maps are
    32 → 16 → 8 → 4 as in the reference code; ConvNet-3 then has 317,706 parameters on MNIST.

    Args:
        channels: input channels C.
        num_classes: output classes.
        image_size: (H, W) of the input in pixels.
        width: channels of every convolution.
        depth: number of blocks (≥ 1); each halves H and W when pooling is on. None = chosen from
            the image size (:func:`default_depth`: 3 for 28–32 px).
        norm: one of ``instancenorm`` (GroupNorm(C, C)), ``batchnorm``, ``layernorm``, ``groupnorm``
            (4 groups), ``none``.
        activation: one of ``relu``, ``leakyrelu``, ``sigmoid``.
        pooling: one of ``avgpooling``, ``maxpooling``, ``none``.

    Raises:
        ConfigError: for an unknown norm, activation or pooling, depth < 1, or an image too small
            for ``depth`` pooling steps.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        *,
        width: int = 128,
        depth: int | None = None,
        norm: str = "instancenorm",
        activation: str = "relu",
        pooling: str = "avgpooling",
    ) -> None:
        super().__init__()
        depth = default_depth(image_size) if depth is None else depth
        for field, value, allowed in (("norm", norm, NORMS), ("activation", activation, ACTIVATIONS),
                                      ("pooling", pooling, POOLINGS)):
            if value not in allowed:
                raise ConfigError(f"unknown ConvNet {field} {value!r}: expected one of {', '.join(allowed)}")
        if depth < 1 or width < 1:
            raise ConfigError(f"ConvNet depth and width must be ≥ 1, got depth={depth}, width={width}")
        h, w = image_size
        first_padding = 3 if (h, w) == (28, 28) else 1
        h, w = h + 2 * (first_padding - 1), w + 2 * (first_padding - 1)
        self.blocks = nn.ModuleList()
        in_ch = channels
        for d in range(depth):
            conv = nn.Conv2d(in_ch, width, kernel_size=3, padding=first_padding if d == 0 else 1)
            layers = [conv, _norm(norm, width, h, w), _activation(activation)]
            self.blocks.append(nn.Sequential(*layers))
            in_ch = width
            if pooling != "none":
                h, w = h // 2, w // 2
                if h < 1 or w < 1:
                    raise ConfigError(
                        f"image size {image_size} is too small for ConvNet depth {depth} with pooling"
                    )
        self.pool: nn.Module = {"avgpooling": AvgPool2(), "maxpooling": nn.MaxPool2d(2, 2),
                                "none": nn.Identity()}[pooling]
        self.embedding_dim = width * h * w
        self.classifier = nn.Linear(self.embedding_dim, num_classes)

    def features(self, x: torch.Tensor) -> Features:
        """Per-block activations (pre-pooling), outputs (pooled) and the flattened embedding, for
        (N, C, H, W) input."""
        activations, outputs = [], []
        for block in self.blocks:
            x = block(x)
            activations.append(x)
            x = self.pool(x)
            outputs.append(x)
        return Features(activations=activations, embedding=x.flatten(1), outputs=outputs)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened output of the last block, shape (N, embedding_dim)."""
        for block in self.blocks:
            x = self.pool(block(x))
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape (N, num_classes), for images (N, C, H, W) normalised per channel."""
        return self.classifier(self.embed(x))


# ------------------------------------------------------------------------------ registered names
SEARCH_KNOBS = {"depth": int, "width": int, "activation": ACTIVATIONS, "norm": NORMS, "pooling": POOLINGS}


def _convnet(**fixed):
    def build(channels: int, num_classes: int, image_size: tuple[int, int], **kwargs) -> nn.Module:
        return ConvNet(channels, num_classes, image_size, **{**fixed, **kwargs})

    return build


register_model("convnet", search=SEARCH_KNOBS)(_convnet())
register_model("convnet_bn")(_convnet(norm="batchnorm"))
register_model("convnet_ln")(_convnet(norm="layernorm"))
register_model("convnet_nn")(_convnet(norm="none"))
for _depth in range(1, 8):
    register_model(f"convnet_d{_depth}")(_convnet(depth=_depth))
for _width in (32, 64):  # narrow ConvNet-3s: CPU-sized experts and students for the MTT family
    register_model(f"convnet_w{_width}")(_convnet(width=_width))
