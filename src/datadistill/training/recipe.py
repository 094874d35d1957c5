"""The SGD training recipe: how a network is trained, in one frozen value.

Every trainer of the package (the evaluation protocol, the whole-data baseline, expert trajectories,
difficulty scoring, the coreset feature network, the NAS real proxy, FedAvg clients) trains with
mini-batch SGD described by the same seven numbers; each settings class holds one
:class:`TrainRecipe` instead of its own copy of them, and :func:`datadistill.training.fit_network`
runs it.

Settings classes keep their flat user-facing keys (``epochs``, ``lr``, ``batch_size``, ``momentum``,
``weight_decay``, ``dsa_strategy``: the YAML, CLI and keyword names): :func:`holds_recipe` maps them
into the recipe when the settings are built, reads them back as properties, and
:func:`recipe_settings_dict` writes them back flat, so files and reports keep their keys.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from dataclasses import dataclass
from typing import Any, get_type_hints

from datadistill.augment import make_augmentation
from datadistill.errors import ConfigError

SCHEDULES = ("step_half", "constant")
"""``step_half``: the evaluation protocol's lr, divided by 10 once at epoch ``epochs // 2``
(reference §2; unchanged when ``epochs < 2``); ``constant``: the same lr every epoch."""

NO_AUGMENTATION = "none"

FLAT_KEYS = {"epochs": "epochs", "lr": "lr", "batch_size": "batch_size", "momentum": "momentum",
             "weight_decay": "weight_decay", "dsa_strategy": "augmentation"}
"""User-facing key (YAML, CLI, keyword argument of a settings class) → :class:`TrainRecipe` field."""


def lr_at(epoch: int, epochs: int, lr: float, schedule: str = "step_half") -> float:
    """The learning rate of 0-based ``epoch`` of ``epochs`` under ``schedule`` (:data:`SCHEDULES`).

    ``step_half``: ``lr`` for epochs ``0 … epochs // 2 − 1``, ``lr · 0.1`` from ``epochs // 2`` on
    (``lr`` throughout when ``epochs // 2`` is 0); ``constant``: ``lr``.

    Example:
        >>> [lr_at(e, 4, 0.2) for e in range(4)]
        [0.2, 0.2, 0.020000000000000004, 0.020000000000000004]
    """
    if schedule == "constant":
        return lr
    return lr * 0.1 if epoch >= epochs // 2 and epochs // 2 > 0 else lr


def _integer(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class TrainRecipe:
    """Mini-batch SGD training of one network.

    Attributes:
        epochs: passes over the training data (≥ 0; a settings class may ask for ≥ 1).
        lr: initial learning rate (> 0, finite); None = not decided yet (a settings class resolves it,
            e.g. to the architecture's default evaluation lr or a synthetic set's learned lr, with
            :meth:`resolved` before training).
        batch_size: mini-batch size (≥ 1).
        momentum: SGD momentum, in [0, 1).
        weight_decay: SGD weight decay (L2 on every parameter), ≥ 0.
        schedule: the lr schedule, one of :data:`SCHEDULES`.
        augmentation: the augmentation of every training batch: a DSA strategy (``"color_crop_…"``),
            DC's evaluation augmentation (``"dc:crop_scale_rotate"``, :mod:`datadistill.augment.dc`),
            ``"none"`` for none (:func:`datadistill.augment.make_augmentation`); None = the dataset's
            default DSA strategy, resolved by the caller.

    Raises:
        ConfigError: a value out of range; the message names the field and what is accepted.
    """

    epochs: int
    lr: float | None
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step_half"
    augmentation: str | None = NO_AUGMENTATION

    def __post_init__(self) -> None:
        checks = [
            ("epochs", _integer(self.epochs) and self.epochs >= 0, "an integer ≥ 0"),
            ("lr", self.lr is None or (_real(self.lr) and self.lr > 0), "a finite number > 0 (or unset)"),
            ("batch_size", _integer(self.batch_size) and self.batch_size >= 1, "an integer ≥ 1"),
            ("momentum", _real(self.momentum) and 0 <= self.momentum < 1, "a number in [0, 1)"),
            ("weight_decay", _real(self.weight_decay) and self.weight_decay >= 0, "a finite number ≥ 0"),
            ("schedule", self.schedule in SCHEDULES, "one of " + ", ".join(SCHEDULES)),
            ("augmentation", self.augmentation is None or isinstance(self.augmentation, str),
             "a DSA strategy such as 'color_crop_cutout_scale_rotate', DC's such as 'dc:crop_scale_rotate', "
             "'none', or unset"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"{name} = {getattr(self, name)!r} is invalid: expected {expected}")
        if self.augmentation is not None:
            make_augmentation(self.augmentation)  # ConfigError naming the unknown operation

    def lr_at(self, epoch: int) -> float:
        """The learning rate of 0-based ``epoch`` (:func:`lr_at` with this recipe's schedule)."""
        if self.lr is None:
            raise ConfigError("the recipe's lr is unset: resolve it first (TrainRecipe.resolved)")
        return lr_at(epoch, self.epochs, self.lr, self.schedule)

    def resolved(self, lr: float | None = None, augmentation: str | None = None) -> "TrainRecipe":
        """This recipe with an unset ``lr`` / ``augmentation`` filled in by the given values
        (the ones already set are kept)."""
        return dataclasses.replace(self, lr=self.lr if self.lr is not None else lr,
                                   augmentation=self.augmentation if self.augmentation is not None else augmentation)

    @property
    def is_resolved(self) -> bool:
        """True when ``lr`` and ``augmentation`` are both set (the recipe can train)."""
        return self.lr is not None and self.augmentation is not None

    def flat(self, keys: tuple[str, ...] = tuple(FLAT_KEYS)) -> dict[str, Any]:
        """The user-facing keys ``keys`` (of :data:`FLAT_KEYS`) and their values, in that order."""
        return {k: getattr(self, FLAT_KEYS[k]) for k in keys}


def holds_recipe(*keys: str):
    """Class decorator for a settings dataclass with a field ``recipe: TrainRecipe`` (whose default
    is the settings' own recipe): the flat keys ``keys`` (of :data:`FLAT_KEYS`) become

    * keyword arguments of the constructor (and of :func:`dataclasses.replace`), applied on top of
      the ``recipe`` argument or the default recipe: ``EvalSettings(epochs=300, lr=0.01)``;
    * read-only properties: ``settings.epochs`` is ``settings.recipe.epochs``
      (``settings.dsa_strategy`` is ``settings.recipe.augmentation``);
    * entries of :func:`recipe_settings_dict`, in the recipe field's place.

    Apply it above ``@dataclass``.
    """
    unknown = [k for k in keys if k not in FLAT_KEYS]
    if unknown:
        raise ValueError(f"unknown recipe key {unknown[0]!r}: expected keys of FLAT_KEYS")

    def wrap(cls):
        recipe_field = cls.__dataclass_fields__["recipe"]
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            flat = {k: kwargs.pop(k) for k in keys if k in kwargs}
            if flat:
                base = kwargs.get("recipe", recipe_field.default)
                kwargs["recipe"] = dataclasses.replace(base, **{FLAT_KEYS[k]: v for k, v in flat.items()})
            init(self, *args, **kwargs)

        cls.__init__ = __init__
        cls.settings_type_hints = classmethod(flat_type_hints)  # read by datadistill.settings
        for key in keys:
            setattr(cls, key, property(lambda self, name=FLAT_KEYS[key]: getattr(self.recipe, name),
                                       doc=f"``recipe.{FLAT_KEYS[key]}``"))
        cls._recipe_keys = keys
        return cls

    return wrap


def recipe_settings_dict(settings: Any) -> dict[str, Any]:
    """``dataclasses.asdict(settings)`` with the ``recipe`` entry replaced, in its place, by the flat
    keys of a :func:`holds_recipe` class: the dictionary the settings had when they held the
    fields themselves (metadata, manifests and reports keep their keys)."""
    out: dict[str, Any] = {}
    for name, value in dataclasses.asdict(settings).items():
        if name == "recipe":
            out.update(settings.recipe.flat(type(settings)._recipe_keys))
        else:
            out[name] = value
    return out


def flat_type_hints(cls: type) -> dict[str, Any]:
    """The user-facing keys of a settings dataclass and their types (for coercion of YAML and CLI
    values and unknown-key checks): its fields' type hints, with a :func:`holds_recipe` class's
    ``recipe`` replaced, in its place, by its flat keys typed as the recipe's fields."""
    hints = get_type_hints(cls)
    keys = getattr(cls, "_recipe_keys", None)
    if keys is None:
        return hints
    recipe_hints = get_type_hints(TrainRecipe)
    out: dict[str, Any] = {}
    for name, typ in hints.items():
        if name == "recipe":
            out.update({k: recipe_hints[FLAT_KEYS[k]] for k in keys})
        else:
            out[name] = typ
    return out


__all__ = ["FLAT_KEYS", "NO_AUGMENTATION", "SCHEDULES", "TrainRecipe", "flat_type_hints", "holds_recipe", "lr_at",
           "recipe_settings_dict"]
