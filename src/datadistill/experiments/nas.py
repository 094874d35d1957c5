"""Neural architecture search with a synthetic set as the proxy (DC, Zhao et al., ICLR 2021, §4;
reference §6).

Every architecture of a search space is trained twice: on the synthetic set S with the evaluation
protocol (:func:`datadistill.evaluation.evaluate_synthetic_set`) and on the real training set T
with a stated budget (the *real proxy*: ``real.epochs`` epochs over T, or over ``real.subset``
images per class of it; one network; SGD momentum 0.9, weight decay 5e-4, the architecture's
evaluation lr divided by 10 at half time, no augmentation, as the whole-data baseline). Both
rankings use the accuracy on a **validation split carved from the real training set** (default
5,000 images; the real proxy trains on the rest); the test set never ranks anything and its accuracy
is recorded once per trained network, for reporting. The question answered: does S rank the
architectures as T does, for a fraction of the search time? :func:`summarise` gives the Spearman
rank correlation (``scipy.stats.spearmanr``) over all candidates and over the top 5/10/20 by the real
ranking, whether the best architecture agrees, and the real rank of the synthetic-best.

The search space is a YAML file (``configs/nas/``)::

    family: convnet        # or mlp
    depth: [1, 2, 3, 4]    # convnet: depth, width, activation, norm, pooling; mlp: depth, width
    width: [32, 64, 128, 256]
    activation: [sigmoid, relu, leakyrelu]
    norm: [none, batchnorm, layernorm, instancenorm, groupnorm]
    pooling: [none, maxpooling, avgpooling]
    sample: 100            # optional: draw 100 of the grid's candidates …
    seed: 0                # … with this seed (numpy's default_rng; default 0)

The candidates are the cartesian product in the key order above (depth outermost); a key left out
keeps the builder's default. Candidate ``i`` (its position in the full grid, so sampling does not
change it) trains with the seed ``SeedSequence([seed, i])`` derives, in whichever worker process it
lands: results do not depend on ``workers`` or scheduling. Candidates run in parallel worker
processes (:func:`datadistill.experiments.workers.run_tasks`), one pool for both searches: every synthetic
candidate is submitted before the first real one. A search's wall time runs from its first candidate
starting to its last finishing (worker start-up, seconds of importing torch, is left out); at the
switch, up to ``workers`` − 1 synthetic candidates may still run beside the first real ones, each on
its own cores (``cores // workers`` threads per worker).

Caveat: a synthetic set is usually distilled from the whole training set, so the validation images
may have helped make S (an ``init: real`` set may even contain some); the synthetic side is then
ranked on images it has seen through S. The test accuracies in the table are free of this.

Outputs of :func:`run_nas` (written atomically, only after both searches finished): ``nas.json``
(space, settings, one row per candidate, summary, times), ``nas.csv`` (the rows), ``nas.md`` (a
table sorted by the real ranking, and the summary) and ``nas.png`` (synthetic against real
validation accuracy). Units: accuracies in percent, times in wall-clock seconds.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datadistill.augment.dsa import parse_strategy
from datadistill.config import check_fields, read_yaml_mapping
from datadistill.data import LabelledImages, RealSet, SplitDataset
from datadistill.errors import ConfigError, DatadistillError
from datadistill.evaluation import EvalSettings, evaluate_synthetic_set
from datadistill.evaluation.protocol import EVAL_RECIPE
from datadistill.io import SyntheticSet, atomic_write_bytes, atomic_write_text, load_synthetic_set
from datadistill.models import build_model, default_eval_lr, searchable_models
from datadistill.runtime import make_generator, select_device
from datadistill.training import TrainRecipe, accuracy, fit_network, holds_recipe, recipe_settings_dict

log = logging.getLogger("datadistill")

TOP_K = (5, 10, 20)
_KNOBS = searchable_models()  # family → {key: accepted names, or int}, from the model registry
FAMILY_KEYS: dict[str, tuple[str, ...]] = {family: tuple(knobs) for family, knobs in _KNOBS.items()}
_SPACE_KEYS = ("family", "sample", "seed")
_SHORT = {"depth": "d", "width": "w"}


# ------------------------------------------------------------------------------------ search space


@dataclass(frozen=True)
class Candidate:
    """One architecture of a search space.

    Attributes:
        index: position in the full cartesian product (also the seed's second entropy word).
        family: ``convnet`` or ``mlp`` (a registered model name).
        args: builder keyword arguments, e.g. ``{"depth": 3, "width": 64, "norm": "none"}``.
    """

    index: int
    family: str
    args: dict[str, Any] = field(hash=False)

    @property
    def name(self) -> str:
        """``convnet-d3-w64-relu-instancenorm-avgpooling`` (grid key order)."""
        parts = [f"{_SHORT[k]}{v}" if k in _SHORT else str(v) for k, v in self.args.items()]
        return "-".join([self.family, *parts])


@dataclass(frozen=True)
class SearchSpace:
    """A grid of architectures of one family, optionally sampled.

    Attributes:
        family: ``convnet`` or ``mlp``.
        grid: per varied key (in :data:`FAMILY_KEYS` order) the values tried, each list non-empty
            and without duplicates.
        sample: draw this many candidates of the grid (None = all of them).
        seed: seed of the draw (only used with ``sample``).
    """

    family: str
    grid: dict[str, tuple[Any, ...]]
    sample: int | None = None
    seed: int = 0

    @property
    def grid_size(self) -> int:
        """Candidates in the full cartesian product."""
        return math.prod(len(v) for v in self.grid.values())

    def indices(self) -> list[int]:
        """Grid positions of the candidates, ascending: all, or ``sample`` drawn without replacement
        by ``numpy.random.default_rng(seed)``."""
        if self.sample is None:
            return list(range(self.grid_size))
        drawn = np.random.default_rng(self.seed).choice(self.grid_size, size=self.sample, replace=False)
        return sorted(int(i) for i in drawn)

    def candidate(self, index: int) -> Candidate:
        """The candidate at grid position ``index`` (mixed radix, the last key fastest)."""
        args: dict[str, Any] = {}
        rest = index
        for key in reversed(list(self.grid)):
            values = self.grid[key]
            args[key] = values[rest % len(values)]
            rest //= len(values)
        return Candidate(index, self.family, {k: args[k] for k in self.grid})

    def candidates(self) -> list[Candidate]:
        """The candidates searched, in grid order."""
        return [self.candidate(i) for i in self.indices()]

    def as_dict(self) -> dict[str, Any]:
        return {"family": self.family, **{k: list(v) for k, v in self.grid.items()}, "sample": self.sample,
                "seed": self.seed, "grid_size": self.grid_size}


def _int(key: str, value: Any, minimum: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}{key} = {value!r} is invalid: expected an integer ≥ {minimum}")
    return value


def _values(key: str, raw: Any, family: str) -> tuple[Any, ...]:
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise ConfigError(f"{key} = [] is empty: expected a non-empty list of {family} {key} values")
    choices = _KNOBS[family][key]
    for v in values:
        if choices is not int:
            if not isinstance(v, str) or v not in choices:
                raise ConfigError(f"{key} = {raw!r}: {v!r} is not a {family} {key}; expected values from "
                                  f"{', '.join(choices)}")
        else:
            _int(key, v, 1, f"{key} = {raw!r}: ")
    dup = [v for v, n in Counter(values).items() if n > 1]
    if dup:
        raise ConfigError(f"{key} = {raw!r} lists {dup[0]!r} twice: expected distinct values")
    return tuple(values)


def parse_search_space(data: Mapping[str, Any]) -> SearchSpace:
    """Validate a search space given as a mapping (the content of a space file).

    Args:
        data: ``family`` (``convnet`` | ``mlp``), the family's grid keys (a list of values each, or one
            value), optional ``sample`` (integer ≥ 2, at most the grid's size) and ``seed`` (≥ 0).

    Raises:
        ConfigError: the first problem: not a mapping, missing or unknown family, a key the family
            does not have, an empty list, a duplicate or invalid value (depth and width are integers
            ≥ 1; activation, norm and pooling come from the ConvNet's lists), fewer than 2
            candidates, a bad ``sample`` or ``seed``. The message names the key, the value and what
            is accepted.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"search space = {data!r} is not a mapping: expected family and grid keys")
    family = data.get("family")
    if family is None:
        raise ConfigError(f"family is missing from the search space: expected one of {', '.join(FAMILY_KEYS)}")
    if not isinstance(family, str) or family not in FAMILY_KEYS:
        raise ConfigError(f"family = {family!r} is not a searchable family: expected one of {', '.join(FAMILY_KEYS)}")
    keys = FAMILY_KEYS[family]
    unknown = [k for k in data if k not in keys and k not in _SPACE_KEYS]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in the {family} search space: expected "
                          f"{', '.join((*_SPACE_KEYS, *keys))}")
    grid = {k: _values(k, data[k], family) for k in keys if k in data}
    space = SearchSpace(family, grid)
    if space.grid_size < 2:
        raise ConfigError(f"the {family} search space has {space.grid_size} candidate: list at least two values "
                          f"for one of {', '.join(keys)}")
    sample = data.get("sample")
    if sample is not None:
        _int("sample", sample, 2, "")
        if sample > space.grid_size:
            raise ConfigError(f"sample = {sample} is more than the grid's {space.grid_size} candidates: expected "
                              f"2 … {space.grid_size} (or no sample, for all of them)")
    seed = _int("seed", data.get("seed", 0), 0, "")
    return SearchSpace(family, grid, sample, seed)


