"""Parallel worker processes for the applications (NAS candidates, federated clients).

Tasks run in a pool of ``spawn``-started processes (``torch.multiprocessing``), each limited to
``max(1, cores // workers)`` torch threads so the pool does not oversubscribe the CPU. A task is a
picklable ``(function, kwargs)`` pair whose function lives at module level. With ``workers`` ≤ 1 the
tasks run in this process, one after another (same results: every task seeds itself).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from datadistill.errors import ConfigError


def _init_worker(threads: int) -> None:
    import torch

    from datadistill.runtime import tune_cpu_allocator

    torch.set_num_threads(threads)
    tune_cpu_allocator()


def _call(task: tuple[Callable[..., Any], dict[str, Any]]) -> Any:
    fn, kwargs = task
    return fn(**kwargs)


def run_tasks(tasks: Sequence[tuple[Callable[..., Any], dict[str, Any]]], workers: int = 2,
              progress: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Run ``fn(**kwargs)`` for every task; results in task order.

    Args:
        tasks: ``(module-level function, keyword arguments)`` pairs (picklable).
        workers: worker processes (≤ 1: run here, sequentially).
        progress: called ``(task index, result)`` as each task finishes.

    Raises:
        ConfigError: ``workers`` < 0. Whatever a task raises is re-raised here.
    """
    if workers < 0:
        raise ConfigError(f"workers = {workers} is invalid: expected an integer ≥ 0 (0 or 1 = in this process)")
    if workers <= 1 or len(tasks) <= 1:
        results = []
        for i, task in enumerate(tasks):
            results.append(_call(task))
            if progress:
                progress(i, results[-1])
        return results
    import torch.multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // workers)
    results: list[Any] = [None] * len(tasks)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(_call, task): i for i, task in enumerate(tasks)}
        from concurrent.futures import as_completed

        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            if progress:
                progress(i, results[i])
    return results


__all__ = ["run_tasks"]
