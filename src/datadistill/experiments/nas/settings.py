"""Settings of ``datadistill nas``: :class:`NASSettings` (the CLI flags and :func:`run_nas`'s keyword
arguments, read like every other settings class) and :class:`RealProxySettings`, the budgeted
training on real data each candidate gets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from datadistill.augment.dsa import parse_strategy
from datadistill.errors import ConfigError
from datadistill.evaluation import EvalSettings
from datadistill.evaluation.protocol import EVAL_RECIPE
from datadistill.settings import SettingsBase, check_fields
from datadistill.training import TrainRecipe, holds_recipe, recipe_settings_dict

REAL_PROXY_RECIPE = dataclasses.replace(EVAL_RECIPE, epochs=2, augmentation="none")
"""The evaluation protocol's optimiser and schedule (lr unset: the architecture's default, ÷ 10 at
half the epochs) for 2 epochs, without augmentation (as the whole-data baseline)."""


@holds_recipe("epochs", "lr", "batch_size", "momentum", "weight_decay", "dsa_strategy")
@dataclass(frozen=True)
class RealProxySettings:
    """The budgeted training on real data each candidate gets (one network); the flat keys
    ``epochs``, ``lr``, ``batch_size``, ``momentum``, ``weight_decay``, ``dsa_strategy`` are the
    recipe's (:func:`datadistill.training.holds_recipe`).

    Attributes:
        recipe: the training (default :data:`REAL_PROXY_RECIPE`): ``epochs`` ≥ 1 passes over the
            real training images; ``lr`` None = the architecture's default evaluation lr (0.01),
            divided by 10 at epoch ``epochs // 2`` as in the evaluation protocol; SGD ``batch_size``,
            ``momentum``, ``weight_decay`` (the protocol's); DSA per batch, ``"none"`` (default).
        subset: images per class drawn once (the same for every candidate) from the real training
            split; None = all of it.
    """

    recipe: TrainRecipe = REAL_PROXY_RECIPE
    subset: int | None = None

    def __post_init__(self) -> None:
        def integer(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= 1

        check_fields(self, [
            ("epochs", self.recipe.epochs >= 1, "an integer ≥ 1"),
            ("subset", self.subset is None or integer(self.subset),
             "an integer ≥ 1 (images per class) or unset (the whole real training split)"),
        ])

    def as_dict(self) -> dict[str, Any]:
        """The settings with the recipe's flat keys."""
        return recipe_settings_dict(self)


@dataclass(frozen=True)
class NASSettings(SettingsBase):
    """Everything :func:`~datadistill.experiments.nas.run_nas` needs besides the synthetic set, the
    search space and the output folder (validated on construction, before any data is read).

    Attributes:
        num_eval, epochs, lr, batch_size, dsa_strategy: the synthetic side's evaluation protocol
            (:class:`~datadistill.evaluation.EvalSettings`: K networks per candidate, E epochs, lr
            None = the set's learned lr or the architecture's default, DSA strategy None = the
            dataset's).
        real_epochs, real_subset, real_lr, real_batch_size: the real proxy (:class:`RealProxySettings`):
            epochs over the real training split, or over ``real_subset`` images per class of it;
            lr None = the architecture's default evaluation lr.
        val_size: validation images carved at random (seed ``seed``) from the real training set;
            both rankings use them; the real proxy trains on the rest.
        seed: the search's seed (validation split, real subset, per-candidate seeds).
        workers: worker processes (0 or 1 = in this process, one candidate after another); ignored
            under torchrun, where each rank is one worker (:mod:`datadistill.experiments.workers`).
        device: ``auto``, ``cpu`` or ``cuda`` (every worker uses it).
        data_root: where the set's dataset is read from; None = ``$DATADISTILL_DATA`` or the user cache.

    Raises:
        ConfigError: the first invalid value (a real-proxy one prefixed ``real proxy:``).
    """

    settings_what: ClassVar[str] = "nas"

    num_eval: int = 2
    epochs: int = 300
    lr: float | None = None
    batch_size: int = 256
    dsa_strategy: str | None = None
    real_epochs: int = 2
    real_subset: int | None = None
    real_lr: float | None = None
    real_batch_size: int = 256
    val_size: int = 5000
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    data_root: str | None = None

    def checks(self) -> list[tuple[str, bool, str]]:
        return [("seed", self.seed >= 0, "an integer ≥ 0"),
                ("workers", self.workers >= 0, "an integer ≥ 0"),
                ("val_size", self.val_size >= 1, "an integer ≥ 1")]

    def validate(self) -> None:
        self.real_proxy()
        if self.dsa_strategy is not None:
            parse_strategy(self.dsa_strategy)

    def real_proxy(self) -> RealProxySettings:
        """The real proxy's settings.

        Raises:
            ConfigError: an invalid real-proxy value, the message prefixed ``real proxy:``.
        """
        try:
            return RealProxySettings(epochs=self.real_epochs, subset=self.real_subset, lr=self.real_lr,
                                     batch_size=self.real_batch_size)
        except ConfigError as exc:
            raise ConfigError(f"real proxy: {exc}") from None

    def eval_settings(self, family: str, dsa_default: str = "none") -> EvalSettings:
        """The synthetic side's protocol for the model ``family``; an unset DSA strategy is ``dsa_default``."""
        return EvalSettings(model=family, num_eval=self.num_eval, epochs=self.epochs, lr=self.lr,
                            batch_size=self.batch_size, dsa_strategy=self.dsa_strategy or dsa_default)


__all__ = ["NASSettings", "REAL_PROXY_RECIPE", "RealProxySettings"]