def load_search_space(source: str | os.PathLike | Mapping[str, Any] | SearchSpace) -> SearchSpace:
    """Read and validate a search-space YAML file (PyYAML), a mapping, or pass a space through.

    Raises:
        ConfigError: missing or invalid YAML file, or any problem :func:`parse_search_space` reports
            (prefixed with the file's path).
    """
    if isinstance(source, SearchSpace):
        return source
    if isinstance(source, Mapping):
        return parse_search_space(source)
    data = read_yaml_mapping(source)
    try:
        return parse_search_space(data)
    except ConfigError as exc:
        raise type(exc)(f"{source}: {exc}") from None


# --------------------------------------------------------------------------------------- summary


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's ρ (average ranks for ties), None when undefined (< 2 items or a constant side)."""
    from scipy.stats import spearmanr

    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def _check_accuracies(name: str, values: Sequence[float]) -> list[float]:
    out = []
    for k, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{name}[{k}] = {v!r} is invalid: expected a finite accuracy")
        out.append(float(v))
    return out


def summarise(synthetic: Sequence[float], real: Sequence[float], top: Sequence[int] = TOP_K) -> dict[str, Any]:
    """How well the synthetic ranking matches the real one.

    Rank 1 is the highest accuracy; ranks are competition ranks (ties share the best rank), so a
    synthetic-best tied with the real best has real rank 1. The synthetic-best (and the real best)
    is the first candidate, in input order, with the highest accuracy: what a search would pick.

    Args:
        synthetic: per candidate, the validation accuracy (%) after training on the synthetic set.
        real: per candidate (same order), the validation accuracy (%) after training on real data.
        top: sizes k of the top-k subsets (the k best by ``real``, ties broken by input order).

    Returns:
        ``candidates`` (n); ``spearman``: ``{"all": ρ, "top5": ρ, …}`` (``scipy.stats.spearmanr``,
        average ranks for ties; None when undefined: k > n, fewer than 2 items, or one side
        constant); ``spearman_pvalue`` (two-sided, over all; None when ρ is undefined);
        ``synthetic_best`` and ``real_best`` (positions); ``best_agrees`` (the synthetic-best has
        real rank 1); ``synthetic_best_real_rank``; ``real_best_synthetic_rank``; ``regret`` (real
        accuracy of the real best minus that of the synthetic-best, percentage points).

    Raises:
        ConfigError: the lists differ in length, are empty, or hold a non-finite value; a k < 1.
    """
    from scipy.stats import rankdata, spearmanr

    syn = _check_accuracies("synthetic", synthetic)
    rea = _check_accuracies("real", real)
    if len(syn) != len(rea):
        raise ConfigError(f"{len(syn)} synthetic accuracies but {len(rea)} real ones: expected one of each "
                          "per candidate")
    if not syn:
        raise ConfigError("no candidates: expected at least one synthetic and one real accuracy")
    for k in top:
        _int("top", k, 1, "")
    n = len(syn)
    by_real = sorted(range(n), key=lambda i: (-rea[i], i))
    rho: dict[str, float | None] = {"all": _spearman(syn, rea)}
    for k in top:
        chosen = by_real[:k]
        rho[f"top{k}"] = _spearman([syn[i] for i in chosen], [rea[i] for i in chosen]) if k <= n else None
    syn_best = max(range(n), key=lambda i: (syn[i], -i))
    real_best = by_real[0]
    real_rank = rankdata([-v for v in rea], method="min")
    syn_rank = rankdata([-v for v in syn], method="min")
    pvalue = float(spearmanr(syn, rea).pvalue) if rho["all"] is not None and n > 2 else None
    return {"candidates": n, "spearman": rho, "spearman_pvalue": pvalue, "synthetic_best": syn_best,
            "real_best": real_best, "best_agrees": bool(real_rank[syn_best] == 1),
            "synthetic_best_real_rank": int(real_rank[syn_best]), "real_best_synthetic_rank": int(syn_rank[real_best]),
            "regret": rea[real_best] - rea[syn_best]}


