"""The model registry: one :class:`ModelEntry` per model name, holding everything known about it.

A model file registers its builders with :func:`register_model` (see ``convnet.py`` and ``zoo.py``);
``datadistill.models`` imports those files and offers ``build_model``, ``default_eval_lr`` and
``searchable_models`` on top of :data:`MODELS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from datadistill.registry import Registry

DEFAULT_EVAL_LR = 0.01  # the reference code's lr_net for every architecture

Builder = Callable[..., nn.Module]  # (channels, num_classes, image_size, **kwargs) -> nn.Module


@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes:
        name: the registered name (lower case).
        builder: ``builder(channels, num_classes, image_size, **kwargs) -> nn.Module``, the module
            having ``forward(x) -> logits``, ``embed(x) -> (N, D)`` and ``features(x) -> Features``.
        eval_lr: the default learning rate of evaluation networks of this architecture.
        search: the architecture-search knobs (``datadistill nas``), or None when the model is not a
            searchable family: builder keyword → the values it accepts (a tuple of names) or ``int``
            (any integer ≥ 1), in the order the search grid nests them (outermost first).

    An entry is called like its builder.
    """

    name: str
    builder: Builder
    eval_lr: float = DEFAULT_EVAL_LR
    search: Mapping[str, tuple[str, ...] | type[int]] | None = field(default=None, hash=False)

    def __call__(self, channels: int, num_classes: int, image_size: tuple[int, int], **kwargs) -> nn.Module:
        return self.builder(channels, num_classes, image_size, **kwargs)


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, *, eval_lr: float = DEFAULT_EVAL_LR,
                   search: Mapping[str, Any] | None = None) -> Callable[[Builder], Builder]:
    """Decorator (or ``register_model(name, ...)(builder)``): register ``builder`` as model ``name``
    with its evaluation lr and search knobs; returns the builder unchanged.

    Raises:
        ValueError: ``name`` is already registered.
    """
    def decorate(builder: Builder) -> Builder:
        MODELS.register(name)(ModelEntry(name.lower(), builder, eval_lr, dict(search) if search else None))
        return builder

    return decorate


__all__ = ["DEFAULT_EVAL_LR", "MODELS", "ModelEntry", "register_model"]
