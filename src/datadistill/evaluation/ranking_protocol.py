"""The DD-Ranking scores of a synthetic set (:mod:`.ranking`) under the evaluation protocol: which
networks are trained, on what, with which lr, and in what order.

**Label modes.** ``hard``: S trains with its hard labels (the argmax of soft labels), R with its true
labels. ``soft``: S trains with its own soft labels (a hard-label set: the teacher's logits of its
images), R with the teacher's logits of its images (DD-Ranking's soft-label mode ``S``: labels
computed once, before training). ``auto`` (default) scores a hard-label set in ``hard`` mode and a
soft-label set (DATM, PAD) in both; ``both`` asks for both with any set.

**Trainings.** Per mode, four protocols: S and R, each with the protocol's augmentation (DSA, the
dataset's strategy) and without; HLR also needs S with hard labels and augmentation
(``S/hard/aug``). Each protocol trains K = ``num_eval`` final networks; run k uses the evaluation
protocol's seed ``seed + k`` for every protocol (paired S and R networks) and draws a fresh R
(``ranking_data.RUN_SUBSET_STREAM``), the same R for every protocol of the run.

**The lr.** Chosen per set and per protocol from ``lr_grid`` (DD-Ranking's {0.001, 0.005, 0.01,
0.05, 0.1}) by the mean accuracy on a class-balanced validation split carved from the training set
(``ranking_data.validation_split``; R is never drawn from it) of ``select_networks`` networks
trained ``select_epochs`` epochs per lr (ties: the smaller lr). S and R get the same search: for R,
selection network j trains on its own random subset (``SELECT_SUBSET_STREAM``), so R's lr is the best
for a random subset, not for one draw. A set with a learned lr (MTT family) trains with it whenever
it uses its own labels, as DD-Ranking does with ``syn_lr`` (``use_learned_lr``); a grid of one value
is that lr for every protocol, with no search. All selections run before the first final network;
the test set is read only by the final networks, once each, after their last epoch (no epoch is
chosen on it).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from datadistill.data import LabelledImages
from datadistill.errors import ConfigError
from datadistill.evaluation.protocol import EvalSettings, build_network, train_network
from datadistill.evaluation.ranking import (DEFAULT_ARS_WEIGHT, DEFAULT_LRS_WEIGHT, check_fraction, mode_scores,
                                            training_name)
from datadistill.evaluation.ranking_data import (RUN_SUBSET_STREAM, SELECT_NETWORK_STREAM, SELECT_SUBSET_STREAM,
                                                 Teacher, class_counts, draw_subset, stream_rng, stream_seed,
                                                 subset_images, validation_split)
from datadistill.io.synthetic_set import SyntheticSet
from datadistill.runtime import make_generator
from datadistill.training import NO_AUGMENTATION, class_correct, num_classes

log = logging.getLogger("datadistill")
DD_RANKING_LR_GRID = (0.001, 0.005, 0.01, 0.05, 0.1)
"""DD-Ranking's lr search grid (``_hyper_param_search_for_hard_label`` / ``…soft_label``)."""
LABEL_MODES = ("auto", "hard", "soft", "both")
DEFAULT_VAL_SIZE = 5000
"""The validation split's size when unset, at most (a tenth of the training set when that is smaller)."""