# ------------------------------------------------------------------------------- per-candidate work


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


def candidate_seed(seed: int, index: int) -> int:
    """The seed of candidate ``index`` in a search with seed ``seed``: the first 32-bit word of
    ``numpy.random.SeedSequence([seed, index])`` (independent of the order candidates run in)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _timed(fn: Callable[..., dict[str, Any]], kwargs: dict[str, Any]) -> tuple[float, float, dict[str, Any]]:
    """Worker task wrapper: ``(start, end, fn(**kwargs))`` with wall-clock timestamps
    (``time.time()``, comparable across the worker processes of one machine)."""
    start = time.time()
    result = fn(**kwargs)
    return start, time.time(), result


def _synthetic_task(syn: SyntheticSet, val: LabelledImages, test: LabelledImages, settings: EvalSettings,
                    seed: int, device: str) -> dict[str, Any]:
    """Worker task: the evaluation protocol on ``syn`` for one candidate (``settings.model_args``),
    accuracies on ``val`` (ranking) and ``test`` (reporting). The caller's RNG state is kept."""
    dev = torch.device(device)
    test_accs: list[float] = []
    with torch.random.fork_rng(devices=[]):
        result = evaluate_synthetic_set(syn, val, settings, dev, seed=seed,
                                        on_model=lambda k, net: test_accs.append(accuracy(net, test, dev)))
    return {"synthetic_val_accuracy": result.mean, "synthetic_val_accuracies": result.accuracies,
            "synthetic_test_accuracy": statistics.fmean(test_accs), "synthetic_test_accuracies": test_accs,
            "synthetic_train_seconds": result.train_seconds, "synthetic_vectorised": result.vectorised,
            "synthetic_lr": result.lr}


