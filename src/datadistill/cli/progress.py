"""The terminal of the command line: progress bars (tqdm) and console logging.

Bars: every bar is a :class:`Bar`, and :func:`bars_on` is the one place that decides whether bars
are drawn: not with ``--quiet`` (global or the command's), not outside the main process of a
distributed run (``RANK`` ≠ 0 under torchrun), and — tqdm's own rule, ``disable=None`` — not when
stderr is not a terminal (CI logs, pipes). Bars go to stderr; results go to stdout after the bars are
closed, so a command's summary is the last thing it prints. A bar is drawn on its first update only,
so a command refused at once prints just its error line.

The library reports progress through callbacks and never prints; the adapters here
(:class:`DistillProgress`, :class:`EvalBar`, :class:`StagedBars`) turn those callbacks into bars.

Console logging (:func:`setup_logging`, called by the ``datadistill`` group): records of the
``datadistill`` logger go to stderr, printed above the bars: warnings and errors by default and with
``--quiet``, INFO with ``-v``, DEBUG with ``-vv``; the ranks other than 0 of a distributed run show
their errors only. Two child loggers are special:
``datadistill.notice`` (resuming, stopping: shown at every verbosity) and ``datadistill.run`` (a
run's own record, e.g. ``distill.log``'s per-iteration losses: never shown here).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from tqdm import tqdm

_STATE = {"quiet": False, "verbosity": 0}
LOGGER = "datadistill"
NOTICE = "datadistill.notice"
RUN_LOG = "datadistill.run"


class _Console(logging.Handler):
    """Writes records to the current stderr through ``tqdm.write`` (above any bar)."""

    def __init__(self, level: int) -> None:
        super().__init__(logging.DEBUG)
        self.shown = level

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name == RUN_LOG or name.startswith(RUN_LOG + "."):
            return False
        if not main_process():  # the other ranks of a distributed run: their errors only
            return record.levelno >= logging.ERROR
        return name == NOTICE or record.levelno >= self.shown

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno >= logging.WARNING:
                message = f"{record.levelname.lower()}: {message}"
            tqdm.write(message, file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never break a run
            self.handleError(record)


def setup_logging(verbosity: int = 0, quiet: bool = False) -> Callable[[], None]:
    """Show the ``datadistill`` logger on stderr at the level the global flags ask for (module docstring);
    remember ``quiet`` for :func:`bars_on`. Returns the function that undoes it (the group calls it when
    the command ends, so that repeated in-process invocations do not stack handlers)."""
    level = logging.WARNING if quiet or verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logger = logging.getLogger(LOGGER)
    handler = _Console(level)
    previous = logger.level, dict(_STATE)
    logger.setLevel(min(level, logging.INFO))  # INFO records reach the notice filter and distill.log
    logger.addHandler(handler)
    _STATE.update(quiet=quiet, verbosity=verbosity)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous[0])
        _STATE.update(previous[1])

    return restore


def main_process() -> bool:
    """False in the processes of a distributed run other than rank 0 (torchrun sets ``RANK``)."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


def bars_on(quiet: bool = False) -> bool | None:
    """tqdm's ``disable`` negated: False with ``--quiet`` (global or ``quiet``) or off the main
    process; else None, which lets tqdm draw only when stderr is a terminal."""
    if quiet or _STATE["quiet"] or not main_process():
        return False
    return None


