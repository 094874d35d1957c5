"""Expert trajectories for the trajectory-matching family (MTT, DATM, PAD).

An *expert* is a network trained on the real training set; its *trajectory* is its parameters at the
start of training (epoch 0) and after every epoch. Reference settings (MTT, Cazenavette et al. CVPR
2022, `buffer.py`): SGD lr 0.01 without momentum or weight decay, mini-batches of 256, DSA on every
batch, 50 epochs. PAD (Li et al. 2024, §3.1) trains its experts on a difficulty-scheduled subset of
each class (:class:`Curriculum`).

On disk (``--out DIR``): ``experts.json`` and one file per expert and epoch, the layout of
:mod:`datadistill.trajectory.buffer` (whose :class:`~datadistill.trajectory.buffer.ExpertBuffer` loads
them). Every file is written atomically, so a killed run leaves only whole epochs behind and
:func:`train_experts` continues from the last finished epoch of every expert (the shuffling and
augmentation stream is restored from the RNG state saved with each epoch, so a resumed trajectory
equals an uninterrupted one).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from datadistill._version import __version__
from datadistill.config import check_fields
from datadistill.data import SplitDataset
from datadistill.distributed import world
from datadistill.errors import ConfigError
from datadistill.fsutil import atomic_write_text, check_output_folder
from datadistill.io.tensor_file import write_tensor_file
from datadistill.models import MODELS, build_model
from datadistill.record import RunRecord
from datadistill.runtime import make_generator
from datadistill.training import FitState, Hooks, TrainRecipe, accuracy, fit_network, holds_recipe, recipe_settings_dict
from datadistill.training.sam import GSAM_ALPHA, GSAM_RHO, OPTIMISERS, base_optimiser, make_gsam
from datadistill.trajectory.buffer import (FORMAT, FORMAT_VERSION, MANIFEST, MOMENTUM_PREFIX, RNG_KEY, epoch_path,
                                           finished_epochs, read_epoch)
from datadistill.units import check_shared_folder, run_units

log = logging.getLogger("datadistill")
notice = logging.getLogger("datadistill.notice")

RESUME_KEYS = ("dataset", "model", "settings", "preprocessing")  # what a resumed folder must share


@dataclass(frozen=True)
class Curriculum:
    """PAD's difficulty schedule of the data an expert sees (Li et al. 2024, §3.1, "filtering
    information extraction").

    Each class's images are ranked easy → hard by a difficulty score. At epoch e (0-based) the expert
    trains on the slice ``[lo, hi)`` of every class's ranking, with
    ``hi = ceil(n · (init_ratio + (1 − init_ratio) · min(e / add_end_epoch, 1)))`` (the easiest
    ``init_ratio`` first, harder ones added linearly until ``add_end_epoch``) and
    ``lo = floor(n · rm_easy_ratio_first)`` from ``rm_epoch_first`` on, ``floor(n · rm_easy_ratio_second)``
    from ``rm_epoch_second`` on (the easiest dropped late in training), else 0.

    Attributes:
        scores_file: the difficulty scores (``datadistill scores``), one per training image.
        init_ratio, add_end_epoch, rm_epoch_first, rm_epoch_second, rm_easy_ratio_first,
        rm_easy_ratio_second: the schedule above (paper values 0.75, 20, 40, 60, 0.1, 0.2 for 100-epoch experts).
    """

    scores_file: str
    init_ratio: float = 0.75
    add_end_epoch: int = 20
    rm_epoch_first: int = 40
    rm_epoch_second: int = 60
    rm_easy_ratio_first: float = 0.1
    rm_easy_ratio_second: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.init_ratio <= 1:
            raise ConfigError(f"init_ratio = {self.init_ratio} is invalid: expected a fraction in (0, 1]")
        for name in ("rm_easy_ratio_first", "rm_easy_ratio_second"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} = {getattr(self, name)} is invalid: expected a fraction in [0, 1)")
        for name in ("add_end_epoch", "rm_epoch_first", "rm_epoch_second"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} = {getattr(self, name)} is invalid: expected an epoch ≥ 0")

    def window(self, epoch: int, n: int) -> tuple[int, int]:
        """The slice ``(lo, hi)`` of a class's easy → hard ranking of ``n`` images used at ``epoch``."""
        grow = 1.0 if self.add_end_epoch == 0 else min(epoch / self.add_end_epoch, 1.0)
        hi = min(n, math.ceil(n * (self.init_ratio + (1.0 - self.init_ratio) * grow) - 1e-9))
        lo = 0
        if epoch >= self.rm_epoch_second:
            lo = math.floor(n * self.rm_easy_ratio_second)
        elif epoch >= self.rm_epoch_first:
            lo = math.floor(n * self.rm_easy_ratio_first)
        return min(lo, hi - 1), max(hi, 1)

    def subset(self, epoch: int, order_by_class: list[torch.Tensor]) -> torch.Tensor:
        """Indices (into the training set) used at ``epoch``: every class's window, concatenated."""
        parts = []
        for order in order_by_class:
            lo, hi = self.window(epoch, len(order))
            parts.append(order[lo:hi])
        return torch.cat(parts)