def _real_task(family: str, model_args: dict[str, Any], shape: tuple[int, int, int], num_classes: int,
               train: LabelledImages, val: LabelledImages, test: LabelledImages, settings: RealProxySettings,
               seed: int, device: str) -> dict[str, Any]:
    """Worker task: the real proxy for one candidate. Initialisation under ``torch.manual_seed(seed)``
    (inside a forked RNG), shuffling from ``make_generator(seed)``; returns validation and test
    accuracy (%) and the training seconds (testing excluded)."""
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_model(family, shape[0], num_classes, shape[1:], **model_args).to(dev)
        state = fit_network(net, train, settings.recipe.resolved(lr=default_eval_lr(family)), make_generator(seed))
        return {"real_val_accuracy": accuracy(net, val, dev), "real_test_accuracy": accuracy(net, test, dev),
                "real_train_seconds": state.seconds}


# ------------------------------------------------------------------------------------------- run


@dataclass
class NASResult:
    """What :func:`run_nas` returns (and ``nas.json`` holds).

    Attributes:
        space: the search space as read.
        settings: the synthetic protocol, the real proxy, split sizes, seed, workers, device.
        rows: one per candidate in grid order: ``index``, ``name``, ``model_args``, the grid keys,
            ``params``, ``seed``, ``synthetic_val_accuracy`` (mean over the networks) and
            ``synthetic_val_accuracies``, ``synthetic_test_accuracy`` (+ ``…accuracies``),
            ``synthetic_train_seconds``, ``real_val_accuracy``, ``real_test_accuracy``,
            ``real_train_seconds``, ``synthetic_rank``, ``real_rank`` (1 = best validation accuracy).
        summary: :func:`summarise` of the validation accuracies, with ``synthetic_best_name`` and
            ``real_best_name``.
        times: ``synthetic_train_seconds`` / ``real_train_seconds`` (sums over candidates of
            training alone, testing excluded), ``synthetic_wall_seconds`` / ``real_wall_seconds``
            (each search from its first candidate starting to its last finishing, in whichever
            worker: worker start-up excluded), ``total_wall_seconds`` (both searches and the
            workers' start-up), and the ratios real ÷ synthetic of the sums and of the walls.
        synthetic: where the set came from (file, dataset, method, IPC, images).
    """

    space: SearchSpace
    settings: dict[str, Any]
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    times: dict[str, Any]
    synthetic: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        from datadistill._version import __version__

        return {"format": "datadistill.nas", "package_version": __version__, "synthetic": self.synthetic,
                "space": self.space.as_dict(), "settings": self.settings, "candidates": self.rows,
                "summary": self.summary, "times": self.times}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _prepare_splits(data: SplitDataset, syn: SyntheticSet, val_size: int, real_subset: int | None,
                    seed: int) -> tuple[SyntheticSet, LabelledImages, LabelledImages, LabelledImages]:
    """(syn in the space it trains in, real-proxy training images, validation, test), whitened with
    ``syn.zca`` when the set carries one."""
    n = len(data.train)
    if not 1 <= val_size < n:
        raise ConfigError(f"val_size = {val_size} is invalid: the real training set has {n} images, expected "
                          f"1 … {n - 1} (validation images carved from it)")
    generator = make_generator(seed)
    train, val = data.carve_validation(val_size, generator)
    k = data.spec.num_classes
    if real_subset is not None:
        counts = torch.bincount(train.labels.cpu(), minlength=k)[:k]
        if int(counts.min()) < real_subset:
            raise ConfigError(f"real_subset = {real_subset} is invalid: after carving {val_size} validation images "
                              f"the smallest class has {int(counts.min())} training images; expected 1 … "
                              f"{int(counts.min())} (images per class) or unset")
        by_class = RealSet(train, k).indices_by_class
        picked = torch.cat([ids[torch.randperm(len(ids), generator=generator)[:real_subset]] for ids in by_class])
        train = train.subset(picked.sort().values)
    test = data.test
    if syn.zca is not None:
        if data.train.streamed or test.streamed:
            raise ConfigError("the synthetic set is ZCA-whitened: its dataset must be held in memory (stream off)")
        train, val, test = (LabelledImages(syn.zca.whiten(s.images), s.labels) for s in (train, val, test))
    # the set's images already live in the whitened space and val/test are whitened here: no second pass
    syn = dataclasses.replace(syn, zca=None, metadata={**syn.metadata, "num_classes": k})
    return syn, train, val, test