class Bar:
    """One tqdm bar, made on its first update; position only moves forward (:meth:`goto`).

    Args:
        total: units of the whole task (None: unknown, no time left shown).
        desc: what is running; unit: the unit's name; quiet: the command's own ``--quiet``.
        leave: keep the finished bar on screen (False for a bar nested in another's task).
    """

    def __init__(self, total: int | None, desc: str = "", unit: str = "it", *, quiet: bool = False,
                 leave: bool = True) -> None:
        self.total, self.desc, self.unit, self.leave = total, desc, unit, leave
        self.disable = bars_on(quiet)
        self.bar: tqdm | None = None
        self.closed = False
        self.t0 = time.time()

    def mark(self) -> None:
        """The work of the first update starts now (by default: when the Bar was made)."""
        self.t0 = time.time()

    def _make(self, initial: int, backdate: bool) -> tqdm:
        if self.bar is None:
            self.bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, initial=initial, leave=self.leave,
                            disable=True if self.disable is False else None, dynamic_ncols=True,
                            mininterval=0.5)
            if backdate and not self.bar.disable:  # the first update's rate: over its own work, not 0 s
                self.bar.start_t = self.bar.last_print_t = min(self.t0, self.bar.start_t)
        return self.bar

    def goto(self, n: int, desc: str | None = None, postfix: str | None = None, *, step: int = 1,
             skip: bool = False) -> None:
        """Move to ``n`` units done (never back). The first move starts the bar at ``n − step`` (the
        units before were done by an earlier session: they do not count in the rate). ``skip``: the
        units up to ``n`` were not done now (reused), so they do not count either."""
        if self.closed:
            return
        bar = self._make(max(n if skip else n - step, 0), backdate=not skip)
        if bar.disable:  # not drawn (quiet, not a terminal, not rank 0)
            return
        if desc is not None and desc != bar.desc:
            bar.set_description_str(desc, refresh=False)
            force = True
        else:
            force = False
        if postfix is not None:
            bar.set_postfix_str(postfix, refresh=False)
        if n > bar.n:
            if skip:
                bar.n = bar.last_print_n = n
            else:
                bar.update(n - bar.n)
        if force:
            bar.refresh()  # a new unit of work is shown at once, whatever the refresh interval

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.closed = True


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


class EvalBar:
    """One bar over evaluations of ``num_eval`` networks × ``epochs`` epochs each, one per key (a model
    of ``evaluate``, the synthetic and initial set of ``distill``): "convnet network 2/3", epoch,
    training accuracy of the epoch and the last network's test accuracy. Call it ``(key, progress)``
    with an :class:`~datadistill.evaluation.EvalProgress`."""

    def __init__(self, keys: Sequence[Hashable], num_eval: int | None, epochs: int | None, *,
                 names: Mapping[Hashable, str] | None = None, quiet: bool = False, leave: bool = True) -> None:
        # num_eval or epochs None (set by an evaluation protocol): sized at the first progress report
        self.keys, self.names = list(keys), dict(names or {})
        self.per_key = num_eval * epochs if num_eval is not None and epochs is not None else None
        self.bar = Bar(len(self.keys) * self.per_key if self.per_key else None,
                       self._name(self.keys[0]) if self.keys else "", "epoch", quiet=quiet, leave=leave)
        self.last_test: float | None = None
        self.key: Hashable | None = None

    def _name(self, key: Hashable) -> str:
        return self.names.get(key, str(key))

    def __call__(self, key: Hashable, p) -> None:
        if key not in self.keys:
            self.keys.append(key)
        if key != self.key:
            self.key, self.last_test = key, None
        if self.per_key is None:
            self.per_key = p.num_eval * p.epochs
            self.bar.total = len(self.keys) * self.per_key
        offset = self.keys.index(key) * self.per_key
        nets, k = p.networks, p.num_eval
        who = f"network {nets.start + 1}/{k}" if len(nets) == 1 else f"networks {nets.start + 1}–{nets.stop}/{k}"
        if p.test_accuracy is not None:
            self.last_test = p.test_accuracy
        postfix = f"epoch {p.epoch}/{p.epochs}, train {_pct(p.train_accuracy)}"
        if self.last_test is not None:
            postfix += f", last test {_pct(self.last_test)}"
        self.bar.goto(offset + nets.start * p.epochs + p.epoch * len(nets), f"{self._name(key)} {who}", postfix,
                      step=len(nets), skip=p.reused)

    def close(self) -> None:
        self.bar.close()


def distill_steps(config) -> int:
    """The optimisation steps of a distillation run (the method's resolved iterations)."""
    from datadistill.methods import METHODS

    return METHODS.get(config.method).resolve_run_config(config).iterations