@dataclass(frozen=True)
class RankingSettings:
    """How the scores are measured, beyond the evaluation protocol (:class:`EvalSettings`: model,
    K = ``num_eval``, epochs, batch, momentum, weight decay, DSA strategy).

    Attributes:
        lr_grid: the lrs searched (each a finite number > 0, distinct); one value: no search.
        select_networks: networks trained per lr and protocol in the search (≥ 1).
        select_epochs: epochs of a search network (≥ 1); None = the protocol's epochs.
        val_size: validation images carved from the training set for the search (class-balanced:
            ``val_size // classes`` per class); None = a tenth of the training set, at most 5,000.
        labels: ``auto``, ``hard``, ``soft`` or ``both`` (module docstring).
        lrs_weight: w of LRS; ars_weight: γ of ARS (both in [0, 1]).
        use_learned_lr: train S with its learned lr when it uses its own labels.

    Raises:
        ConfigError: a value out of range, naming it.
    """

    lr_grid: tuple[float, ...] = DD_RANKING_LR_GRID
    select_networks: int = 1
    select_epochs: int | None = None
    val_size: int | None = None
    labels: str = "auto"
    lrs_weight: float = DEFAULT_LRS_WEIGHT
    ars_weight: float = DEFAULT_ARS_WEIGHT
    use_learned_lr: bool = True

    def __post_init__(self) -> None:
        grid = self.lr_grid if isinstance(self.lr_grid, (list, tuple)) else [self.lr_grid]
        for lr in grid:
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
                raise ConfigError(f"lr_grid = {list(grid)!r}: {lr!r} is not a finite number > 0")
        if not grid or len(set(grid)) != len(grid):
            raise ConfigError(f"lr_grid = {list(grid)!r} is invalid: expected one or more distinct lrs")
        object.__setattr__(self, "lr_grid", tuple(float(v) for v in grid))
        checks = [("select_networks", _count(self.select_networks), "an integer ≥ 1"),
                  ("select_epochs", self.select_epochs is None or _count(self.select_epochs), "an integer ≥ 1 or unset"),
                  ("val_size", self.val_size is None or _count(self.val_size), "an integer ≥ 1 or unset"),
                  ("labels", self.labels in LABEL_MODES, "one of " + ", ".join(LABEL_MODES))]
        for key in ("lrs_weight", "ars_weight"):
            v = getattr(self, key)
            checks.append((key, not isinstance(v, bool) and isinstance(v, (int, float)) and 0 <= v <= 1,
                           "a weight in [0, 1]"))
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"{name} = {getattr(self, name)!r} is invalid: expected {expected}")

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "lr_grid": list(self.lr_grid)}


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


@dataclass(frozen=True)
class Training:
    """One training protocol: ``subject`` ``S`` or ``R``, ``labels`` ``hard`` or ``soft``, ``augment``."""

    subject: str
    labels: str
    augment: bool

    @property
    def name(self) -> str:
        return training_name(self.subject, self.labels, self.augment)


@dataclass
class RankingPlan:
    """What :func:`score_synthetic_set` will train, known before any data is read.

    Attributes:
        modes: the label modes scored.
        trainings: the protocols, in training order.
        lr_source: per protocol name: ``grid`` (searched), ``learned`` (the set's lr) or ``fixed``.
        selection_trainings, final_trainings: networks trained to choose the lrs, and to report.
    """

    modes: list[str]
    trainings: list[Training]
    lr_source: dict[str, str]
    selection_trainings: int
    final_trainings: int

    @property
    def total(self) -> int:
        return self.selection_trainings + self.final_trainings


def plan_ranking(syn: SyntheticSet, eval_settings: EvalSettings, settings: RankingSettings,
                 has_teacher: bool) -> RankingPlan:
    """The label modes, protocols and the number of networks to train (module docstring).

    Raises:
        ConfigError: a soft-label mode without a teacher, or a protocol without augmentation
            (ARS compares training with and without it).
    """
    soft_set = syn.labels.dim() == 2
    modes = {"auto": ["hard", "soft"] if soft_set else ["hard"], "hard": ["hard"], "soft": ["soft"],
             "both": ["hard", "soft"]}[settings.labels]
    if "soft" in modes and not has_teacher:
        what = "a set with soft labels" if soft_set else f"labels = {settings.labels!r}"
        raise ConfigError(f"{what} is also scored with soft labels for R, which come from a teacher network: give "
                          "--teacher FILE (the model.safetensors written by datadistill baseline), or labels hard")
    if eval_settings.recipe.augmentation in (None, NO_AUGMENTATION):
        raise ConfigError(f"dsa_strategy = {eval_settings.recipe.augmentation!r}: the augmentation-robust score "
                          "compares training with and without augmentation; give a DSA strategy")
    wanted = [Training("S", "hard", True)]
    for mode in modes:
        wanted += [Training(s, mode, aug) for aug in (True, False) for s in ("S", "R")]
    trainings = list(dict.fromkeys(wanted))
    own = "soft" if soft_set else "hard"
    sources = {}
    for t in trainings:
        if len(settings.lr_grid) == 1:
            sources[t.name] = "fixed"
        elif (t.subject == "S" and t.labels == own and syn.learned_lr is not None and settings.use_learned_lr):
            sources[t.name] = "learned"
        else:
            sources[t.name] = "grid"
    searched = sum(src == "grid" for src in sources.values())
    return RankingPlan(modes, trainings, sources, searched * len(settings.lr_grid) * settings.select_networks,
                       len(trainings) * eval_settings.num_eval)


