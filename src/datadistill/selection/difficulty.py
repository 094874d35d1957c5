"""Per-sample difficulty scores and per-class easy → hard orderings (PAD's data scheduling, data pruning).

Four scores, all **higher = harder**:

* ``el2n`` (Paul, Ganguli & Dziugaite, "Deep Learning on a Data Diet", NeurIPS 2021, eq. 2):
  ``EL2N(x, y) = ‖softmax(f(x)) − onehot(y)‖₂``, averaged over networks trained a few epochs.
* ``grand`` (same paper, eq. 1): ``GraNd(x, y) = ‖∇_θ CE(f(x), y)‖₂`` over all parameters θ,
  averaged over networks (``epochs = 0`` gives GraNd at initialisation, as in the paper).
* ``forgetting`` (Toneva et al., "An Empirical Study of Example Forgetting during Deep Neural
  Network Learning", ICLR 2019): the number of correct → incorrect transitions of a sample's
  classification over one training run; samples never classified correctly get ``epochs + 1``
  (more than any learned sample can reach; Toneva et al. count them as forgotten infinitely often).
* ``uncertainty`` (least confidence, as DeepCore's ``Uncertainty(selection_method="LeastConfidence")``,
  Guo, Zhao & Bai, DEXA 2022): ``1 − max_k softmax(f(x))_k``, averaged over networks.

PAD (Li et al., 2024) ranks each class's samples easy → hard by such a score and schedules the
data its expert networks see; used on their own, the scores select a coreset (keep the hardest
or the easiest ``ipc`` images of each class, :meth:`DifficultyScores.select`).

Scoring networks are trained with SGD (momentum, weight decay) on the DSA-augmented training set;
network k is initialised after ``torch.manual_seed(seed + k)`` and shuffled/augmented with
``make_generator(seed + k)``, so scores repeat exactly on the same machine and torch build.
EL2N, GraNd and uncertainty are then measured in eval mode on the un-augmented images.

Files: :func:`save_scores` writes one ``.safetensors`` file with tensors ``values`` (N,) float32
and ``labels`` (N,) int64 and a JSON object under the header metadata key ``datadistill``
(``format = "datadistill.difficulty_scores"``, ``format_version = 1``, ``score``, ``dataset``,
``num_images``, ``num_classes``, ``settings``, ``package_version``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from datadistill.data import DatasetSpec, LabelledImages, iter_batches
from datadistill.errors import ConfigError, ScoresFileError
from datadistill.models import MODELS, build_model
from datadistill.runtime import make_generator
from datadistill.selection.scores import el2n, forgetting_events, grand, uncertainty  # noqa: F401  (re-exported)
from datadistill.training import FitState, Hooks, TrainRecipe, fit_network, holds_recipe, recipe_settings_dict
from datadistill.units import run_units

SCORES = ("el2n", "grand", "forgetting", "uncertainty")
KEEP = ("hardest", "easiest")
FORMAT = "datadistill.difficulty_scores"
FORMAT_VERSION = 1

log = logging.getLogger("datadistill")
ProgressCallback = Callable[[int, float], None]


# --------------------------------------------------------------------------- settings and results
SCORE_RECIPE = TrainRecipe(epochs=2, lr=0.01, batch_size=256, momentum=0.9, weight_decay=5e-4, schedule="constant",
                           augmentation=None)
"""Scoring networks: a few epochs of SGD (momentum 0.9, weight decay 5e-4, constant lr 0.01) on the
training set with the dataset's DSA strategy."""


