"""Parallel tasks of the applications (NAS candidates, continual (method, order) pairs, FedD3 clients).

One mechanism, :func:`datadistill.units.run_units`: the tasks are claimed one at a time by the
processes of the run and their results gathered on rank 0. Under torchrun the processes are the
ranks (on one or several machines); in one process, ``workers`` ≥ 2 spawns that many local worker
processes (``torch.multiprocessing``), each limited to ``max(1, cores // workers)`` torch threads so
they do not oversubscribe the CPU, which claim the tasks the same way. A task is a picklable
``(function, kwargs)`` pair whose function lives at module level. With ``workers`` ≤ 1 in one process
the tasks run here, one after another. Every task seeds itself: the results do not depend on who ran
them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

from datadistill.errors import ConfigError
from datadistill.units import run_units


def _init_worker(threads: int) -> None:
    import torch

    from datadistill.runtime import tune_cpu_allocator

    torch.set_num_threads(threads)
    tune_cpu_allocator()


def _call(task: tuple[Callable[..., Any], dict[str, Any]]) -> Any:
    fn, kwargs = task
    return fn(**kwargs)


class _Tasks:
    """Task i of a list, as a picklable callable (sent once to each local worker)."""

    def __init__(self, tasks: Sequence[tuple[Callable[..., Any], dict[str, Any]]]) -> None:
        self.tasks = list(tasks)

    def __call__(self, i: int) -> Any:
        return _call(self.tasks[i])


def run_tasks(tasks: Sequence[tuple[Callable[..., Any], dict[str, Any]]], workers: int = 2,
              progress: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Run ``fn(**kwargs)`` for every task; results in task order, on every rank.

    Args:
        tasks: ``(module-level function, keyword arguments)`` pairs (picklable).
        workers: local worker processes when not under torchrun (≤ 1: run here, sequentially);
            under torchrun each rank is one worker and this is ignored.
        progress: called ``(task index, result)`` as each task finishes — on rank 0 only, for every
            task whichever process ran it (resume records and progress displays live there).

    Raises:
        ConfigError: ``workers`` < 0. Whatever a task raises is re-raised here.
    """
    if workers < 0:
        raise ConfigError(f"workers = {workers} is invalid: expected an integer ≥ 0 (0 or 1 = in this process)")
    threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
    return run_units(len(tasks), _Tasks(tasks), progress, processes=workers,
                     initializer=functools.partial(_init_worker, threads))


__all__ = ["run_tasks"]