@dataclass
class RankingStep:
    """Progress of :func:`score_synthetic_set`, given after each network: ``phase`` ``select`` or
    ``final``, the protocol's name, the network's lr and accuracy (validation or test fraction),
    ``done`` networks of ``total``."""

    phase: str
    training: str
    lr: float
    accuracy: float
    done: int
    total: int


@dataclass
class RankingResult:
    """The scores and every accuracy behind them (fractions in [0, 1]).

    Attributes:
        model: the architecture trained; num_eval: K.
        settings: the :class:`RankingSettings` with the seed, the set's label kind and learned lr;
            protocol: the :class:`EvalSettings` (epochs, batch, DSA strategy, …).
        real_hard_accuracy: Acc(real, hard), from the whole-data baseline.
        lr: per protocol: ``chosen``, ``source`` and, when searched, ``grid`` with the mean
            ``validation_accuracy`` of each lr.
        accuracies: per protocol, the test accuracy of each final network (run order).
        scores: per label mode, :func:`~datadistill.evaluation.ranking.mode_scores`.
        random_subsets: the training-set indices of R in each run.
    """

    model: str
    num_eval: int
    modes: list[str]
    real_hard_accuracy: float
    settings: dict[str, Any]
    protocol: dict[str, Any] = field(default_factory=dict)
    lr: dict[str, dict[str, Any]] = field(default_factory=dict)
    accuracies: dict[str, list[float]] = field(default_factory=dict)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    random_subsets: list[list[int]] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    teacher: dict[str, Any] | None = None
    trainings: int = 0
    seconds: float = 0.0

    @property
    def primary_mode(self) -> str:
        """The mode of the set's own labels when scored (soft for a soft-label set), else the first."""
        return "soft" if self.settings.get("label_kind") == "soft" and "soft" in self.modes else self.modes[0]

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["primary_mode"] = self.primary_mode
        d["accuracy_unit"] = "fraction"
        return d


