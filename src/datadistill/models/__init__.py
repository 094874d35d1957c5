"""Model registry: ``build_model(name, channels, num_classes, image_size)``.

Every registered builder takes ``(channels, num_classes, image_size, **kwargs)`` and returns an
``nn.Module`` with ``forward(x) -> logits``, ``embed(x) -> (N, D)`` and ``features(x) -> Features``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from datadistill.models.convnet import ConvNet, Features
from datadistill.models.zoo import DEFAULT_EVAL_LR, EVAL_LR, ZOO, has_batchnorm
from datadistill.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def _convnet(**fixed):
    def build(channels: int, num_classes: int, image_size: tuple[int, int], **kwargs) -> nn.Module:
        return ConvNet(channels, num_classes, image_size, **{**fixed, **kwargs})

    return build


MODELS.register("convnet")(_convnet())
MODELS.register("convnet_bn")(_convnet(norm="batchnorm"))
MODELS.register("convnet_ln")(_convnet(norm="layernorm"))
MODELS.register("convnet_nn")(_convnet(norm="none"))
for _depth in range(1, 8):
    MODELS.register(f"convnet_d{_depth}")(_convnet(depth=_depth))
for _width in (32, 64):  # narrow ConvNet-3s: CPU-sized experts and students for the MTT family
    MODELS.register(f"convnet_w{_width}")(_convnet(width=_width))
for _name, _builder in ZOO.items():  # mlp, lenet, alexnet(_bn), vgg11(_bn), resnet18(_bn): see zoo.py
    MODELS.register(_name)(_builder)


def build_model(name: str, channels: int, num_classes: int, image_size: tuple[int, int], **kwargs) -> nn.Module:
    """Build a freshly initialised model (weights from torch's default generator).

    Raises:
        UnknownNameError: for an unregistered name (the message lists the registered ones).
    """
    return MODELS.get(name)(channels, num_classes, tuple(image_size), **kwargs)


def list_models() -> list[str]:
    return MODELS.names()


def default_eval_lr(name: str) -> float:
    """The default learning rate for training evaluation networks of architecture ``name``.

    The reference code uses 0.01 for every architecture; a builder may declare its own rate in
    ``datadistill.models.zoo.EVAL_LR`` (table in that module's docstring). Registered names without
    an entry get ``DEFAULT_EVAL_LR`` (0.01).

    Raises:
        UnknownNameError: for an unregistered name.
    """
    MODELS.get(name)
    return EVAL_LR.get(name.lower(), DEFAULT_EVAL_LR)


__all__ = ["MODELS", "ConvNet", "Features", "build_model", "default_eval_lr", "has_batchnorm", "list_models"]
