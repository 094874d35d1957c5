"""The ``Distiller`` interface shared by every method, and the method registry.

A distiller owns a synthetic set of ``ipc`` images per class and improves it one ``step()`` at a time.
Construction stores settings and validates them; :meth:`Distiller.initialise` creates the set;
:meth:`Distiller.fit` runs the loop and fires callbacks. Learned results: :attr:`images`, :attr:`labels`.

A method also states, as class attributes and classmethods, what the layers above it need to know
without importing it (the CLI, the API, ``compare`` and the applications ask these, never the class
hierarchy):

* :attr:`Distiller.learns`: False for the coreset methods, which select real images;
* :attr:`Distiller.needs_experts`: True for the trajectory-matching family (expert trajectories);
* :meth:`Distiller.accepted_inits` (from :data:`INITS` and :attr:`Distiller.extra_inits`) and
  :meth:`Distiller.check_init`;
* :meth:`Distiller.config_from_run`: the method's config dataclass from a run config;
* :meth:`Distiller.run_overrides` / :meth:`Distiller.resolve_run_config`: the run settings the method
  fixes whatever the run asks (coreset methods: their own init, 0 iterations, no time budget).
"""

from __future__ import annotations

import dataclasses
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from datadistill import distributed
from datadistill.augment import DSA
from datadistill.data import DatasetSpec, RealSet
from datadistill.errors import ConfigError, NonFiniteLossError
from datadistill.methods.sharding import ClassSharding
from datadistill.registry import Registry
from datadistill.settings import settings_from
from datadistill.selection import SELECTIONS, FeatureSettings, select_coreset

if TYPE_CHECKING:
    from datadistill.config import DistillConfig

INITS = ("real", "noise", "random", "herding", "k_center")  # accepted by every learning method
SHARED_RUN_SETTINGS = ("lr_img", "momentum_img", "batch_real")  # run-config fields every MethodConfig has

StepCallback = Callable[[int, dict[str, float]], None]


