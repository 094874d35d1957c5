"""Multi-process runs on ``torch.distributed`` (issue #20): the process group, this process's place in
it, contiguous blocks of near-equal cost (a rank's classes, its evaluation batches), and moving Python
objects and tensors between ranks. Independent units of work are spread by :mod:`datadistill.units`.

Launch with torchrun (its launcher and rendezvous set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``)::

    torchrun --nproc-per-node 2 -m datadistill distill --method dm --ipc 10 --out runs/dm

Without those variables every function here is the one-process case: rank 0 of a world of 1, no
communication. Backend: gloo on the CPU, NCCL on CUDA (each process takes the GPU of its
``LOCAL_RANK``). Every collective has a timeout (:data:`TIMEOUT`), so a rank that died or hangs ends
the others with an error instead of a hang; torchrun's agent also tears the group down when one
process exits non-zero.
"""

from __future__ import annotations

import datetime
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from datadistill.errors import ConfigError

T = TypeVar("T")

TIMEOUT = datetime.timedelta(seconds=float(os.environ.get("DATADISTILL_DIST_TIMEOUT", "1800")))
"""Collective timeout (seconds from ``DATADISTILL_DIST_TIMEOUT``, default 1,800 s): long enough for
the slowest rank's share of an evaluation between two collectives on a CPU."""


@dataclass(frozen=True)
class World:
    """This process's place in the run.

    Attributes:
        rank: global rank, 0 … world_size − 1.
        world_size: number of processes (1 = not distributed).
        local_rank: rank on this machine (which GPU to use).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that prints progress and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def launched() -> bool:
    """True when this process was started by torchrun (or another launcher) as one of several."""
    return _env_int("WORLD_SIZE", 1) > 1


_SOLO: list[bool] = []  # the stack of solo() scopes


@contextmanager
def solo() -> Iterator[None]:
    """Inside, this process is a world of its own (rank 0 of 1): no collective, and it writes its own
    files. For a unit of work one rank runs alone (a ``compare`` cell, a NAS candidate) whose code is
    otherwise distributed-aware (``distill`` shards classes when the world has several ranks)."""
    _SOLO.append(True)
    try:
        yield
    finally:
        _SOLO.pop()


def world() -> World:
    """The current :class:`World`: the one-process world inside :func:`solo`, else from the process
    group once initialised, else from torchrun's environment variables, else the one-process world."""
    if _SOLO:
        return World(0, 1, _env_int("LOCAL_RANK", 0))  # its GPU stays the rank's
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def init(device: torch.device | None = None) -> World:
    """Join the process group when launched by torchrun (idempotent; a no-op in one process).

    Args:
        device: the device this run computes on; CUDA selects ``cuda:LOCAL_RANK`` and NCCL for
            CUDA tensors (gloo still carries CPU tensors and objects), anything else gloo.

    Returns:
        The :class:`World`.

    Raises:
        ConfigError: torch was built without ``torch.distributed``, or CUDA was asked for with fewer
            visible GPUs than local ranks.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return world()
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    w = world()
    backend = "gloo"  # CPU tensors and Python objects go through gloo in every case
    if device is not None and device.type == "cuda":
        if w.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {w.local_rank} has no GPU: {torch.cuda.device_count()} visible; "
                              f"start at most {torch.cuda.device_count()} processes per node")
        torch.cuda.set_device(w.local_rank)
        backend = "cpu:gloo,cuda:nccl"
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if restart is None:
        dist.init_process_group(backend=backend, timeout=TIMEOUT)
    else:
        # torchrun's workers share the agent's store across restarts (--max-restarts), and the keys of
        # the earlier attempt (the dead ranks' addresses) stay in it: a restarted group would connect to
        # them. A prefix per attempt keeps each attempt's group apart.
        store, rank, size = next(dist.rendezvous("env://", timeout=TIMEOUT))
        dist.init_process_group(backend=backend, store=dist.PrefixStore(f"datadistill/attempt_{restart}", store),
                                rank=rank, world_size=size, timeout=TIMEOUT)
    return world()


def local_device(device: torch.device) -> torch.device:
    """``device`` with CUDA pinned to this process's ``LOCAL_RANK`` GPU (unchanged on the CPU)."""
    if device.type == "cuda" and launched():
        return torch.device("cuda", world().local_rank)
    return device


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if world().distributed:
        dist.barrier()


