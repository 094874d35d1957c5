"""What a distillation or an evaluation logs to its experiment trackers (``log_to``, ``--log-to``;
the trackers themselves are :mod:`datadistill.io.tracking`).

A distillation (:class:`RunTracking`) logs, with the iteration as the step:

* the full configuration (the method's resolved settings under ``method_args``) as parameters, once;
* every metric the method's step returns (``loss``, its terms where the method reports them, the
  learned ``lr`` and ``start_epoch`` of the MTT family, ``skipped``), every iteration;
* the synthetic set's grid (``synthetic``): the initial set's at step 0, every ``log_grid_every``
  iterations and at the end (the set kept, which is the best candidate's under ``select_every``);
* at the last iteration: the evaluation (``eval/accuracy_mean``, ``eval/accuracy_std``, each network's
  ``eval/accuracy_<k>``, ``eval/train_accuracy_mean``, the balanced and initial-set accuracies when
  there are some), ``distill_seconds``, ``eval_seconds``, ``learned_lr``, ``selected_iteration``;
* the output files as artefacts (MLflow, W&B).

Nothing here draws random numbers or changes what the run computes: the grid is drawn from a copy of
the set, made only at the iterations it is logged.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datadistill._version import __version__
from datadistill.config import DistillConfig
from datadistill.io.grid import grid_pixels
from datadistill.io.synthetic_set import SyntheticSet
from datadistill.io.tracking import TrackerGroup, check_trackers, open_trackers

if TYPE_CHECKING:
    from datadistill.api.pipeline import DistillResult

#: the files of a distillation's output folder logged as artefacts, those that exist
RUN_FILES = ("synthetic.safetensors", "synthetic.png", "init.png", "metrics.json", "config.yaml", "distill.log")
GRID_KEY = "synthetic"

SetCallback = Callable[[int, Mapping[str, float], Callable[[], SyntheticSet]], None]


def log_grid(trackers: TrackerGroup, syn: SyntheticSet, step: int, key: str = GRID_KEY) -> None:
    """The grid of ``syn`` (as ``synthetic.png`` shows it) to every tracker at ``step``."""
    trackers.log_image(key, grid_pixels(syn.images, syn.hard_labels, syn.metadata["mean"], syn.metadata["std"],
                                        zca=syn.zca), step)


class RunTracking:
    """The trackers of one distillation (``config.log_to``) writing under ``out``; a context manager
    that closes them (as failed when the run raised).

    The trackers are opened when the optimisation loop starts (:meth:`on_step` with empty metrics), at
    the iteration a resumed run goes on from; a run that fails before opens none. The parameters are
    the configuration recorded with the set (``config.yaml``) and the tracker settings.

    Raises:
        ConfigError: a tracker whose package is not installed (:func:`~datadistill.io.tracking.check_trackers`).
    """

    def __init__(self, config: DistillConfig, out: str | Path) -> None:
        check_trackers(config.log_to)
        self.names = list(config.log_to)
        self.every = config.log_grid_every
        self.out = Path(out)
        self.params: dict[str, Any] = {}
        if self.names:
            from datadistill.api.checkpointing import resolve_run, run_settings

            _, _, resolved, method_cfg = resolve_run(config)
            self.params = {**run_settings(resolved, method_cfg), "log_to": self.names, "log_grid_every": self.every,
                           "out": str(self.out), "package_version": __version__}
        self.trackers: TrackerGroup | None = None
        self.last_grid: int | None = None

    @property
    def set_callbacks(self) -> list[SetCallback]:
        """What :func:`~datadistill.api.pipeline.distill` calls before the loop and after every step."""
        return [self.on_step] if self.names else []

    def on_step(self, iteration: int, metrics: Mapping[str, float], current: Callable[[], SyntheticSet]) -> None:
        """``metrics`` empty: the loop starts at ``iteration`` (open, log the settings and the grid)."""
        if self.trackers is None:
            self.trackers = open_trackers(self.names, self.out, run_name=self.out.name, start_step=iteration)
            self.trackers.log_params(self.params)
        if metrics:
            self.trackers.log_metrics(metrics, iteration)
        if (iteration == 0 and not metrics) or (metrics and self.every and iteration % self.every == 0):
            log_grid(self.trackers, current(), iteration)
            self.last_grid = iteration

    def finish(self, result: DistillResult) -> None:
        """After the output files are written: the evaluation, the final grid, the files; then close."""
        if self.trackers is None:
            return
        step = result.iterations_run
        self.trackers.log_metrics(summary_metrics(result.metrics()), step)
        if self.last_grid != step or result.selection:
            log_grid(self.trackers, result.synthetic_set, step)
        for name in RUN_FILES:
            if (self.out / name).is_file():
                self.trackers.log_artifact(self.out / name)
        self.close()

    def close(self, failed: bool = False) -> None:
        if self.trackers is not None:
            trackers, self.trackers = self.trackers, None
            trackers.close(failed)

    def __enter__(self) -> RunTracking:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close(failed=exc_type is not None)
        return False


def summary_metrics(m: Mapping[str, Any]) -> dict[str, float]:
    """The scalars of a run's ``metrics.json`` content logged at its last iteration."""
    out: dict[str, float] = {}
    for k, a in enumerate(m.get("accuracies") or []):
        out[f"eval/accuracy_{k}"] = a
    if m.get("train_accuracies"):
        out["eval/train_accuracy_mean"] = statistics.fmean(m["train_accuracies"])
    for key in ("accuracy_mean", "accuracy_std", "balanced_accuracy_mean", "balanced_accuracy_std",
                "init_accuracy_mean", "init_accuracy_std"):
        if m.get(key) is not None:
            out[f"eval/{key}"] = m[key]
    for key in ("distill_seconds", "eval_seconds", "learned_lr", "selected_iteration", "skipped_iterations"):
        if m.get(key) is not None:
            out[key] = m[key]
    return out