def check_ranking_data(syn: SyntheticSet, train: LabelledImages, test: LabelledImages, settings: RankingSettings,
                       seed: int = 0) -> tuple[int, list[int], torch.Tensor, torch.Tensor]:
    """Check that ``syn`` can be scored against these real sets, before any training, and return
    (classes, the class counts of S, the pool R is drawn from, the validation indices).

    Raises:
        ConfigError: images of another shape, a ZCA set with a streamed real set, a training set too
            small for the validation split and R.
    """
    if tuple(syn.images.shape[1:]) != tuple(train.image_shape):
        raise ConfigError(f"synthetic images {tuple(syn.images.shape[1:])} do not match the real images "
                          f"{tuple(train.image_shape)} (channels, height, width)")
    if syn.zca is not None and (train.streamed or test.streamed):
        raise ConfigError("a ZCA-whitened set is scored on in-memory real sets: load the dataset with stream off")
    classes = num_classes(syn.labels, syn.metadata)
    counts = class_counts(syn.hard_labels, classes)
    val_size = settings.val_size if settings.val_size is not None else min(DEFAULT_VAL_SIZE, len(train) // 10)
    pool, val_idx = validation_split(train.labels, classes, val_size, seed, reserve=counts)
    return classes, counts, pool, val_idx


def _fraction(net: torch.nn.Module, data: LabelledImages, device: torch.device, classes: int) -> float:
    correct, count = class_correct(net, data, device, classes)
    return int(correct.sum()) / max(int(count.sum()), 1)


def score_synthetic_set(syn: SyntheticSet, train: LabelledImages, test: LabelledImages, eval_settings: EvalSettings,
                        settings: RankingSettings, device: torch.device, *, real_hard_accuracy: float,
                        teacher: Teacher | None = None, seed: int = 0,
                        progress: Callable[[RankingStep], None] | None = None) -> RankingResult:
    """HLR, IOR, LRS and ARS of ``syn`` under ``eval_settings`` (module docstring for the protocol).

    Args:
        syn: the synthetic set (images normalised like ``train``, whitened when ``syn.zca`` is set).
        train: the real training set, (N, C, H, W) float32 normalised, labels (N,) int64: the
            validation split and the random subsets R come from it.
        test: the real test set (normalised, not whitened); read only by the final networks.
        eval_settings: the protocol (its ``recipe.augmentation`` is the "aug" of ARS).
        real_hard_accuracy: Acc(real, hard), a fraction (a whole-data baseline's test accuracy).
        teacher: the network whose logits are the soft labels (needed by the ``soft`` mode).
        seed: run k's networks use ``seed + k``; the draws use ``ranking_data``'s streams.
        progress: called with a :class:`RankingStep` after each network.

    Raises:
        ConfigError: an accuracy not a fraction, a soft mode without a teacher, no augmentation,
            a training set too small for the validation split and R, a ZCA set with a streamed
            training or test set, images that do not match the real set's shape.
    """
    start = time.perf_counter()
    real_hard = check_fraction("Acc(real, hard)", real_hard_accuracy)
    plan = plan_ranking(syn, eval_settings, settings, teacher is not None)
    classes, counts, pool, val_idx = check_ranking_data(syn, train, test, settings, seed)
    to_train_space = (lambda x: x) if syn.zca is None else (lambda x: syn.zca.whiten(x))
    val = train.subset(val_idx)
    if syn.zca is not None:
        val = LabelledImages(syn.zca.whiten(val.images), val.labels)
    soft_set = syn.labels.dim() == 2
    own_soft = syn.labels.float() if soft_set else None
    s_teacher = None

    def s_targets(labels: str) -> torch.Tensor:
        nonlocal s_teacher
        if labels == "hard":
            return syn.hard_labels
        if own_soft is not None:
            return own_soft
        if s_teacher is None:
            s_teacher = teacher.soft_labels(syn.unwhitened(), device)
        return s_teacher

    def r_data(indices: torch.Tensor, need_soft: bool) -> dict[str, Any]:
        images, labels = subset_images(train, indices)
        soft = teacher.soft_labels(images, device) if need_soft else None
        return {"images": to_train_space(images), "hard": labels, "soft": soft}

    need_soft_r = "soft" in plan.modes
    done = [0]

    def fit(images: torch.Tensor, targets: torch.Tensor, t: Training, lr: float, epochs: int, net_seed: int):
        recipe = dataclasses.replace(eval_settings.recipe, epochs=epochs, lr=lr,
                                     augmentation=eval_settings.recipe.augmentation if t.augment else NO_AUGMENTATION)
        s = dataclasses.replace(eval_settings, recipe=recipe)
        torch.manual_seed(net_seed)
        net = build_network(s, images.shape[1], classes, tuple(images.shape[2:])).to(device)
        return train_network(net, images.to(device), targets.to(device), s, lr, make_generator(net_seed))

    def report(phase: str, t: Training, lr: float, acc: float) -> None:
        done[0] += 1
        log.info("scores %d/%d: %s %s at lr %g: %s accuracy %.4f", done[0], plan.total,
                 "choosing the lr of" if phase == "select" else "run of", t.name, lr,
                 "validation" if phase == "select" else "test", acc)
        if progress is not None:
            progress(RankingStep(phase, t.name, lr, acc, done[0], plan.total))

    # 1. the lr of every protocol, chosen on the validation split (the test set is not read here)
    select_epochs = settings.select_epochs or eval_settings.recipe.epochs
    select_r = [r_data(draw_subset(pool, train.labels, counts, stream_rng(seed, SELECT_SUBSET_STREAM, j)),
                       need_soft_r) for j in range(settings.select_networks)] \
        if any(plan.lr_source[t.name] == "grid" and t.subject == "R" for t in plan.trainings) else []
    chosen: dict[str, dict[str, Any]] = {}
    for t in plan.trainings:
        source = plan.lr_source[t.name]
        if source != "grid":
            lr = syn.learned_lr if source == "learned" else settings.lr_grid[0]
            chosen[t.name] = {"chosen": float(lr), "source": source}
            continue
        scores = []
        for lr in settings.lr_grid:
            accs = []
            for j in range(settings.select_networks):
                if t.subject == "S":
                    images, targets = syn.images, s_targets(t.labels)
                else:
                    images, targets = select_r[j]["images"], select_r[j][t.labels]
                net = fit(images, targets, t, lr, select_epochs, stream_seed(seed, SELECT_NETWORK_STREAM, j))
                accs.append(_fraction(net, val, device, classes))
                report("select", t, lr, accs[-1])
            scores.append(statistics.fmean(accs))
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # ties: the first (smaller) lr
        chosen[t.name] = {"chosen": settings.lr_grid[best], "source": "grid", "grid": list(settings.lr_grid),
                          "validation_accuracy": scores, "select_networks": settings.select_networks,
                          "select_epochs": select_epochs}
    # 2. the final networks: K runs, each with a fresh R; the test set is read once per network
    test_space = test if syn.zca is None else LabelledImages(syn.zca.whiten(test.images), test.labels)
    accuracies: dict[str, list[float]] = {t.name: [] for t in plan.trainings}
    subsets = []
    for k in range(eval_settings.num_eval):
        indices = draw_subset(pool, train.labels, counts, stream_rng(seed, RUN_SUBSET_STREAM, k))
        subsets.append(indices.tolist())
        r = r_data(indices, need_soft_r)
        for t in plan.trainings:
            images, targets = (syn.images, s_targets(t.labels)) if t.subject == "S" else (r["images"], r[t.labels])
            lr = chosen[t.name]["chosen"]
            net = fit(images, targets, t, lr, eval_settings.recipe.epochs, seed + k)
            accuracies[t.name].append(_fraction(net, test_space, device, classes))
            report("final", t, lr, accuracies[t.name][-1])
    scores = {m: mode_scores(accuracies, m, real_hard, settings.lrs_weight, settings.ars_weight) for m in plan.modes}
    teacher_info = None if teacher is None else {"file": teacher.file, "model": (teacher.metadata or {}).get("model")}
    return RankingResult(
        model=eval_settings.model, num_eval=eval_settings.num_eval, modes=plan.modes, real_hard_accuracy=real_hard,
        settings={**settings.as_dict(), "seed": seed, "label_kind": "soft" if soft_set else "hard",
                  "learned_lr": syn.learned_lr}, protocol=eval_settings.as_dict(),
        lr=chosen, accuracies=accuracies, scores=scores, random_subsets=subsets,
        validation={"images": len(val_idx), "per_class": len(val_idx) // classes, "class_counts_of_r": counts},
        teacher=teacher_info, trainings=done[0], seconds=time.perf_counter() - start)


__all__ = ["DD_RANKING_LR_GRID", "LABEL_MODES", "RankingPlan", "RankingResult", "RankingSettings", "RankingStep",
           "check_ranking_data",
           "Training", "plan_ranking", "score_synthetic_set"]