def balanced_blocks(costs: Sequence[float], world_size: int) -> list[list[int]]:
    """Split units 0 … len(costs) − 1 into ``world_size`` contiguous blocks of near-equal total cost
    (greedy on the prefix sums; a block may be empty when there are fewer units than ranks).

    Example: costs [1, 1, 1, 1] over 2 ranks → [[0, 1], [2, 3]]; [3, 1, 1, 1] → [[0], [1, 2, 3]].
    """
    if world_size < 1:
        raise ConfigError(f"world_size = {world_size} is invalid: expected an integer ≥ 1")
    total = float(sum(costs))
    blocks: list[list[int]] = [[] for _ in range(world_size)]
    acc = 0.0
    for i, c in enumerate(costs):
        # the unit goes to the rank whose share of the total its midpoint falls in
        mid = acc + c / 2.0
        r = min(world_size - 1, int(mid / total * world_size)) if total > 0 else i * world_size // max(1, len(costs))
        blocks[r].append(i)
        acc += c
    return blocks


def all_gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj`` (picklable; sent only between the run's own processes), in rank order."""
    w = world()
    if not w.distributed:
        return [obj]
    out: list[Any] = [None] * w.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank."""
    if not world().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_rows(rows: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """Every rank's block of rows, concatenated in rank order: ``rows`` is this rank's (counts[rank],
    …) block; the result (sum(counts), …) is the same on every rank, bit for bit (no arithmetic:
    all_gather of blocks padded to the longest). Works on CPU (gloo) and CUDA (NCCL) tensors.

    Raises:
        ValueError: ``rows`` does not have ``counts[rank]`` rows.
    """
    w = world()
    if rows.shape[0] != counts[w.rank]:
        raise ValueError(f"rank {w.rank} holds {rows.shape[0]} rows, expected {counts[w.rank]}")
    if not w.distributed:
        return rows
    longest = max(counts)
    padded = rows.new_zeros((longest, *rows.shape[1:]))
    padded[: rows.shape[0]] = rows
    parts = [torch.empty_like(padded) for _ in range(w.world_size)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:c] for p, c in zip(parts, counts)])


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """The sum of ``value`` over the ranks (a new tensor; ``value`` itself in one process). The order
    of the additions differs from a one-process sum, so results agree within float rounding."""
    if not world().distributed:
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def any_rank(*flags: bool) -> list[bool]:
    """For each flag, whether it is true on any rank (one all-reduce): how the ranks agree on a
    decision only some of them can see (a clock, a signal), so that all take the same branch."""
    if not world().distributed:
        return [bool(f) for f in flags]
    t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception type may refuse to pickle
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only; its result (picklable) on every rank, or its exception raised on
    every rank: a check or a read that only the main process does (an output folder, a checkpoint)
    ends all ranks with the same message instead of leaving the others waiting."""
    w = world()
    if not w.distributed:
        return fn()
    box: list[Any] = [None]
    if w.is_main:
        try:
            box = [(True, fn())]
        except Exception as exc:  # noqa: BLE001 - sent to every rank, re-raised below
            box = [(False, _portable(exc))]
    dist.broadcast_object_list(box, src=0)
    ok, value = box[0]
    if not ok:
        raise value
    return value


def shutdown() -> None:
    """Leave the process group (end of a command; no-op when none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["TIMEOUT", "World", "all_gather_objects", "all_reduce_sum", "any_rank", "balanced_blocks", "barrier",
           "broadcast_object", "gather_rows", "init", "launched", "local_device", "on_main", "shutdown", "solo",
           "world"]