EXPERT_RECIPE = TrainRecipe(epochs=50, lr=0.01, batch_size=256, momentum=0.0, weight_decay=0.0, schedule="constant",
                            augmentation=None)
"""MTT's ``buffer.py``: plain SGD at lr 0.01 (lr_teacher), no momentum or weight decay, mini-batches of
256, constant lr, the dataset's DSA strategy, 50 epochs."""


@holds_recipe("epochs", "lr", "momentum", "weight_decay", "batch_size", "dsa_strategy")
@dataclass(frozen=True)
class ExpertSettings:
    """How experts are trained (defaults: MTT's ``buffer.py``); the flat keys ``epochs``, ``lr``,
    ``momentum``, ``weight_decay``, ``batch_size``, ``dsa_strategy`` are the recipe's
    (:func:`datadistill.training.holds_recipe`).

    Attributes:
        model: registered model name.
        num_experts: trajectories to train (≥ 1).
        recipe: the training of every expert (default :data:`EXPERT_RECIPE`): ``epochs`` ≥ 1 per
            expert (epoch files 0 … epochs are written); SGD ``lr`` (MTT's lr_teacher), ``momentum``,
            ``weight_decay``, ``batch_size``; DSA on every batch, None = the dataset's default,
            ``none`` disables it; constant lr.
        seed: expert k draws its initial weights and its data stream from ``seed + k``.
        zca_eps: ZCA-whiten the inputs (fitted on the training set) with this eps; None = no ZCA.
        curriculum: PAD's data schedule, or None (every epoch sees the whole training set).
        optimizer: ``sgd`` (MTT's ``buffer.py``) or ``gsam`` (DATM's ``buffer_FTD.py`` and PAD's
            ``buffer_CL.py``: SGD wrapped in GSAM, :func:`datadistill.training.sam.make_gsam`).
        rho, alpha: GSAM's perturbation radius and surrogate-gap weight (the DATM/PAD READMEs' 0.01
            and 0.3); ignored with ``sgd``.
    """

    model: str = "convnet"
    num_experts: int = 5
    recipe: TrainRecipe = EXPERT_RECIPE
    seed: int = 0
    zca_eps: float | None = None
    curriculum: Curriculum | None = None
    optimizer: str = "sgd"
    rho: float = GSAM_RHO
    alpha: float = GSAM_ALPHA

    def __post_init__(self) -> None:
        MODELS.get(self.model)
        checks = [("optimizer", self.optimizer in OPTIMISERS, f"one of {', '.join(OPTIMISERS)}"),
                  ("rho", self.rho > 0, "a GSAM perturbation radius > 0 (DATM/PAD: 0.01)"),
                  ("alpha", 0 <= self.alpha <= 1, "a GSAM weight in [0, 1] (DATM/PAD: 0.3)"),("num_experts", self.num_experts >= 1, "an integer ≥ 1"),
                  ("epochs", self.recipe.epochs >= 1, "an integer ≥ 1"),
                  ("lr", self.recipe.lr is not None, "a finite number > 0"),
                  ("zca_eps", self.zca_eps is None or self.zca_eps > 0, "a number > 0 (or unset: no ZCA)")]
        check_fields(self, checks)

    def as_dict(self) -> dict[str, Any]:
        """The settings with the recipe's flat keys (as written in ``experts.json``). With plain SGD
        the GSAM keys are left out, so folders written before the optimiser choice existed (#21)
        keep the same settings and still resume."""
        out = recipe_settings_dict(self)
        if self.optimizer == "sgd":
            for key in ("optimizer", "rho", "alpha"):
                out.pop(key)
        return out