def _check_candidates(candidates: Sequence[Candidate], shape: tuple[int, int, int], num_classes: int) -> list[int]:
    """Build every candidate on the meta device (no memory, no RNG); parameter counts.

    Raises:
        ConfigError: a candidate that does not fit the images (e.g. too deep for their size), naming it.
    """
    params = []
    for c in candidates:
        try:
            with torch.device("meta"):
                net = build_model(c.family, shape[0], num_classes, shape[1:], **c.args)
        except DatadistillError as exc:
            raise type(exc)(f"candidate {c.name}: {exc}") from None
        params.append(sum(p.numel() for p in net.parameters()))
    return params


def run_nas(synthetic: str | os.PathLike | SyntheticSet, space: str | os.PathLike | Mapping[str, Any] | SearchSpace,
            out: str | os.PathLike | None = None, *, dataset: SplitDataset | None = None,
            data_root: str | os.PathLike | None = None, num_eval: int = 2, epochs: int = 300,
            lr: float | None = None, batch_size: int = 256, dsa_strategy: str | None = None,
            real_epochs: int = 2, real_subset: int | None = None, real_lr: float | None = None,
            real_batch_size: int = 256,
            val_size: int = 5000, seed: int = 0, workers: int = 2, device: str = "auto",
            progress: Callable[[str, int, int, dict[str, Any]], None] | None = None) -> NASResult:
    """Rank the architectures of ``space`` by training on the synthetic set and on real data
    (``datadistill nas``), compare the rankings and write the report to ``out``.

    Args:
        synthetic: a synthetic-set file (``.safetensors``, read with
            :func:`~datadistill.io.load_synthetic_set`) or a loaded :class:`SyntheticSet`.
        space: a search-space YAML file, a mapping, or a :class:`SearchSpace` (module docstring).
        out: folder for ``nas.json``, ``nas.csv``, ``nas.md`` and ``nas.png``; None writes nothing.
        dataset: the real dataset, already loaded (tests; else the set's own dataset is read from
            ``data_root`` at the set's image size and normalisation). Images (N, C, H, W) float32
            normalised, labels (N,) int64.
        num_eval, epochs, lr, batch_size, dsa_strategy: the synthetic side's evaluation protocol
            (:class:`~datadistill.evaluation.EvalSettings`: K networks per candidate, E epochs, lr
            None = the set's learned lr or the architecture's default, DSA strategy None = the
            dataset's).
        real_epochs, real_subset, real_lr, real_batch_size: the real proxy (:class:`RealProxySettings`):
            epochs over the real training split, or over ``real_subset`` images per class of it;
            lr None = the architecture's default evaluation lr.
        val_size: validation images carved at random (seed ``seed``) from the real training set;
            both rankings use them; the real proxy trains on the rest.
        seed: the search's seed (validation split, real subset, per-candidate seeds
            :func:`candidate_seed`).
        workers: worker processes (0 or 1 = in this process, one candidate after another).
        device: ``auto``, ``cpu`` or ``cuda`` (every worker uses it).
        progress: called ``(phase, done, total, row)`` as each candidate finishes, ``phase`` being
            ``"synthetic"`` or ``"real"`` and ``row`` that phase's results for the candidate.

    Returns:
        The :class:`NASResult`.

    Raises:
        ConfigError / UnknownNameError: an invalid space or setting, a candidate that does not fit
            the images, a set that does not match the dataset, ``out`` an existing file.
        SyntheticSetFileError: unreadable synthetic-set file. DatasetNotFoundError: its dataset is
            not on disk. Nothing is written in any of these cases (all checks run before training).
    """
    from datadistill.experiments.workers import run_tasks
    from datadistill.data import load_dataset_of

    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"output path {out} exists and is not a folder")
    the_space = load_search_space(space)
    _int("seed", seed, 0, "")
    _int("workers", workers, 0, "")
    _int("val_size", val_size, 1, "")
    try:
        real = RealProxySettings(epochs=real_epochs, subset=real_subset, lr=real_lr, batch_size=real_batch_size)
    except ConfigError as exc:
        raise ConfigError(f"real proxy: {exc}") from None
    if dsa_strategy is not None:
        parse_strategy(dsa_strategy)
    eval_settings = EvalSettings(model=the_space.family, num_eval=num_eval, epochs=epochs, lr=lr,
                                 batch_size=batch_size, dsa_strategy=dsa_strategy or "none")
    dev = select_device(device)
    syn = synthetic if isinstance(synthetic, SyntheticSet) else load_synthetic_set(synthetic)
    if dataset is None:
        dataset = load_dataset_of(syn.metadata, data_root, **({"stream": "off"} if syn.zca is not None else {}))
    spec = dataset.spec
    eval_settings = dataclasses.replace(eval_settings, dsa_strategy=dsa_strategy or spec.dsa_strategy)
    shape = tuple(dataset.train.image_shape)
    if tuple(syn.images.shape[1:]) != shape:
        raise ConfigError(f"synthetic images {tuple(syn.images.shape[1:])} do not match the {spec.name} images "
                          f"{shape} (channels, height, width)")
    if syn.labels.dim() == 2 and syn.labels.shape[1] != spec.num_classes:
        raise ConfigError(f"the synthetic set's soft labels have {syn.labels.shape[1]} classes but {spec.name} has "
                          f"{spec.num_classes}")
    top_label = int(syn.hard_labels.max()) if len(syn) else -1
    if top_label >= spec.num_classes:
        raise ConfigError(f"the synthetic set has label {top_label} but {spec.name} has {spec.num_classes} classes "
                          f"(expected labels 0 … {spec.num_classes - 1})")
    candidates = the_space.candidates()
    params = _check_candidates(candidates, shape, spec.num_classes)
    syn_in, train, val, test = _prepare_splits(dataset, syn, val_size, real.subset, seed)
    seeds = [candidate_seed(seed, c.index) for c in candidates]
    device_name = str(dev)
    log.info("nas: %d %s candidates (grid %d), %d synthetic images, %d real-proxy / %d validation / %d test images",
             len(candidates), the_space.family, the_space.grid_size, len(syn), len(train), len(val), len(test))

    n = len(candidates)
    done = {"synthetic": 0, "real": 0}

    def report(i: int, timed: tuple[float, float, dict[str, Any]]) -> None:
        phase = "synthetic" if i < n else "real"
        done[phase] += 1
        if progress is not None:
            c = candidates[i % n]
            progress(phase, done[phase], n, {"index": c.index, "name": c.name, **timed[2]})

    syn_tasks = [(_timed, {"fn": _synthetic_task, "kwargs": {
        "syn": syn_in, "val": val, "test": test, "seed": s, "device": device_name,
        "settings": dataclasses.replace(eval_settings, model_args=c.args)}}) for c, s in zip(candidates, seeds)]
    real_tasks = [(_timed, {"fn": _real_task, "kwargs": {
        "family": c.family, "model_args": c.args, "shape": shape, "num_classes": spec.num_classes, "train": train,
        "val": val, "test": test, "settings": real, "seed": s, "device": device_name}})
        for c, s in zip(candidates, seeds)]
    start = time.perf_counter()
    # one pool for both searches (workers start once); the synthetic tasks are submitted first
    timed = run_tasks(syn_tasks + real_tasks, workers=workers, progress=report)
    total_wall = time.perf_counter() - start
    syn_rows, real_rows = [t[2] for t in timed[:n]], [t[2] for t in timed[n:]]
    syn_wall = max(t[1] for t in timed[:n]) - min(t[0] for t in timed[:n])
    real_wall = max(t[1] for t in timed[n:]) - min(t[0] for t in timed[n:])

    summary = summarise([r["synthetic_val_accuracy"] for r in syn_rows], [r["real_val_accuracy"] for r in real_rows])
    from scipy.stats import rankdata

    syn_rank = rankdata([-r["synthetic_val_accuracy"] for r in syn_rows], method="min")
    real_rank = rankdata([-r["real_val_accuracy"] for r in real_rows], method="min")
    rows = []
    for j, c in enumerate(candidates):
        rows.append({"index": c.index, "name": c.name, "model_args": dict(c.args), **c.args, "params": params[j],
                     "seed": seeds[j], **syn_rows[j], **real_rows[j], "synthetic_rank": int(syn_rank[j]),
                     "real_rank": int(real_rank[j])})
    summary["synthetic_best_name"] = rows[summary["synthetic_best"]]["name"]
    summary["real_best_name"] = rows[summary["real_best"]]["name"]
    syn_train = sum(r["synthetic_train_seconds"] for r in syn_rows)
    real_train = sum(r["real_train_seconds"] for r in real_rows)
    times = {"synthetic_train_seconds": syn_train, "real_train_seconds": real_train,
             "synthetic_wall_seconds": syn_wall, "real_wall_seconds": real_wall, "total_wall_seconds": total_wall,
             "train_seconds_ratio": _ratio(real_train, syn_train), "wall_seconds_ratio": _ratio(real_wall, syn_wall)}
    eval_dict = {k: v for k, v in eval_settings.as_dict().items() if k != "model_args"}
    settings = {"synthetic_protocol": eval_dict, "real_proxy": real.as_dict(), "val_size": val_size,
                "real_train_images": len(train), "val_images": len(val), "test_images": len(test), "seed": seed,
                "workers": workers, "device": device_name, "dataset": spec.name, "top_k": list(TOP_K)}
    source = {"file": None if isinstance(synthetic, SyntheticSet) else str(synthetic),
              **{k: syn.metadata.get(k) for k in ("dataset", "method", "ipc")}, "images": len(syn),
              "learned_lr": syn.learned_lr, "zca": syn.zca is not None}
    result = NASResult(the_space, settings, rows, summary, times, source)
    if out is not None:
        write_report(result, out)
    return result


