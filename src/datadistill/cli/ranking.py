"""``evaluate --scores``: the flags of the DD-Ranking scores, their progress bar and their printed table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

LR_GRID_HELP = "0.001,0.005,0.01,0.05,0.1"


def score_options(f):
    """The flags of ``evaluate --scores`` (applied in reverse, so they show in this order)."""
    options = [
        click.option("--scores", is_flag=True,
                     help="Also compute the DD-Ranking scores (HLR, IOR, LRS, ARS; accuracies as fractions) on the "
                          "first model: needs --baseline (a baseline folder, or a new folder where it is trained)."),
        click.option("--teacher", type=click.Path(dir_okay=False), default=None,
                     help="--scores: model file whose logits are R's soft labels (soft-label sets). Default: the "
                          "baseline's model.safetensors."),
        click.option("--score-labels", type=click.Choice(["auto", "hard", "soft", "both"]), default="auto",
                     show_default=True,
                     help="--scores: label modes (auto: hard, and soft too for a set with soft labels)."),
        click.option("--lr-grid", default=None,
                     help=f"--scores: comma-separated lrs searched on the validation split per set and protocol. "
                          f"Default: {LR_GRID_HELP} (--eval-lr X: X only, no search)."),
        click.option("--select-networks", type=int, default=1, show_default=True,
                     help="--scores: networks per lr and protocol in the lr search."),
        click.option("--select-epochs", type=int, default=None,
                     help="--scores: epochs of a search network. Default: --eval-epochs."),
        click.option("--val-size", type=int, default=None,
                     help="--scores: validation images carved from the training set (class-balanced) for the lr "
                          "search; never in R, never the test set. Default: a tenth of the training set, at most 5000."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def ranking_settings(scores: bool, lr_grid: str | None, eval_lr: float | None, **values):
    """The :class:`~datadistill.evaluation.ranking_protocol.RankingSettings` of the flags (None without --scores)."""
    from datadistill.evaluation.ranking_protocol import RankingSettings

    if not scores:
        return None
    if lr_grid is not None:
        try:
            grid = tuple(float(v) for v in lr_grid.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"{lr_grid!r} is not a comma-separated list of numbers, e.g. {LR_GRID_HELP}",
                                     param_hint="--lr-grid") from None
        values["lr_grid"] = grid
    elif eval_lr is not None:
        values["lr_grid"] = (eval_lr,)
    return RankingSettings(**values)


class ScoreBar:
    """One bar over the networks of the scores: phase, protocol, lr and the last accuracy."""

    def __init__(self) -> None:
        from datadistill.cli.progress import Bar

        self.bar = Bar(None, "scores", "network")

    def __call__(self, step) -> None:
        self.bar.total = step.total
        what = "validation" if step.phase == "select" else "test"
        self.bar.goto(step.done, f"scores: {'choosing lr' if step.phase == 'select' else 'run'} {step.training}",
                      f"lr {step.lr:g}, {what} {step.accuracy:.3f}")

    def close(self) -> None:
        self.bar.close()


def echo_scores(r: Mapping[str, Any]) -> None:
    """The printed table of ``evaluation.json``'s ``ranking_scores``."""
    click.echo(f"DD-Ranking scores ({r['model']}, K = {r['num_eval']} runs, accuracies as fractions, "
               f"Acc(real, hard) = {r['real_hard_accuracy']:.4f} from the whole-data baseline):")
    click.echo(f"{'labels':<8} {'HLR (↓)':>17} {'IOR (↑)':>17} {'LRS (↑)':>17} {'ARS (↑)':>17}")
    for mode in r["modes"]:
        s = r["scores"][mode]
        mark = " *" if mode == r.get("primary_mode") and len(r["modes"]) > 1 else ""
        click.echo(f"{mode + mark:<8} " + " ".join(f"{s[k + '_mean']:>8.4f} ± {s[k + '_std']:<6.4f}"
                                                   for k in ("hlr", "ior", "lrs", "ars")))
    rows = [(name, r["lr"][name], accs) for name, accs in r["accuracies"].items()]
    click.echo("protocol        lr (how chosen)        test accuracy (mean over runs)")
    for name, lr, accs in rows:
        how = lr["source"] if lr["source"] != "grid" else "validation"
        click.echo(f"{name:<15} {lr['chosen']:<8g} ({how:<10})  {sum(accs) / len(accs):.4f}")
    if len(r["modes"]) > 1:
        click.echo("* the set's own labels")


__all__ = ["ScoreBar", "echo_scores", "ranking_settings", "score_options"]