def _save_epoch(path: Path, net: torch.nn.Module, opt: torch.optim.Optimizer, generator: torch.Generator,
                meta: dict[str, Any]) -> None:
    tensors = dict(net.state_dict())
    tensors[RNG_KEY] = generator.get_state().clone()
    for name, p in net.named_parameters():
        buf = base_optimiser(opt).state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            tensors[MOMENTUM_PREFIX + name] = buf
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tensor_file(path, tensors, meta, FORMAT, FORMAT_VERSION)


def _trajectory_hooks(root: Path, k: int, done: int, meta: dict[str, Any], test, device: torch.device,
                      curriculum: Curriculum | None, order_by_class: list[torch.Tensor] | None,
                      progress: Callable[[int, int, float], None] | None) -> Hooks:
    """The :func:`fit_network` hooks that make expert ``k``'s run a saved trajectory: at the start,
    restore the last finished epoch ``done`` (parameters, RNG state, momentum) or save epoch 0; each
    epoch on the curriculum's subset (when given); after each, test and save the epoch."""

    def start(state: FitState) -> None:
        if done >= 0:  # resume from the last finished epoch
            tensors, _ = read_epoch(epoch_path(root, k, done))
            state.generator.set_state(tensors.pop(RNG_KEY))
            momentum = {n[len(MOMENTUM_PREFIX):]: tensors.pop(n) for n in list(tensors)
                        if n.startswith(MOMENTUM_PREFIX)}
            state.net.load_state_dict(tensors)
            for name, p in state.net.named_parameters():
                if name in momentum:
                    base_optimiser(state.optimiser).state[p]["momentum_buffer"] = momentum[name].to(device)
        else:
            _save_epoch(epoch_path(root, k, 0), state.net, state.optimiser, state.generator,
                        {**meta, "epoch": 0, "test_accuracy": None})

    def epoch_end(state: FitState) -> None:
        acc = accuracy(state.net, test, device)
        _save_epoch(epoch_path(root, k, state.epoch), state.net, state.optimiser, state.generator,
                    {**meta, "epoch": state.epoch, "test_accuracy": acc, "train_images": state.images_seen})
        log.info("expert %d epoch %d: test accuracy %.2f %%", k, state.epoch, acc)
        if progress:
            progress(k, state.epoch, acc)

    subset = None if curriculum is None else (lambda epoch: curriculum.subset(epoch, order_by_class))
    return Hooks(on_start=start, epoch_indices=subset, on_epoch_end=epoch_end)