class DistillProgress:
    """The bars of one distillation: its optimisation steps (loss every 10 steps), then its evaluation
    (an :class:`EvalBar`). ``step`` is a step callback of :func:`~datadistill.api.run_distill`,
    ``evaluation`` its ``on_eval``; :meth:`run_options` gives both as keyword arguments."""

    def __init__(self, config, *, quiet: bool = False, leave: bool = True, label: str | None = None) -> None:
        self.config = config
        self.label = label or f"{config.method} {config.dataset} ipc{config.ipc}"
        self.steps = Bar(distill_steps(config), self.label, "it", quiet=quiet, leave=leave)
        subjects = ["synthetic set"] + (["initial set"] if config.eval_init else [])
        ours = config.eval_protocol == "ours"  # a paper protocol's sizes are known at its first report
        self.eval = EvalBar(subjects, max(config.num_eval, 1) if ours else None, config.eval_epochs if ours else None,
                            quiet=quiet, leave=leave,
                            names={"synthetic set": f"{self.label} evaluation",
                                   "initial set": f"{self.label} initial set"})

    def step(self, it: int, metrics: Mapping[str, float]) -> None:
        self.eval.bar.mark()  # the evaluation starts after the last step
        loss = metrics.get("loss")
        self.steps.goto(it, postfix=f"loss {loss:.4g}" if it % 10 == 0 and loss is not None else None)

    def evaluation(self, subject: str, p) -> None:
        self.steps.close()
        self.eval(subject, p)

    def run_options(self) -> dict[str, Any]:
        return {"callbacks": [self.step], "on_eval": self.evaluation}

    def close(self) -> None:
        self.steps.close()
        self.eval.close()


class CompareProgress:
    """``compare``: a bar over the grid's cells ("cell 3/8: dm ipc10 real seed 0") and, under it, the
    running cell's own bars (a :class:`DistillProgress`, cleared when the cell ends). ``cell`` is
    :func:`~datadistill.experiments.compare.run_compare`'s ``progress``, ``run_options`` its
    ``run_options``."""

    def __init__(self, cells: Sequence, *, quiet: bool = False) -> None:
        self.index = {c.name: i for i, c in enumerate(cells)}
        self.count, self.quiet = len(cells), quiet
        self.bar = Bar(self.count, "compare", "cell", quiet=quiet)
        self.finished = 0
        self.inner: DistillProgress | None = None

    def run_options(self, cell) -> dict[str, Any]:
        c = cell.config
        self.inner = DistillProgress(c, quiet=self.quiet, leave=False, label=f"{cell.label} ipc{c.ipc}")
        self.bar.goto(self.finished, f"cell {self.index.get(cell.name, 0) + 1}/{self.count}: {cell.label} "
                                     f"ipc{c.ipc} {c.init} seed {c.seed}")
        return self.inner.run_options()

    def cell(self, name: str, status: str) -> None:
        if status == "running":
            return
        if self.inner is not None:
            self.inner.close()
            self.inner = None
        self.finished += 1
        self.bar.goto(self.finished, postfix=f"last {status}", skip=status in ("reused", "skipped"))

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
        self.bar.close()


class StagedBars:
    """One bar per stage of a run, one after another (e.g. federated: clients, server, rounds): a call
    ``(stage, done, total)`` closes the previous stage's bar when the stage changes."""

    def __init__(self, labels: Mapping[str, str] | None = None, units: Mapping[str, str] | None = None, *,
                 quiet: bool = False) -> None:
        self.labels, self.units, self.quiet = dict(labels or {}), dict(units or {}), quiet
        self.stage: str | None = None
        self.bar: Bar | None = None

    def __call__(self, stage: str, done: int, total: int | None, desc: str | None = None,
                 postfix: str | None = None, *, skip: bool = False) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = Bar(total, self.labels.get(stage, stage), self.units.get(stage, "it"), quiet=self.quiet)
        self.bar.goto(done, desc, postfix, skip=skip)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None


__all__ = ["Bar", "CompareProgress", "DistillProgress", "EvalBar", "StagedBars", "bars_on", "distill_steps", "main_process",
           "setup_logging"]
