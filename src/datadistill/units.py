"""Independent units of work spread over processes (issue #20): evaluation networks, experts,
scoring networks, compare's cells, NAS candidates, continual (method, order) pairs, federated clients.

One mechanism: the processes claim units one at a time from a counter in a c10d store and publish
each result there; rank 0 computes units too, collects the others' results as they finish (its
``on_result`` records and reports them) and publishes the list. The processes are torchrun's ranks
(the process group's store), or, in one process asked for ``processes`` ≥ 2, that many spawned local
workers (a ``TCPStore`` this process serves, the workers' own loop the ranks' loop). Each unit runs
inside :func:`datadistill.distributed.solo` and seeds itself, so the results equal one process's.
Results and exceptions are pickled between the run's own processes only (as
``all_gather_object`` does), never read from a file.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch.distributed as dist

from datadistill.distributed import TIMEOUT, all_gather_objects, barrier, broadcast_object, solo, world
from datadistill.errors import ConfigError

T = TypeVar("T")
log = logging.getLogger("datadistill")

_CALLS = [0]  # distributed run_units calls so far: the same count on every rank (they run the same code)
_POLL = (0.01, 0.25)  # seconds between looks for results: first, longest
_GRACE = 10.0  # seconds rank 0 waits, after an error, for the other ranks to read it


def _dumps(ok: bool, value: Any, rank: int) -> bytes:
    try:
        return pickle.dumps((ok, value, rank))
    except Exception:  # an unpicklable result or exception: its text is what rank 0 can show
        if ok:
            raise
        text = "".join(traceback.format_exception(value)).strip()
        return pickle.dumps((False, RuntimeError(f"{type(value).__name__}: {value}\n{text}"), rank))


class _Queue:
    """One :func:`run_units` call in a store: the claim counter ``NAME/next``, each unit's result
    ``NAME/unit/i`` (pickled by the run's own processes, read once and deleted) and the final list
    ``NAME/done``."""

    def __init__(self, store: Any, name: str, n: int, rank: int) -> None:
        self.store, self.name, self.n, self.rank = store, name, n, rank

    def claim(self) -> int | None:
        if self.store.check([f"{self.name}/done"]):  # ended (an error elsewhere): claim nothing more
            return None
        i = int(self.store.add(f"{self.name}/next", 1)) - 1
        return i if i < self.n else None

    def claimed(self) -> int:
        return min(self.n, int(self.store.add(f"{self.name}/next", 0)))

    def publish(self, i: int, ok: bool, value: Any) -> None:
        self.store.set(f"{self.name}/unit/{i}", _dumps(ok, value, self.rank))

    def take(self, i: int) -> tuple[bool, Any, int] | None:
        key = f"{self.name}/unit/{i}"
        if not self.store.check([key]):
            return None
        got = pickle.loads(self.store.get(key))
        self.store.delete_key(key)
        return got

    def close(self, ok: bool, value: Any, readers: int, grace: float | None = None) -> None:
        """Publish the list (or the error that ended the call) and wait until the ``readers`` other
        processes took it (rank 0 may serve the store: it must outlive their reads), at most
        ``grace`` seconds after an error."""
        self.store.set(f"{self.name}/done", _dumps(ok, value, self.rank))
        _wait(lambda: int(self.store.add(f"{self.name}/read", 0)) >= readers, grace)

    def wait_closed(self) -> list[Any]:
        _wait(lambda: self.store.check([f"{self.name}/done"]))
        ok, value, _ = pickle.loads(self.store.get(f"{self.name}/done"))
        self.store.add(f"{self.name}/read", 1)
        if not ok:
            raise value
        return value


def _wait(ready: Callable[[], bool], limit: float | None = None) -> None:
    delay, start = _POLL[0], time.monotonic()
    while not ready() and (limit is None or time.monotonic() - start < limit):
        time.sleep(delay)
        delay = min(2 * delay, _POLL[1])


def _work(queue: _Queue, fn: Callable[[int], Any]) -> None:
    """Claim, compute and publish units until none is left (a rank other than 0, a local worker)."""
    while (i := queue.claim()) is not None:
        try:
            with solo():
                value = fn(i)
        except BaseException as exc:
            queue.publish(i, False, exc)
            raise
        queue.publish(i, True, value)


def _serve(queue: _Queue, fn: Callable[[int], T] | None, on_result: Callable[[int, T], None] | None,
           readers: int, alive: Callable[[], None] | None = None) -> list[T]:
    """Rank 0's loop: compute units too (unless ``fn`` is None), deliver every result to
    ``on_result`` as it arrives, and publish the list once all are in. An error — its own unit's,
    another's, ``on_result``'s — is published too, so that every rank raises it, then raised."""
    results: dict[int, Any] = {}
    failed = [0]  # other ranks that raised (they read nothing more)

    def deliver(i: int, value: Any) -> None:
        results[i] = value
        if on_result is not None:
            on_result(i, value)

    def drain() -> bool:
        got_any = False
        for i in range(queue.claimed()):
            got = None if i in results else queue.take(i)
            if got is not None:
                ok, value, rank = got
                if not ok:
                    failed[0] = int(rank > 0)
                    log.error("unit %d failed on %s", i, f"rank {rank}" if rank >= 0 else "a worker process")
                    raise value
                deliver(i, value)
                got_any = True
        return got_any

    try:
        while fn is not None and (i := queue.claim()) is not None:
            with solo():
                deliver(i, fn(i))
            drain()
        delay = _POLL[0]
        while len(results) < queue.n:
            if drain():
                delay = _POLL[0]
                continue
            if alive is not None:
                alive()
            time.sleep(delay)
            delay = min(2 * delay, _POLL[1])
    except BaseException as exc:
        try:
            queue.close(False, exc, readers - failed[0], grace=_GRACE)
        except Exception:  # the store is gone: the launcher ends the other processes
            pass
        raise
    out = [results[i] for i in range(queue.n)]
    queue.close(True, out, readers)
    return out


def _pool_worker(port: int, n: int, fn: Callable[[int], Any], initializer: Callable[[], None] | None) -> None:
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=TIMEOUT)
    if initializer is not None:
        initializer()
    try:
        _work(_Queue(store, "units", n, -1), fn)
    except BaseException:  # published: the parent raises it
        return


def _run_pool(n: int, fn: Callable[[int], T], on_result: Callable[[int, T], None] | None, processes: int,
              initializer: Callable[[], None] | None) -> list[T]:
    import torch.multiprocessing as mp

    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=TIMEOUT)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_pool_worker, args=(store.port, n, fn, initializer)) for _ in range(processes)]
    for p in procs:
        p.start()

    def alive() -> None:
        dead = [p for p in procs if p.exitcode not in (None, 0)]
        if dead or all(p.exitcode == 0 for p in procs):
            code = dead[0].exitcode if dead else 0
            raise RuntimeError(f"a worker process ended (exit code {code}) before every unit was finished")

    try:
        return _serve(_Queue(store, "units", n, 0), None, on_result, 0, alive)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join()


def run_units(n: int, fn: Callable[[int], T], on_result: Callable[[int, T], None] | None = None, *,
              processes: int = 0, initializer: Callable[[], None] | None = None) -> list[T]:
    """``[fn(0), …, fn(n − 1)]``, the units spread over the processes of the run.

    Under torchrun every rank must call it with the same ``n`` and in the same order (all ranks
    run the same code); the ranks claim units one at a time from a counter in the process group's
    store (so a rank that finishes early takes the next unit); rank 0 computes units too, receives
    every other rank's results through the store as they finish and calls ``on_result`` — its
    place to record them (resume records) and report progress; then every rank returns the list.
    In one process with ``processes`` ≥ 2, that many spawned local workers (``torch.multiprocessing``)
    claim the units the same way from a store this process serves, and this process collects them;
    else the units run here in order. Each unit runs inside :func:`~datadistill.distributed.solo`; it must seed itself, so the
    list does not depend on who computed what. A process waiting for another's unit polls the store
    with no time limit (a unit may take hours, longer than a collective's timeout); a process that
    dies ends the others through torchrun's agent (a local worker's death is raised here).

    Args:
        n: units (≥ 0).
        fn: computes unit i; returns a picklable value (CPU tensors). With ``processes`` ≥ 2 it is
            pickled to the workers too (a module-level function or a picklable callable object).
        on_result: called on rank 0 only, ``(i, result)``, as each unit's result arrives (in any order).
        processes: local worker processes when not under torchrun (ignored under torchrun: each
            rank is one worker, more come from ``--nproc-per-node``).
        initializer: run once in each local worker before its units (e.g. its torch thread count).

    Returns:
        The results in unit order, on every rank.

    Raises:
        Whatever a unit raised, on rank 0 (the rank that failed raises it too); RuntimeError when a
        local worker died.
        ConfigError: launched by torchrun without :func:`init`.
    """
    w = world()
    if w.distributed:
        if processes > 1:
            log.info("%d worker processes asked for: under torchrun each of the %d ranks is one", processes,
                     w.world_size)
        if not (dist.is_available() and dist.is_initialized()):
            raise ConfigError("launched by torchrun but the process group is not joined: call "
                              "datadistill.distributed.init(device) first")
        _CALLS[0] += 1
        name = f"datadistill/units/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{_CALLS[0]}"
        queue = _Queue(dist.distributed_c10d._get_default_store(), name, n, w.rank)
        if w.is_main:
            return _serve(queue, fn, on_result, w.world_size - 1)
        _work(queue, fn)
        return queue.wait_closed()
    if processes > 1 and n > 1:
        return _run_pool(n, fn, on_result, min(processes, n), initializer)
    out = []
    for i in range(n):
        with solo():
            out.append(fn(i))
        if on_result is not None:
            on_result(i, out[-1])
    return out


def check_shared_folder(path: str | os.PathLike, what: str = "output folder") -> None:
    """Under torchrun, check that every rank sees the folder ``path`` (rank 0 creates it and a probe
    file in it): units that write their own files there (an expert's epochs, a compare cell's
    folder) need a filesystem every machine shares. No-op in one process.

    Raises:
        ConfigError: a rank does not see the probe, naming the ranks.
    """
    w = world()
    if not w.distributed:
        return
    folder = Path(path)
    probe = folder / f".datadistill-shared-{broadcast_object(uuid.uuid4().hex)}"
    if w.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_text("probe\n", encoding="utf-8")
    barrier()
    seen = all_gather_objects(probe.is_file())
    barrier()
    if w.is_main:
        probe.unlink(missing_ok=True)
    blind = [r for r, ok in enumerate(seen) if not ok]
    if blind:
        raise ConfigError(f"{what} {folder} is not shared: rank(s) {', '.join(map(str, blind))} do not see the "
                          f"files rank 0 writes there; give a folder on a filesystem every machine mounts")


__all__ = ["check_shared_folder", "run_units"]