def train_experts(data: SplitDataset, out_dir: str | os.PathLike, settings: ExpertSettings,
                  device: torch.device, order_by_class: list[torch.Tensor] | None = None,
                  progress: Callable[[int, int, float], None] | None = None, *,
                  on_start: Callable[[int, int], None] | None = None) -> Path:
    """Train ``settings.num_experts`` experts on ``data.train`` and save their trajectories in ``out_dir``.

    Expert k is independent of the others (seeded ``seed + k``): under torchrun the experts are
    spread over the ranks (:func:`datadistill.units.run_units`), each rank writing the trajectories
    it trains into ``out_dir`` (a folder every rank must see) and rank 0 the manifest; the files
    equal one process's. ``progress`` then reports the experts trained on the calling rank.

    Resumes: epochs already on disk are not retrained; an existing ``experts.json`` with different
    settings, dataset, model or preprocessing raises (:class:`datadistill.record.RunRecord`, listing
    the keys that differ) instead of mixing trajectories.

    Args:
        data: the dataset, images normalised per channel (and ZCA-whitened when ``settings.zca_eps``
            is set, by :func:`datadistill.preprocess.dataset.whiten_dataset`, whose ZCA is fitted on
            the pixels as MTT's ``buffer.py``: the manifest records ``zca_fitted_on: "pixels"``).
        order_by_class: each class's training-set indices ranked easy → hard; required with a
            curriculum (from :meth:`DifficultyScores.order_by_class`).
        progress: called ``(expert, epoch, test accuracy %)`` after each epoch.
        on_start: called ``(experts, epochs per expert)`` once the settings are checked, before any
            training (e.g. to size a progress bar; epochs already on disk are then not reported).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ConfigError: a curriculum without ``order_by_class``, or ``out_dir`` holding experts trained
            with other settings.
    """
    root = Path(out_dir)
    if settings.curriculum is not None and order_by_class is None:
        raise ConfigError("a curriculum needs the per-class easy → hard order of the difficulty scores")
    spec = data.spec
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "dataset": spec.name, "model": settings.model,
                "settings": settings.as_dict(), "channels": spec.channels, "image_size": list(spec.image_size),
                "num_classes": spec.num_classes, "preprocessing": preprocessing(spec, settings.zca_eps),
                "package_version": __version__}
    check_output_folder(root, "expert folder")
    # the run record refuses a folder of experts trained otherwise; the finished epochs are on disk
    RunRecord(root / MANIFEST, {key: manifest[key] for key in RESUME_KEYS}, format=FORMAT, version=FORMAT_VERSION,
              what="experts", settings_of=lambda content: {key: content.get(key) for key in RESUME_KEYS},
              units_of=lambda content: {}).resume()
    if world().is_main:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    check_shared_folder(root, "expert folder")  # each rank writes the trajectories it trains
    recipe = dataclasses.replace(settings.recipe, augmentation=settings.recipe.augmentation or spec.dsa_strategy)
    train = data.train.to(device)
    test = data.test.to(device)
    if on_start is not None:
        on_start(settings.num_experts, recipe.epochs)

    def train_one(k: int) -> None:  # expert k, on whichever rank claims it (torchrun: spread over the ranks)
        done = finished_epochs(root, k, recipe.epochs)
        if done == recipe.epochs:
            return
        if done > 0:
            notice.info("expert %d: resuming after epoch %d of %d", k, done, recipe.epochs)
        torch.manual_seed(settings.seed + k)
        net = build_model(settings.model, spec.channels, spec.num_classes, spec.image_size).to(device)
        generator = make_generator(settings.seed + k)
        meta = {"dataset": spec.name, "model": settings.model, "expert": k, "seed": settings.seed + k,
                "preprocessing": manifest["preprocessing"]}
        hooks = _trajectory_hooks(root, k, done, meta, test, device, settings.curriculum, order_by_class, progress)
        optimiser = None
        if settings.optimizer == "gsam":
            def optimiser(net: torch.nn.Module, recipe: TrainRecipe) -> torch.optim.Optimizer:
                return make_gsam(net, recipe, settings.rho, settings.alpha)
        # epoch files 0 … done hold done epochs of training: continue with epoch done (0-based)
        fit_network(net, train, recipe, generator, hooks, start_epoch=max(done, 0), optimiser=optimiser)

    run_units(settings.num_experts, train_one)
    return root


def preprocessing(spec, zca_eps: float | None) -> dict[str, Any]:
    """The ``preprocessing`` entry of ``experts.json``: the normalisation ``mean``/``std`` of ``spec``,
    ``zca_eps``, and with ZCA ``zca_fitted_on: "pixels"`` (the ZCA of
    :func:`~datadistill.preprocess.dataset.fit_zca`; folders written before issue #21 lack it: their
    ZCA was fitted on the normalised images)."""
    out: dict[str, Any] = {"mean": list(spec.mean), "std": list(spec.std), "zca_eps": zca_eps}
    if zca_eps is not None:
        out["zca_fitted_on"] = "pixels"
    return out


__all__ = ["Curriculum", "ExpertSettings", "train_experts"]