@holds_recipe("epochs", "lr", "momentum", "weight_decay", "batch_size", "dsa_strategy")
@dataclass(frozen=True)
class ScoreSettings:
    """How the scoring networks are built and trained; the flat keys ``epochs``, ``lr``,
    ``momentum``, ``weight_decay``, ``batch_size``, ``dsa_strategy`` are the recipe's
    (:func:`datadistill.training.holds_recipe`).

    Attributes:
        model: registered model name (:func:`datadistill.models.build_model`).
        num_networks: networks whose scores are averaged (≥ 1).
        recipe: the training of every network (default :data:`SCORE_RECIPE`): ``epochs`` ≥ 0 before
            scoring (``forgetting`` needs ≥ 1, and records one presentation per epoch; Paul et al.
            score after a few epochs, early training); SGD ``lr``, ``momentum``, ``weight_decay``;
            ``batch_size`` of training and scoring; DSA of the training batches, None = the
            dataset's ``spec.dsa_strategy``, ``"none"`` = no augmentation.
        seed: network k uses ``seed + k`` (≥ 0).
        grad_chunk: samples per vmapped per-sample-gradient batch of GraNd (≥ 1; memory only).

    Raises:
        ConfigError / UnknownNameError: a value out of range (the message names the field and what
            is accepted) or an unregistered model.
    """

    model: str = "convnet"
    num_networks: int = 3
    recipe: TrainRecipe = SCORE_RECIPE
    seed: int = 0
    grad_chunk: int = 64

    def __post_init__(self) -> None:
        MODELS.get(self.model)

        def integer(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        checks = (
            ("num_networks", self.num_networks, integer(self.num_networks) and self.num_networks >= 1,
             "an integer ≥ 1"),
            ("lr", self.recipe.lr, self.recipe.lr is not None, "a number > 0"),
            ("seed", self.seed, integer(self.seed) and self.seed >= 0, "an integer ≥ 0"),
            ("grad_chunk", self.grad_chunk, integer(self.grad_chunk) and self.grad_chunk >= 1, "an integer ≥ 1"),
        )
        for name, value, ok, accepted in checks:
            if not ok:
                raise ConfigError(f"{name} = {value!r} is invalid: expected {accepted}")

    def as_dict(self) -> dict[str, Any]:
        """The settings with the recipe's flat keys."""
        return recipe_settings_dict(self)


def check_score(score: str) -> str:
    """``score`` if it is one of :data:`SCORES`, else ConfigError listing them."""
    if score not in SCORES:
        raise ConfigError(f"unknown difficulty score {score!r}: expected one of {', '.join(SCORES)}")
    return score


@dataclass
class DifficultyScores:
    """Per-sample difficulty scores of a training set (higher = harder).

    Attributes:
        score: one of :data:`SCORES`.
        values: (N,) float32 CPU, the score of sample i of the set.
        labels: (N,) int64 CPU, its class.
        metadata: JSON-able: dataset, score, settings, num_images, … (see the module docstring).

    Raises:
        ValueError: values and labels not 1-D of the same length.
    """

    score: str
    values: torch.Tensor
    labels: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = self.values.detach().float().cpu()
        self.labels = self.labels.detach().long().cpu()
        if self.values.dim() != 1 or self.labels.dim() != 1 or self.values.shape != self.labels.shape:
            raise ValueError(f"values {tuple(self.values.shape)} and labels {tuple(self.labels.shape)} "
                             "must be 1-D of the same length")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def order_by_class(self, num_classes: int) -> list[torch.Tensor]:
        """Per class, the indices (into the set) of its samples from easiest to hardest.

        Ascending score, stable: ties keep the lower index first.

        Returns:
            ``num_classes`` (N_c,) int64 tensors (empty for a class without samples).

        Raises:
            ConfigError: a label outside [0, num_classes).
        """
        if len(self) and not (0 <= int(self.labels.min()) and int(self.labels.max()) < num_classes):
            raise ConfigError(f"labels range {int(self.labels.min())}..{int(self.labels.max())} does not fit "
                              f"num_classes={num_classes}")
        orders = []
        for c in range(num_classes):
            idx = torch.nonzero(self.labels == c).flatten()
            orders.append(idx[torch.sort(self.values[idx], stable=True).indices])
        return orders

    def select(self, ipc: int, num_classes: int, keep: str = "hardest") -> torch.Tensor:
        """``ipc`` indices per class: the hardest (last ``ipc`` of the easy → hard order) or the
        easiest (first ``ipc``).

        Returns:
            (num_classes · ipc,) int64, class-major (class 0 first); within a class in easy → hard order.

        Raises:
            ConfigError: ``keep`` not in :data:`KEEP`, ``ipc`` < 1 or larger than a class.
        """
        if keep not in KEEP:
            raise ConfigError(f"keep={keep!r} is invalid: expected one of {', '.join(KEEP)}")
        orders = self.order_by_class(num_classes)
        smallest = min((len(o) for o in orders), default=0)
        if not 1 <= ipc <= smallest:
            raise ConfigError(f"ipc {ipc} out of range: expected 1 to {smallest} (smallest class)")
        picked = [o[len(o) - ipc:] if keep == "hardest" else o[:ipc] for o in orders]
        return torch.cat(picked)


# --------------------------------------------------------------------------- computing scores
def train_scoring_network(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, recipe: TrainRecipe,
                          generator: torch.Generator, record: bool = False,
                          on_epoch: Callable[[int], None] | None = None) -> torch.Tensor | None:
    """Train ``net`` in place with ``recipe`` (resolved: lr and DSA strategy set) through
    :func:`datadistill.training.fit_network`.

    Args:
        images: (N, C, H, W) float32 normalised, on the network's device (or a streamed set).
        labels: (N,) int64 on the same device.
        generator: CPU generator for shuffling and augmentation.
        record: also return the correctness of every sample on the forward pass of its mini-batch
            (train mode, augmented, before the update), one row per epoch.
        on_epoch: called ``(epochs done)`` after each epoch (progress displays).

    Returns:
        (epochs, N) bool CPU history if ``record``, else None.
    """
    history = torch.zeros(recipe.epochs, len(labels), dtype=torch.bool) if record else None

    def record_correct(state: FitState, idx: torch.Tensor, logits: torch.Tensor) -> None:
        history[state.epoch, idx.cpu()] = (logits.detach().argmax(dim=1) == labels[idx]).cpu()

    hooks = Hooks(on_batch=record_correct if record else None,
                  on_epoch_end=None if on_epoch is None else lambda state: on_epoch(state.epoch))
    fit_network(net, (images, labels), recipe, generator, hooks)
    return history


def _score_network(score: str, net: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   settings: ScoreSettings) -> torch.Tensor:
    net.eval()
    device = labels.device
    order = torch.arange(len(labels), device=device)
    if score == "grand":
        if isinstance(images, torch.Tensor):
            return grand(net, images, labels, settings.grad_chunk)
        return torch.cat([grand(net, x.to(device), labels[idx.to(device)], settings.grad_chunk)
                          for idx, x in iter_batches(images, order, settings.recipe.batch_size)])
    with torch.no_grad():
        logits = torch.cat([net(x.to(device)) for _, x in iter_batches(images, order, settings.recipe.batch_size)])
    values = el2n(logits, labels) if score == "el2n" else uncertainty(logits)
    return values.cpu()


def compute_scores(score: str, data: LabelledImages, spec: DatasetSpec, settings: ScoreSettings,
                   device: torch.device | str, progress: ProgressCallback | None = None, *,
                   on_epoch: Callable[[int, int], None] | None = None) -> DifficultyScores:
    """Score every sample of ``data`` with ``settings.num_networks`` networks and average.

    For ``el2n``, ``grand`` and ``uncertainty`` each network is trained ``settings.epochs`` epochs
    and then scored (eval mode, no augmentation); for ``forgetting`` the events are counted over its
    training run (:func:`forgetting_events`). torch's global random state is restored afterwards.
    Under torchrun the networks are spread over the ranks (:func:`datadistill.units.run_units`) and
    every rank returns the same scores, equal to one process's (``progress`` is called on rank 0).

    Args:
        score: one of :data:`SCORES`.
        data: images (N, C, H, W) float32 normalised, labels (N,) int64 in [0, spec.num_classes).
        spec: the dataset's spec (channels, image size, classes, default DSA strategy).
        device: where the networks run (CPU or CUDA).
        progress: optional callable ``(k, mean score of network k)`` after each network.
        on_epoch: optional callable ``(k, epochs done)`` after each training epoch of network k.

    Returns:
        :class:`DifficultyScores` with values (N,) float32, labels (N,) int64 and metadata.

    Raises:
        ConfigError: unknown score, ``forgetting`` with 0 epochs, an empty set, or labels out of range.
    """
    check_score(score)
    if score == "forgetting" and settings.recipe.epochs < 1:
        raise ConfigError("the forgetting score needs epochs ≥ 1 (events are counted over training), got 0")
    n = len(data)
    if n == 0:
        raise ConfigError("cannot score an empty training set")
    if int(data.labels.min()) < 0 or int(data.labels.max()) >= spec.num_classes:
        raise ConfigError(f"labels must be in [0, {spec.num_classes}) for {spec.name}, "
                          f"got {int(data.labels.min())}..{int(data.labels.max())}")
    device = torch.device(device)
    recipe = settings.recipe.resolved(augmentation=spec.dsa_strategy)
    # in memory: the whole set on the device; streamed: decoded batch by batch
    images = data if data.streamed else data.images.to(device)
    labels = data.labels.long().to(device)
    cuda_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []

    def score_one(k: int) -> torch.Tensor:  # network k, on whichever rank claims it; (N,) on the CPU
        torch.manual_seed(settings.seed + k)
        generator = make_generator(settings.seed + k)
        net = build_model(settings.model, spec.channels, spec.num_classes, spec.image_size).to(device)
        history = train_scoring_network(net, images, labels, recipe, generator, record=score == "forgetting",
                                        on_epoch=None if on_epoch is None else lambda e: on_epoch(k, e))
        values = forgetting_events(history) if history is not None else _score_network(score, net, images, labels,
                                                                                        settings)
        return values.cpu()

    def scored(k: int, values: torch.Tensor) -> None:
        log.info("%s: network %d of %d scored (mean %.4g)", score, k + 1, settings.num_networks, float(values.mean()))
        if progress:
            progress(k, float(values.mean()))

    with torch.random.fork_rng(devices=cuda_ids):
        per_network = run_units(settings.num_networks, score_one, on_result=scored)
    total = torch.zeros(n, dtype=torch.float64)
    for values in per_network:  # summed in network order, whichever rank scored each
        total += values.double()
    from datadistill._version import __version__

    metadata = {"dataset": spec.name, "score": score, "num_images": n, "num_classes": spec.num_classes,
                "settings": {**settings.as_dict(), "dsa_strategy": recipe.augmentation}, "package_version": __version__}
    return DifficultyScores(score, (total / settings.num_networks).float(), data.labels.long().cpu(), metadata)


# --------------------------------------------------------------------------- files
def save_scores(scores: DifficultyScores, path: str | os.PathLike) -> Path:
    """Write ``scores`` to a ``.safetensors`` file atomically (format in the module docstring).

    Returns:
        ``path`` as a ``Path``.
    """
    from datadistill.io.tensor_file import write_tensor_file

    return write_tensor_file(path, {"values": scores.values, "labels": scores.labels},
                             {**scores.metadata, "score": scores.score}, FORMAT, FORMAT_VERSION)


def load_scores(path: str | os.PathLike) -> DifficultyScores:
    """Read a file written by :func:`save_scores` (no unpickling).

    Raises:
        ScoresFileError: the file is missing, not a readable safetensors file, not a datadistill
            difficulty-scores file (e.g. a synthetic set or a foreign file), of a newer format
            version, or with missing / malformed tensors.
    """
    from datadistill.io.tensor_file import read_tensor_file

    tensors, meta = read_tensor_file(path, FORMAT, FORMAT_VERSION, ScoresFileError, "difficulty scores")
    missing = [k for k in ("values", "labels") if k not in tensors]
    if missing:
        raise ScoresFileError(f"{path}: missing tensor {missing[0]!r}")
    values, labels = tensors["values"], tensors["labels"]
    score = meta.get("score")
    if score not in SCORES:
        raise ScoresFileError(f"{path}: score {score!r} is not one of {', '.join(SCORES)}")
    if not values.is_floating_point() or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ScoresFileError(f"{path}: values must be float and labels integer, got {values.dtype} and {labels.dtype}")
    if values.dim() != 1 or labels.dim() != 1 or values.shape != labels.shape:
        raise ScoresFileError(f"{path}: values {tuple(values.shape)} and labels {tuple(labels.shape)} "
                              "must be 1-D of the same length")
    return DifficultyScores(score, values, labels, meta)


__all__ = ["FORMAT", "FORMAT_VERSION", "KEEP", "SCORES", "DifficultyScores", "ScoreSettings", "check_score",
           "compute_scores", "el2n", "forgetting_events", "grand", "load_scores", "save_scores", "uncertainty",
           "train_scoring_network"]
