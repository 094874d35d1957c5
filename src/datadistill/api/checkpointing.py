"""Checkpoint and resume of one distillation run (:func:`datadistill.api.run_distill`).

When a checkpoint is written (:class:`RunCheckpoint`): every ``checkpoint_every`` iterations, at
most ``checkpoint_seconds`` apart (whichever comes first), once the optimisation loop has finished
(so a kill during the evaluation does not redo the distillation), and on SIGINT / SIGTERM after the
current step (the run then stops with :class:`~datadistill.errors.RunInterrupted`, exit status 130 /
143). The files are written by :mod:`datadistill.io.checkpoint` (atomic, verified on reading).

What it holds (:meth:`RunProgress.state`): the method's whole state (``Distiller.state_dict``:
learned tensors, optimisers, counters, torch's CPU and CUDA generators and the run's generator,
which also draws DSA's parameters), Python's and NumPy's generators, the iteration, the loss
history, the skipped steps, the best-iterate selection so far, the initial set, the optimisation
seconds so far (``max_seconds`` counts them across restarts), the run's settings with their
fingerprint (:func:`datadistill.record.fingerprint`) and the package version.

Resuming (:meth:`RunCheckpoint.prepare`): the same settings (but :data:`RESUME_INDEPENDENT`) and
the same package version, else one refusal listing what differs; nothing is overwritten.

In a distributed run (torchrun, :mod:`datadistill.distributed`) rank 0 reads the checkpoint and sends
it to every rank (so the other machines need not see the folder), rank 0 alone writes it, and the
ranks agree after every step on whether a checkpoint is due or a signal arrived (on any rank), so that
all of them write (gather the state) and stop at the same step. A rank that dies mid-run leaves the
last complete checkpoint; ``torchrun --max-restarts N`` starts every rank again and they resume from it.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datadistill import distributed
from datadistill._version import __version__
from datadistill.config import DistillConfig
from datadistill.errors import CheckpointError, RunInterrupted
from datadistill.io.checkpoint import (PREV_SUFFIX, TMP_SUFFIX, LoadedCheckpoint, load_checkpoint, remove_checkpoint,
                                      sibling, write_checkpoint)
from datadistill.methods import METHODS, Distiller, MethodConfig
from datadistill.record import differences, fingerprint

notice = logging.getLogger("datadistill.notice")  # resuming and stopping: the command line always shows these

CHECKPOINT_DIR = "checkpoint"
RUN_FORMAT = "datadistill.distill_run"
RESUME_INDEPENDENT = ("data_root", "num_workers")  # where the data is read from and by how many workers
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


def resolve_run(config: DistillConfig) -> tuple[type[Distiller], DistillConfig, DistillConfig, MethodConfig]:
    """``(method class, the run as the method runs it, config with the method's init, method config)``."""
    cls = METHODS.get(config.method)
    run = cls.resolve_run_config(config)  # what the method fixes (a coreset: its init, 0 iterations)
    if run.init != config.init:  # the set's metadata records the run's init and the requested budget
        config = dataclasses.replace(config, init=run.init)
    return cls, run, config, cls.config_from_run(config)


def run_settings(config: DistillConfig, method_cfg: MethodConfig) -> dict[str, Any]:
    """The settings a checkpoint must match: the configuration recorded with the set."""
    return {**config.as_dict(), "method_args": dataclasses.asdict(method_cfg)}


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)}}


def _set_rng_state(state: dict[str, Any]) -> None:
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))


@dataclass
class RunProgress:
    """What the optimisation loop keeps besides the method's state.

    Attributes:
        initial: the initial set (a ``SyntheticSet``: init.png, ``eval_init``).
        history: ``(iteration, loss)`` of every step.
        skipped: ``[steps that changed nothing]`` (a list: the loop's callback adds to it).
        selection: ``(iteration, validation accuracy)`` of every scored candidate.
        best: ``[(validation accuracy, SyntheticSet)]`` of the best candidate so far, or empty.
        seconds: optimisation seconds of the earlier sessions of this run.
        distill_seconds: distillation seconds (construction, initialisation, loop) of the earlier sessions.
        loop_done: the optimisation loop had finished (the checkpoint written after it).
    """

    initial: Any
    history: list[tuple[int, float]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=lambda: [0])
    selection: list[tuple[int, float]] = field(default_factory=list)
    best: list[tuple[float, Any]] = field(default_factory=list)
    seconds: float = 0.0
    distill_seconds: float = 0.0
    loop_done: bool = False

    def state(self, distiller: Distiller, *, seconds: float, distill_seconds: float, loop_done: bool) -> dict[str, Any]:
        """The run's state after the distiller's last step (without settings: :meth:`RunCheckpoint.write`)."""
        best = None
        if self.best:
            score, s = self.best[0]
            best = {"score": score, "iteration": s.metadata["iterations"], "images": s.images, "labels": s.labels,
                    "lr": s.learned_lr}
        init = self.initial
        return {"iteration": distiller.iteration, "loop_done": loop_done, "seconds": seconds,
                "distill_seconds": distill_seconds, "history": [list(h) for h in self.history],
                "skipped": self.skipped[0], "selection": [list(s) for s in self.selection], "best": best,
                "initial": {"images": init.images, "labels": init.labels, "lr": init.learned_lr},
                "rng": _rng_state(), "method": distiller.state_dict()}

    @classmethod
    def restore(cls, distiller: Distiller, state: dict[str, Any],
                make_set: Callable[[torch.Tensor, torch.Tensor, float | None, int], Any]) -> "RunProgress":
        """Load ``state`` into ``distiller`` and the process's generators; the loop's progress.
        ``make_set(images, labels, lr, iteration)`` builds a SyntheticSet of this run."""
        distiller.load_state_dict(state["method"])
        _set_rng_state(state.get("rng") or {})
        init, best = state["initial"], state.get("best")
        return cls(initial=make_set(init["images"], init["labels"], init["lr"], 0),
                   history=[(int(i), float(v)) for i, v in state["history"]], skipped=[int(state["skipped"])],
                   selection=[(int(i), float(v)) for i, v in state["selection"]],
                   best=[(best["score"], make_set(best["images"], best["labels"], best["lr"], best["iteration"]))]
                   if best else [], seconds=float(state["seconds"]), distill_seconds=float(state["distill_seconds"]),
                   loop_done=bool(state["loop_done"]))


