"""Model registry: ``build_model(name, channels, num_classes, image_size)``.

Every model has one entry in :data:`MODELS` (:class:`~datadistill.models.entries.ModelEntry`):
its builder, its evaluation lr and, for the searchable families, its architecture-search knobs.
Each model file registers its own (``convnet.py``: the ConvNet family; ``zoo.py``: mlp, lenet,
alexnet(_bn), vgg11(_bn), resnet18(_bn)); every module of this package is imported with it, so a new
model is one file with a ``@register_model`` builder. Every builder takes ``(channels, num_classes, image_size,
**kwargs)`` and returns an ``nn.Module`` with ``forward(x) -> logits``, ``embed(x) -> (N, D)`` and
``features(x) -> Features``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from datadistill.models.entries import DEFAULT_EVAL_LR, MODELS, ModelEntry, register_model
from datadistill.models.convnet import ConvNet, Features
from datadistill.models.zoo import has_batchnorm
from datadistill.registry import import_submodules

import_submodules(__name__, __path__)  # every model file registers its models: a new model is one file


def build_model(name: str, channels: int, num_classes: int, image_size: tuple[int, int], **kwargs) -> nn.Module:
    """Build a freshly initialised model (weights from torch's default generator).

    Raises:
        UnknownNameError: for an unregistered name (the message lists the registered ones).
    """
    return MODELS.get(name)(channels, num_classes, tuple(image_size), **kwargs)


def list_models() -> list[str]:
    return MODELS.names()


def default_eval_lr(name: str) -> float:
    """The default learning rate for training evaluation networks of architecture ``name``: its
    entry's ``eval_lr`` (0.01 for every built-in model, as the reference code; table in
    ``datadistill.models.zoo``'s docstring). A bare builder put in the registry without an entry
    (tests do) gets ``DEFAULT_EVAL_LR``.

    Raises:
        UnknownNameError: for an unregistered name.
    """
    return getattr(MODELS.get(name), "eval_lr", DEFAULT_EVAL_LR)


def searchable_models() -> dict[str, Mapping[str, Any]]:
    """The architecture-search families, by name: each one's search knobs (builder keyword → a tuple
    of accepted names, or ``int`` for integers ≥ 1, in grid order)."""
    out = {}
    for name in MODELS.names():
        search = getattr(MODELS.get(name), "search", None)
        if search:
            out[name] = search
    return out


__all__ = ["DEFAULT_EVAL_LR", "MODELS", "ConvNet", "Features", "ModelEntry", "build_model", "default_eval_lr",
           "has_batchnorm", "list_models", "register_model", "searchable_models"]
