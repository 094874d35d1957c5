"""Difficulty-score coresets as methods: ``el2n``, ``grand``, ``forgetting`` and ``uncertainty`` keep the
``ipc`` hardest (or easiest) real images of every class by that score (scores and their sources in
:mod:`datadistill.selection.difficulty`). Like the other coreset methods they run no iterations and
ignore the run's ``init``.

The scores are computed on the training set the method is given (``score_networks`` networks of the
distillation model, trained ``score_epochs`` epochs with the run's DSA strategy, seeded from the
run's generator), or read from ``scores_file`` (written by ``datadistill scores`` /
:func:`~datadistill.selection.save_scores`), which must score exactly that training set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from datadistill.data import DatasetSpec, RealSet
from datadistill.errors import ConfigError
from datadistill.methods.base import MethodConfig, register_method
from datadistill.methods.coreset import CoresetMethod
from datadistill.selection import FeatureSettings
from datadistill.selection.difficulty import (KEEP, DifficultyScores, ScoreSettings, compute_scores,
                                              load_scores)


@dataclass
class DifficultyConfig(MethodConfig):
    """Difficulty-coreset settings (lr_img, momentum_img and batch_real are unused).

    Attributes:
        keep: ``hardest`` (highest scores) or ``easiest`` (lowest) images of every class.
        scores_file: a precomputed scores file of the same score over the same training set
            ("" = compute the scores).
        score_networks: scoring networks averaged (≥ 1).
        score_epochs: training epochs of each (≥ 0; ≥ 1 for ``forgetting``).
    """

    keep: str = "hardest"
    scores_file: str = ""
    score_networks: int = 3
    score_epochs: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.keep not in KEEP:
            raise ConfigError(f"keep must be one of {', '.join(KEEP)}, got {self.keep!r}")
        if self.score_networks < 1:
            raise ConfigError(f"score_networks must be ≥ 1, got {self.score_networks}")
        if self.score_epochs < 0:
            raise ConfigError(f"score_epochs must be ≥ 0, got {self.score_epochs}")


class DifficultyMethod(CoresetMethod):
    """Base of the score-based selections; the registered name is the score.

    Raises (at construction):
        ConfigError: ``forgetting`` with ``score_epochs`` 0 and no scores file; a scores file of
            another score or whose size or labels differ from the training set.
        ScoresFileError: the scores file is missing or unreadable.
    """

    config_class = DifficultyConfig
    config: DifficultyConfig

    def __init__(self, config: DifficultyConfig, spec: DatasetSpec, real: RealSet, **kwargs) -> None:
        super().__init__(config, spec, real, **kwargs)  # keyword arguments of Distiller
        self.scores: DifficultyScores | None = None
        if config.scores_file:
            self.scores = self._load(config.scores_file)
        elif self.name == "forgetting" and config.score_epochs < 1:
            raise ConfigError("forgetting counts events over training: score_epochs must be ≥ 1, got 0")

    def _load(self, path: str) -> DifficultyScores:
        scores = load_scores(path)
        if scores.score != self.name:
            raise ConfigError(f"scores_file {path} holds {scores.score} scores, not {self.name}: "
                              f"use --method {scores.score} or a {self.name} scores file")
        n = int(self.real.labels.shape[0])
        if len(scores) != n:
            raise ConfigError(f"scores_file {path} scores {len(scores)} images but the training set has {n} "
                              "(a different dataset, or a validation split carved off)")
        if not torch.equal(scores.labels, self.real.labels.long().cpu()):
            raise ConfigError(f"scores_file {path}: its labels differ from the training set's "
                              "(scores of another dataset or another order)")
        return scores

    def score_settings(self) -> ScoreSettings:
        """Scoring networks: the distillation model, the run's DSA strategy, a seed drawn from the run's
        generator (so the selection repeats with the run seed)."""
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))
        return ScoreSettings(model=self.model, num_networks=self.config.score_networks,
                             epochs=self.config.score_epochs, dsa_strategy=self.dsa.strategy, seed=seed)

    def feature_settings(self) -> FeatureSettings:
        return FeatureSettings(model=self.model)

    def initialise(self, init: str = "") -> None:
        """Compute (or reuse) the scores and keep ``ipc`` images per class; ``init`` is ignored.
        The scores stay in :attr:`scores`."""
        if self.scores is None:
            data = self.real.data
            self.scores = compute_scores(self.name, data, self.spec, self.score_settings(), self.device)
        idx = self.scores.select(self.ipc, self.spec.num_classes, self.config.keep)
        self.images = self.real.take(idx).detach().clone().to(self.device)
        self.images.requires_grad_(True)
        self.labels = torch.arange(self.spec.num_classes, device=self.device).repeat_interleave(self.ipc)
        self.iteration = 0
        self._setup_optimiser()


@register_method("el2n")
class EL2N(DifficultyMethod):
    """Keep the hardest / easiest images by EL2N (Paul et al. 2021)."""


@register_method("grand")
class GraNd(DifficultyMethod):
    """Keep the hardest / easiest images by GraNd (Paul et al. 2021)."""


@register_method("forgetting")
class Forgetting(DifficultyMethod):
    """Keep the most / least forgotten images (Toneva et al. 2019)."""


@register_method("uncertainty")
class Uncertainty(DifficultyMethod):
    """Keep the least / most confidently classified images (least confidence, DeepCore)."""


__all__ = ["DifficultyConfig", "DifficultyMethod", "EL2N", "Forgetting", "GraNd", "Uncertainty"]