class RunCheckpoint:
    """The checkpoint of one run at ``folder`` (``OUT/checkpoint``): when to write it, reading it back,
    and the signals.

    Args:
        folder: the checkpoint folder.
        settings: the run's settings (:func:`run_settings`).
        every: write every this many iterations (0 = off).
        seconds: write at most this many seconds apart (0 = off).
        restart: discard an existing checkpoint instead of resuming from it.
        notify: also called with each message (resuming, falling back, stopping); they are logged anyway.
        clock: the time source of ``seconds`` (tests pass a fake one).
    """

    def __init__(self, folder: str | Path, settings: dict[str, Any], *, every: int = 0, seconds: float = 60.0,
                 restart: bool = False, notify: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self.every = every
        self.seconds = seconds
        self.restart = restart
        self.notify = notify
        self.clock = clock
        self.loaded: LoadedCheckpoint | None = None
        self.log_records: list[str] | None = None  # the run's log lines, kept in the checkpoint
        self.written_iteration: int | None = None  # of the newest checkpoint on disk (None: none)
        self._prepared = False
        self._state_fn: Callable[[bool], dict[str, Any]] | None = None
        self._last_write = clock()
        self._in_loop = False
        self._pending: int | None = None

    @classmethod
    def for_run(cls, config: DistillConfig, folder: str | Path, **kwargs) -> "RunCheckpoint":
        """The checkpoint of ``config``'s run, with its ``checkpoint_every`` / ``checkpoint_seconds``."""
        _, _, resolved, method_cfg = resolve_run(config)
        return cls(folder, run_settings(resolved, method_cfg), every=config.checkpoint_every,
                   seconds=config.checkpoint_seconds, **kwargs)

    @property
    def periodic(self) -> bool:
        """Whether checkpoints are written during the loop (not only on a signal)."""
        return self.every > 0 or self.seconds > 0

    def say(self, message: str) -> None:
        notice.info("%s", message)
        if self.notify is not None:
            self.notify(message)

    # -- resuming --------------------------------------------------------------------------------
    def prepare(self) -> LoadedCheckpoint | None:
        """Read the checkpoint to resume from (once; later calls return the same), after checking it
        was written with these settings; with ``restart``, remove it instead. None: start afresh.

        Raises:
            CheckpointError: no complete checkpoint is readable (naming it), or it was written with
                other settings or another package version (one line listing what differs).
        """
        if self._prepared:
            return self.loaded
        loaded = distributed.on_main(self._read)  # rank 0 reads; every rank resumes from what it read
        if loaded is not None:
            self.written_iteration = int(loaded.state["iteration"])
            if self.log_records is not None:
                self.log_records[:0] = [str(line) for line in loaded.state.get("log") or []]
        self.loaded = loaded
        self._prepared = True
        return loaded

    def _read(self) -> LoadedCheckpoint | None:
        """The checkpoint to resume from after the checks of :meth:`prepare` (None: start afresh)."""
        if self.restart:
            remove_checkpoint(self.folder)
            return None
        loaded = load_checkpoint(self.folder)
        if loaded is not None:
            state = loaded.state
            if not isinstance(state, dict) or state.get("format") != RUN_FORMAT:
                raise CheckpointError(f"cannot resume: {loaded.path} is not the checkpoint of a distill run; delete "
                                      f"it or rerun with --restart")
            found = differences(state.get("settings") or {}, self.settings, RESUME_INDEPENDENT)
            if state.get("package_version") != __version__:
                found.append(f"package version = {state.get('package_version')!r} there, {__version__!r} here")
            if found:
                raise CheckpointError(f"the checkpoint {loaded.path} was written with other settings "
                                      f"({'; '.join(found)}): rerun with those settings to resume it, or add "
                                      f"--restart to discard it")
            for problem in loaded.skipped:
                self.say(f"the checkpoint {problem}: falling back to the previous checkpoint {loaded.path}")
            done = "; the optimisation had finished" if state.get("loop_done") else ""
            self.say(f"resuming from iteration {state['iteration']} (checkpoint of {state.get('written_at')}{done})")
        return loaded

    # -- writing ---------------------------------------------------------------------------------
    def bind(self, state_fn: Callable[[bool], dict[str, Any]]) -> None:
        """Set the function returning the run's state (argument: whether the loop has finished)."""
        self._state_fn = state_fn

    def write(self, loop_done: bool = False) -> Path:
        """Write the bound run state now (atomically; the previous checkpoint stays until it is complete).
        In a distributed run every rank calls it at the same step (the state is gathered) and rank 0
        writes."""
        if self._state_fn is None:
            raise RuntimeError("bind() the run's state first")
        state = self._state_fn(loop_done)
        if self.log_records is not None:
            state["log"] = list(self.log_records)
        state.update(format=RUN_FORMAT, package_version=__version__, settings=self.settings,
                     fingerprint=fingerprint(self.settings, RESUME_INDEPENDENT),
                     written_at=datetime.now().astimezone().isoformat(sep=" ", timespec="seconds"))
        distributed.on_main(lambda: write_checkpoint(self.folder, state))
        self.written_iteration = int(state["iteration"])
        self._last_write = self.clock()
        return self.folder

    def due(self, iteration: int) -> bool:
        """Whether a periodic checkpoint is due after ``iteration``."""
        if self.every and iteration % self.every == 0:
            return True
        return bool(self.seconds) and self.clock() - self._last_write >= self.seconds

    def after_step(self, iteration: int, metrics: dict[str, float] | None = None) -> None:
        """The loop's callback: a checkpoint when due; after a signal, a checkpoint and RunInterrupted
        (the ranks of a distributed run decide together: a signal or a due time on any rank counts)."""
        signalled, due = distributed.any_rank(self._pending is not None, self.periodic and self.due(iteration))
        if signalled:
            signum, self._pending = self._pending or signal.SIGTERM, None
            self.write()
            raise RunInterrupted(self._stopped(signum, f"after iteration {iteration}"), EXIT_STATUS[signum])
        if due:
            self.write()

    def loop_finished(self, resumed_done: bool) -> None:
        """After the loop: a checkpoint marked finished (unless periodic checkpoints are off, or the run
        resumed from such a one), so a kill during the evaluation does not redo the distillation."""
        if distributed.any_rank(self._pending is not None)[0]:  # a signal after the last step: stop before the evaluation
            signum, self._pending = self._pending or signal.SIGTERM, None
            self.write(loop_done=True)
            raise RunInterrupted(self._stopped(signum, "after the optimisation"), EXIT_STATUS[signum])
        if self.periodic and not resumed_done and self._state_fn is not None:
            self.write(loop_done=True)

    def remove(self, keep_newest: bool = False) -> None:
        """Remove the checkpoint and its ``.tmp`` / ``.prev`` siblings (``keep_newest``: only the siblings)."""
        if keep_newest:
            for suffix in (TMP_SUFFIX, PREV_SUFFIX):
                remove_checkpoint(sibling(self.folder, suffix))
            return
        remove_checkpoint(self.folder)
        self.written_iteration = None

    # -- signals ---------------------------------------------------------------------------------
    def _stopped(self, signum: int, when: str) -> str:
        name = signal.Signals(signum).name
        if self.written_iteration is None:
            return f"interrupted by {name} {when}, before any checkpoint was written: rerunning the command starts afresh"
        how = "without --restart" if self.restart else "with the same output folder"
        return (f"interrupted by {name} {when}; checkpoint {self.folder} holds iteration {self.written_iteration}: "
                f"rerun the same command {how} to resume")

    @contextmanager
    def loop(self) -> Iterator[None]:
        """During the optimisation loop a signal lets the current step finish (see :meth:`guard`)."""
        self._last_write = self.clock()
        self._in_loop = True
        try:
            yield
        finally:
            self._in_loop = False

    @contextmanager
    def guard(self) -> Iterator[None]:
        """SIGINT / SIGTERM handlers for the run: inside :meth:`loop` the first signal lets the current
        step finish, then :meth:`after_step` writes a checkpoint and raises RunInterrupted; a second
        signal, or one outside the loop, raises it at once (the newest checkpoint on disk stays). Only
        in the main thread (elsewhere Python does not deliver signals): there it does nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._in_loop and self._pending is None:
                self._pending = signum
                self.say(f"{signal.Signals(signum).name}: finishing the current step, then writing a checkpoint "
                         f"(send it again to stop at once)")
                return
            self._pending = None
            raise RunInterrupted(self._stopped(signum, "at once" if self._in_loop else "outside the optimisation"),
                                 EXIT_STATUS[signum])

        previous = {s: signal.signal(s, handler) for s in EXIT_STATUS}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


__all__ = ["CHECKPOINT_DIR", "RESUME_INDEPENDENT", "RunCheckpoint", "RunProgress", "resolve_run", "run_settings"]