# ------------------------------------------------------------------------------------------ files


CSV_COLUMNS = ("real_rank", "synthetic_rank", "index", "name", "params", "synthetic_val_accuracy",
               "real_val_accuracy", "synthetic_test_accuracy", "real_test_accuracy", "synthetic_train_seconds",
               "real_train_seconds", "synthetic_val_accuracies", "synthetic_test_accuracies", "seed")


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ";".join(_csv_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def render_csv(result: NASResult) -> str:
    """``nas.csv``: one row per candidate in grid order (per-network accuracies joined with ``;``);
    the grid keys come after ``name``."""
    keys = list(result.space.grid)
    columns = [*CSV_COLUMNS[:4], *keys, *CSV_COLUMNS[4:]]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in result.rows:
        writer.writerow([_csv_value(row.get(k)) for k in columns])
    return buf.getvalue()


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render_markdown(result: NASResult) -> str:
    """``nas.md``: what was searched, the summary, and the table sorted by the real ranking."""
    s, t, cfg = result.summary, result.times, result.settings
    n = s["candidates"]
    space = result.space
    grid = "; ".join(f"{k} {{{', '.join(str(v) for v in vals)}}}" for k, vals in space.grid.items())
    sampled = f", {space.sample} sampled (seed {space.seed})" if space.sample else ""
    src = result.synthetic
    proto, real = cfg["synthetic_protocol"], cfg["real_proxy"]
    subset = "all" if real["subset"] is None else f"{real['subset']} per class,"
    workers = "in this process" if cfg["workers"] <= 1 else f"{cfg['workers']} worker processes"
    augment = "no augmentation" if real["dsa_strategy"] in ("", "none", "None") else f"DSA `{real['dsa_strategy']}`"
    rho = s["spearman"]
    lines = [
        f"# Architecture search: {n} {space.family} candidates",
        "",
        f"- space: {grid} (grid of {space.grid_size}{sampled})",
        f"- synthetic set: {src.get('images')} images ({src.get('method')}, IPC {src.get('ipc')}, {src.get('dataset')})"
        + (f", `{src['file']}`" if src.get("file") else ""),
        f"- synthetic side: {proto['num_eval']} network(s) × {proto['epochs']} epochs, DSA `{proto['dsa_strategy']}`",
        f"- real proxy: 1 network × {real['epochs']} epoch(s) over {subset} {cfg['real_train_images']} real training "
        f"images, {augment}",
        f"- ranking: validation accuracy on {cfg['val_images']} images carved from the real training set "
        f"(seed {cfg['seed']}); test accuracy ({cfg['test_images']} images) reported, never used to rank",
        "",
        "## Summary",
        "",
        f"- Spearman ρ (synthetic vs real validation ranking): all {_fmt(rho['all'])}, "
        + ", ".join(f"top-{k} {_fmt(rho.get(f'top{k}'))}" for k in cfg["top_k"])
        + (" (— = undefined: fewer candidates than k, or one side constant)" if None in rho.values() else ""),
        f"- best architecture agrees: {'yes' if s['best_agrees'] else 'no'}; "
        f"synthetic-best `{s['synthetic_best_name']}` "
        f"has real rank {s['synthetic_best_real_rank']} of {n} (regret {s['regret']:.2f} points); real best "
        f"`{s['real_best_name']}` has synthetic rank {s['real_best_synthetic_rank']}",
        f"- search time, training only: synthetic {t['synthetic_train_seconds']:.1f} s, real "
        f"{t['real_train_seconds']:.1f} s (real ÷ synthetic {_fmt(t['train_seconds_ratio'], 1)}×)",
        f"- search time, wall ({workers}): synthetic {t['synthetic_wall_seconds']:.1f} s, real "
        f"{t['real_wall_seconds']:.1f} s (real ÷ synthetic {_fmt(t['wall_seconds_ratio'], 1)}×); "
        f"{t['total_wall_seconds']:.1f} s in all" + (", worker start-up included" if cfg["workers"] > 1 else ""),
        "",
        "## Candidates (by real validation rank)",
        "",
        "| real rank | syn. rank | candidate | params | syn. val % | real val % | syn. test % | real test % |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(result.rows, key=lambda r: (r["real_rank"], r["index"])):
        lines.append(f"| {r['real_rank']} | {r['synthetic_rank']} | `{r['name']}` | {r['params']:,} | "
                     f"{r['synthetic_val_accuracy']:.2f} | {r['real_val_accuracy']:.2f} | "
                     f"{r['synthetic_test_accuracy']:.2f} | {r['real_test_accuracy']:.2f} |")
    return "\n".join(lines) + "\n"


def scatter_figure(result: NASResult):
    """Synthetic (x) against real (y) validation accuracy, one point per candidate; the
    synthetic-best and the real best marked. A :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot)."""
    from matplotlib.figure import Figure

    rows, s = result.rows, result.summary
    x = [r["synthetic_val_accuracy"] for r in rows]
    y = [r["real_val_accuracy"] for r in rows]
    fig = Figure(figsize=(6.4, 5.0), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(x, y, s=22, color="tab:blue", alpha=0.7, label="candidate")
    sb, rb = s["synthetic_best"], s["real_best"]
    ax.scatter([x[sb]], [y[sb]], s=160, marker="*", color="tab:orange", zorder=3,
               label=f"synthetic-best: {rows[sb]['name']}")
    ax.scatter([x[rb]], [y[rb]], s=140, facecolors="none", edgecolors="tab:red", linewidths=1.8, zorder=4,
               label=f"real best: {rows[rb]['name']}")
    ax.set_xlabel("validation accuracy after training on the synthetic set (%)")
    ax.set_ylabel("validation accuracy after the real proxy (%)")
    ax.set_title(f"{result.space.family} search, {len(rows)} candidates: Spearman ρ = {_fmt(s['spearman']['all'], 2)}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return fig


def write_report(result: NASResult, out: str | os.PathLike) -> Path:
    """Write ``nas.json``, ``nas.csv``, ``nas.md`` and ``nas.png`` into ``out`` (created), each
    atomically; returns the folder.

    Raises:
        ConfigError: ``out`` exists and is not a folder.
    """
    from datadistill.io.plots import png_bytes

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output path {folder} exists and is not a folder")
    figure = png_bytes(scatter_figure(result))  # everything rendered before the first file is written
    text = {"nas.json": json.dumps(result.as_dict(), indent=2) + "\n", "nas.csv": render_csv(result),
            "nas.md": render_markdown(result)}
    for name, content in text.items():
        atomic_write_text(folder / name, content)
    atomic_write_bytes(folder / "nas.png", figure)
    return folder


__all__ = ["Candidate", "NASResult", "RealProxySettings", "SearchSpace", "TOP_K", "candidate_seed",
           "load_search_space", "parse_search_space", "render_csv", "render_markdown", "run_nas", "scatter_figure",
           "summarise", "write_report"]
