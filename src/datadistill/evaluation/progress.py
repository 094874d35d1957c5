"""Progress of an evaluation, for displays: :class:`EvalProgress` (what ``on_epoch`` of
:func:`~datadistill.evaluation.evaluate_synthetic_set` is given) and :class:`EpochWatch`, which
builds it from the training's own logits. Nothing here prints; the command line draws the bars."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from datadistill.data import LabelledImages


@dataclass(frozen=True)
class EvalProgress:
    """Where an evaluation stands, for progress displays (``on_epoch`` of :func:`evaluate_synthetic_set`).

    Networks ``networks`` (several when trained together) of ``num_eval`` of ``model`` finished
    ``epoch`` of ``epochs`` epochs with ``train_accuracy`` % on that epoch's (augmented) training
    batches. A network's last report (``epoch == epochs``) adds its ``test_accuracy`` and its clean
    train accuracy; a network reused from ``parts`` reports only that, with ``reused`` True.
    """

    model: str
    networks: range
    num_eval: int
    epoch: int
    epochs: int
    train_accuracy: float | None = None
    test_accuracy: float | None = None
    reused: bool = False


class EpochWatch:
    """Counts each network's correct predictions on its training batches (from the logits the training
    computes anyway: no extra pass, no random draw) and reports an :class:`EvalProgress` per epoch.

    ``settings`` is the evaluation's (its ``model`` and ``recipe.epochs``), ``k`` the number of
    networks, ``train`` the set they train on (its hard labels, on the training device)."""

    def __init__(self, report: Callable[[EvalProgress], None], settings, k: int,
                 train: LabelledImages) -> None:
        self.report, self.model, self.k, self.epochs = report, settings.model, k, settings.recipe.epochs
        self.labels, self.n = train.labels, len(train)
        self.correct = torch.zeros(k, dtype=torch.int64, device=train.labels.device)

    def count(self, j: int, idx: torch.Tensor, logits: torch.Tensor) -> None:
        self.correct[j] += (logits.detach().argmax(dim=1) == self.labels[idx]).sum()

    def epoch_hook(self, members: list[int]):
        def hook(epoch: int, seconds: float) -> None:
            acc = 100.0 * int(self.correct[members].sum()) / max(self.n * len(members), 1)
            self.correct[members] = 0
            self.report(EvalProgress(self.model, range(members[0], members[-1] + 1), self.k, epoch, self.epochs, acc))
        return hook

    def finished(self, j: int, train_accuracy: float, test_accuracy: float, reused: bool = False) -> None:
        self.report(EvalProgress(self.model, range(j, j + 1), self.k, self.epochs, self.epochs, train_accuracy,
                                 test_accuracy, reused))


__all__ = ["EpochWatch", "EvalProgress"]