def track_evaluation(names: Sequence[str], out: str | Path, params: Mapping[str, Any], evaluation: Mapping[str, Any],
                     syn: SyntheticSet, files: Sequence[str | Path] = ()) -> None:
    """Log an evaluation (``datadistill evaluate --log-to``) at step 0: ``params``, per architecture
    ``eval/<model>/accuracy_mean``, ``…/accuracy_std``, ``…/accuracy_<k>``, ``…/train_accuracy_mean``
    (and the balanced accuracy, the cost against a baseline and the mean DD-Ranking scores
    ``eval/<model>/<labels>_labels/{hlr,ior,lrs,ars}_mean`` when there are some), the set's grid and
    ``files`` as artefacts."""
    if not names:
        return
    metrics: dict[str, float] = {}
    for row in evaluation["rows"]:
        prefix = f"eval/{row['model']}/"
        for k, a in enumerate(row["accuracies"]):
            metrics[f"{prefix}accuracy_{k}"] = a
        for key in ("accuracy_mean", "accuracy_std", "train_accuracy_mean", "balanced_accuracy_mean",
                    "balanced_accuracy_std", "eval_seconds"):
            if row.get(key) is not None:
                metrics[prefix + key] = row[key]
    for cost in evaluation.get("cost") or []:
        for key in ("accuracy_gap", "time_speedup", "flops_ratio"):
            if cost.get(key) is not None:
                metrics[f"eval/{cost['model']}/{key}"] = cost[key]
    ranked = evaluation.get("ranking_scores") or {}
    for mode, scores in (ranked.get("scores") or {}).items():  # evaluate --scores: fractions
        for key in ("hlr", "ior", "lrs", "ars"):
            metrics[f"eval/{ranked['model']}/{mode}_labels/{key}_mean"] = scores[f"{key}_mean"]
    out = Path(out)
    trackers = open_trackers(names, out, run_name=out.name)
    try:
        trackers.log_params({**params, "package_version": __version__})
        log_grid(trackers, syn, 0)
        trackers.log_metrics(metrics, 0)
        for path in files:
            if Path(path).is_file():
                trackers.log_artifact(Path(path))
    except BaseException:
        trackers.close(failed=True)
        raise
    trackers.close()


__all__ = ["GRID_KEY", "RUN_FILES", "RunTracking", "SetCallback", "log_grid", "summary_metrics", "track_evaluation"]