@dataclass
class MethodConfig:
    """Settings shared by the learning methods; each method subclasses it with its own fields.

    Attributes:
        lr_img: learning rate of the synthetic images (η_S).
        momentum_img: SGD momentum of the synthetic images.
        batch_real: real images sampled per class per iteration.
    """

    lr_img: float = 1.0
    momentum_img: float = 0.5
    batch_real: int = 64

    def __post_init__(self) -> None:
        if not (self.lr_img > 0 and math.isfinite(self.lr_img)):
            raise ConfigError(f"lr_img must be a finite number > 0, got {self.lr_img}")
        if not 0 <= self.momentum_img < 1:
            raise ConfigError(f"momentum_img must be in [0, 1), got {self.momentum_img}")
        if self.batch_real < 1:
            raise ConfigError(f"batch_real must be ≥ 1, got {self.batch_real}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "MethodConfig":
        """Build from a mapping, coercing strings (from the CLI) to the field types.

        Raises:
            ConfigError: unknown key (lists the accepted ones) or a value of the wrong type.
        """
        return settings_from(cls, values, where=" for this method")


class Distiller(ClassSharding, ABC):
    """Base class of dataset-distillation methods.

    Args:
        config: the method's :class:`MethodConfig` subclass instance.
        spec: the dataset's spec.
        real: the real training set, indexed by class.
        ipc: images per class in the synthetic set (≥ 1, ≤ the smallest class).
        model: registered model name used for matching.
        dsa: DSA augmentation (``DSA("none")`` to disable).
        device: where the synthetic set and the networks live.
        generator: CPU generator for real-batch sampling and augmentation draws.
        zca_eps: the ZCA eps the real set was whitened with (None = no ZCA); methods that depend on
            the preprocessing (the MTT family's experts) check it.

    Raises:
        ConfigError: IPC out of range.
    """

    name: ClassVar[str]
    learns: ClassVar[bool] = True  # False for the coreset methods, which select real images
    needs_experts: ClassVar[bool] = False  # True when the method reads expert trajectories (MTT family)
    extra_inits: ClassVar[tuple[str, ...]] = ()  # inits this method accepts beyond INITS
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    sharded: ClassVar[bool] = False  # True: a distributed run splits the classes over the ranks

    # -- capabilities (asked by the layers above, without importing the method) -------------------
    @classmethod
    def accepted_inits(cls) -> tuple[str, ...]:
        """The ``init`` values a run of this method accepts: :data:`INITS` and :attr:`extra_inits`
        (a method that selects instead of learning overrides it: its own name)."""
        return (*INITS, *cls.extra_inits)

    @classmethod
    def check_init(cls, init: str) -> None:
        """Raise ConfigError unless ``init`` is one of :meth:`accepted_inits` (check a config resolved
        by :meth:`resolve_run_config`)."""
        if init not in cls.accepted_inits():
            raise ConfigError(f"init = {init!r} is invalid for {cls.name}: expected one of "
                              f"{', '.join(cls.accepted_inits())}")

    @classmethod
    def config_from_run(cls, run: "DistillConfig") -> MethodConfig:
        """The method's :attr:`config_class` built from a run config: the run's ``lr_img``,
        ``momentum_img`` and ``batch_real`` when set, then its ``method_args`` (validated).

        Raises:
            ConfigError: an unknown method argument or a value of the wrong type or range.
        """
        shared = {k: getattr(run, k) for k in SHARED_RUN_SETTINGS if getattr(run, k) is not None}
        return cls.config_class.from_dict({**shared, **run.method_args})

    @classmethod
    def run_overrides(cls) -> dict[str, Any]:
        """Run-config fields this method fixes whatever the run asks ({} for a learning method)."""
        return {}

    @classmethod
    def resolve_run_config(cls, run: "DistillConfig") -> "DistillConfig":
        """``run`` as this method runs it: with :meth:`run_overrides` applied (``run`` itself when
        they change nothing)."""
        changes = {k: v for k, v in cls.run_overrides().items() if getattr(run, k) != v}
        return dataclasses.replace(run, **changes) if changes else run

    def __init__(self, config: MethodConfig, spec: DatasetSpec, real: RealSet, *, ipc: int, model: str,
                 dsa: DSA, device: torch.device, generator: torch.Generator, zca_eps: float | None = None) -> None:
        if ipc < 1 or ipc > real.min_class_count:
            raise ConfigError(f"ipc {ipc} out of range: expected 1 to {real.min_class_count} (smallest class)")
        self.config = config
        self.spec = spec
        self.real = real
        self.ipc = ipc
        self.model = model
        self.dsa = dsa
        self.device = device
        self.generator = generator
        self.zca_eps = zca_eps
        self.iteration = 0
        self.images: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self._setup_sharding()  # this rank's classes (all of them in one process): methods.sharding

    # -- synthetic set -------------------------------------------------------------------------
    def initialise(self, init: str = "real") -> None:
        """Create the synthetic set: ``real`` (random real images of each class), ``noise`` (N(0, 1)
        in normalised space), or a coreset (``random`` = ``real``, ``herding``, ``k_center``; see
        :mod:`datadistill.selection`, features from :attr:`feature_settings`). Labels are
        ``[0]*ipc + [1]*ipc + …``.

        Raises:
            ConfigError: unknown ``init``.
        """
        if init in ("real", "random"):
            images = self.real.sample(self.ipc, self.generator).flatten(0, 1)
        elif init in SELECTIONS:
            images = select_coreset(init, self.real, self.spec, self.ipc, self.device, self.generator,
                                    self.feature_settings())
        elif init == "noise":
            images = torch.randn(self.spec.num_classes * self.ipc, self.spec.channels, *self.spec.image_size,
                                 generator=self.generator)
        else:
            raise ConfigError(f"unknown init {init!r}: expected one of {', '.join(type(self).accepted_inits())}")
        self.images = images.detach().clone().to(self.device).requires_grad_(True)
        self.labels = torch.arange(self.spec.num_classes, device=self.device).repeat_interleave(self.ipc)
        self.iteration = 0
        self._setup_optimiser()

    def feature_settings(self) -> FeatureSettings:
        """The feature network of herding / k-center initialisation (the distillation model, 1 epoch)."""
        return FeatureSettings(model=self.model)

    def _setup_optimiser(self) -> None:
        """Create the optimisers of the learned tensors (called after initialise and load_state_dict):
        by default SGD on the images at ``lr_img`` with ``momentum_img``."""
        self.optimiser = torch.optim.SGD([self.images], lr=self.config.lr_img, momentum=self.config.momentum_img)

    def output(self) -> tuple[torch.Tensor, torch.Tensor, float | None]:
        """What the synthetic-set file holds: images (N, C, H, W), labels ((N,) int64 or (N, K) soft
        logits) and the learned lr (None unless the method learns one), detached."""
        self.require_initialised()
        return self.images.detach(), self.labels, None

    def require_initialised(self) -> None:
        if self.images is None:
            raise RuntimeError("call initialise() first")

    # -- optimisation --------------------------------------------------------------------------
    @abstractmethod
    def step(self) -> dict[str, float]:
        """One optimisation step of the synthetic set; returns scalar metrics (at least ``loss``).

        Raises:
            NonFiniteLossError: the loss is NaN/inf; the synthetic set is left unchanged.
        """

    def fit(self, iterations: int, callbacks: Sequence[StepCallback] = (),
            max_seconds: float | None = None) -> "Distiller":
        """Run ``iterations`` steps, calling every callback with ``(iteration, metrics)`` after each.

        ``max_seconds`` (wall clock) stops the loop after the first step that ends past the budget;
        :attr:`iteration` then tells how many steps ran."""
        self.require_initialised()
        start = time.perf_counter()
        for _ in range(iterations):
            metrics = self.step()
            self.iteration += 1
            for cb in callbacks:
                cb(self.iteration, metrics)
            # the ranks of a distributed run stop together, when any of them is out of time
            if max_seconds is not None and distributed.any_rank(time.perf_counter() - start >= max_seconds)[0]:
                break
        return self

    @staticmethod
    def check_finite(loss: torch.Tensor, iteration: int) -> None:
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(
                f"matching loss is {loss.item()} at iteration {iteration}: lower lr_img or check the input data")

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, as tensors, numbers and nested mappings (written by
        :mod:`datadistill.io.checkpoint`; also loadable with ``torch.load(weights_only=True)``):
        images, labels, iteration, the run's generator (real batches, DSA draws, shuffles), torch's
        default CPU generator (fresh networks are drawn from it), the CUDA generators when CUDA is in
        use, and the optimiser state. A subclass that keeps anything else between steps extends it
        (``state = super().state_dict(); state.update(...)``) and :meth:`load_state_dict`."""
        self.require_initialised()
        state = {"images": self.images.detach().cpu().clone(), "labels": self.labels.cpu().clone(),
                 "iteration": self.iteration, "generator": self.generator.get_state(),
                 "torch_rng": torch.get_rng_state(), "optimiser": self.optimiser_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda_rng"] = list(torch.cuda.get_rng_state_all())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (on a distiller built with the same settings; :meth:`initialise`
        need not be called first)."""
        self.images = state["images"].to(self.device).requires_grad_(True)
        self.labels = state["labels"].to(self.device)
        self.iteration = int(state["iteration"])
        self.generator.set_state(state["generator"])
        if "torch_rng" in state:  # network initialisation draws from torch's default generator
            torch.set_rng_state(state["torch_rng"])
        cuda = state.get("cuda_rng")
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(list(cuda))
        self._setup_optimiser()
        self.load_optimiser_state(state.get("optimiser") or {})

    def optimiser_state(self) -> dict[str, Any]:
        """The optimiser's state; in a sharded run its image-shaped buffers (momentum) gathered from the
        ranks owning each class (:meth:`~datadistill.methods.sharding.ClassSharding.gathered_optimiser_state`)."""
        return self.gathered_optimiser_state(self.optimiser.state_dict())

    def load_optimiser_state(self, state: dict[str, Any]) -> None:
        if state:
            self.optimiser.load_state_dict(state)
            self.drop_others_buffers(self.optimiser)

    # -- batches -------------------------------------------------------------------------------
    def sample_real(self, n: int, every_class: bool = False) -> torch.Tensor:
        """``n`` real images of each of this rank's classes (capped at the smallest class), (G, n, C, H, W)
        on the device; ``every_class``: of every class whatever the sharding. The generator moves the
        same either way."""
        classes = None if every_class or not self.sharding else self.own_classes
        n = min(n, self.real.min_class_count)
        return self.real.sample(n, self.generator, classes).to(self.device, non_blocking=True)

    def synthetic_by_class(self) -> torch.Tensor:
        """This rank's classes' synthetic images (every class in one process) as (G, ipc, C, H, W) (a
        view: gradients reach ``images``)."""
        return self.images[self.own_rows].view(len(self.own_classes), self.ipc, *self.images.shape[1:])

    def matching_batches(self, batch_real: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fresh real batch (G, B, C, H, W) and the synthetic set (G, ipc, C, H, W) of this rank's G
        classes, both augmented by one DSA draw per class (siamese: the same op and parameters for a
        class's real and synthetic images) when DSA is enabled; the draws are made for every class."""
        real, syn = self.sample_real(batch_real), self.synthetic_by_class()
        if self.dsa.enabled:
            transform = self.dsa.sample(self.spec.num_classes, self.generator, self.device)
            if self.sharding:
                transform = transform.subset(self.own_classes)
            real, syn = transform(real), transform(syn)
        return real, syn


METHODS: Registry[type[Distiller]] = Registry("method")


def register_method(name: str):
    """Class decorator: register a :class:`Distiller` subclass under ``name`` and set ``cls.name``."""

    def decorate(cls: type[Distiller]) -> type[Distiller]:
        cls.name = name
        return METHODS.register(name)(cls)

    return decorate
