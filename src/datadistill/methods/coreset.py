"""Coreset baselines as methods: ``random``, ``herding`` and ``k_center`` select ``ipc`` real images
per class instead of learning (algorithms in :mod:`datadistill.selection.coreset`). They run no
iterations; the run's ``init`` is ignored (the selection is the set)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datadistill.errors import ConfigError
from datadistill.methods.base import Distiller, MethodConfig, register_method
from datadistill.selection import FeatureSettings


@dataclass
class CoresetConfig(MethodConfig):
    """Coreset settings (lr_img, momentum_img and batch_real are unused).

    Attributes:
        feature_epochs: epochs of training the feature network on the real set (0 = random network).
        feature_lr: its SGD learning rate.
    """

    feature_epochs: int = 1
    feature_lr: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.feature_epochs < 0:
            raise ConfigError(f"feature_epochs must be ≥ 0, got {self.feature_epochs}")


class CoresetMethod(Distiller):
    """Base of the selection methods: :meth:`initialise` selects, :meth:`step` is never called."""

    learns = False
    config_class = CoresetConfig
    config: CoresetConfig

    @classmethod
    def accepted_inits(cls) -> tuple[str, ...]:
        """Only the selection itself: the set is the method's own choice of real images."""
        return (cls.name,)

    @classmethod
    def run_overrides(cls) -> dict[str, Any]:
        """Init = the method's name, 0 iterations and no time budget: a selection learns nothing, so
        the learning budget is moot (and changing it does not change the run)."""
        return {"init": cls.name, "iterations": 0, "max_seconds": None}

    def initialise(self, init: str = "") -> None:
        super().initialise(self.name)

    def feature_settings(self) -> FeatureSettings:
        return FeatureSettings(model=self.model, epochs=self.config.feature_epochs, lr=self.config.feature_lr)

    def step(self) -> dict[str, float]:
        raise RuntimeError(f"{self.name} selects real images and has no optimisation step")


@register_method("random")
class RandomSelection(CoresetMethod):
    """``ipc`` real images per class, uniformly at random."""


@register_method("herding")
class Herding(CoresetMethod):
    """Herding in the feature network's embedding (:func:`~datadistill.selection.herding_order`)."""


@register_method("k_center")
class KCenter(CoresetMethod):
    """Greedy k-center in the feature network's embedding (:func:`~datadistill.selection.k_center_order`)."""
