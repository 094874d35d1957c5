"""Multi-process runs on ``torch.distributed`` (issue #20): the process group, who owns which unit of
work, and moving Python objects and tensors between ranks.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from datadistill.errors import ConfigError

T = TypeVar("T")
_SOLO: ContextVar[bool] = ContextVar("datadistill_solo", default=False)

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


def world() -> World:
    """The current :class:`World`: the one-process world inside :func:`solo`, else from the process
    group once initialised, else from torchrun's environment variables, else the one-process world."""
    if _SOLO.get():
        return World(0, 1, _env_int("LOCAL_RANK", 0))
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def init(device: torch.device | None = None) -> World:
    """Join the process group when launched by torchrun (idempotent; a no-op in one process).

    Args:
        device: the device this run computes on; CUDA selects NCCL and ``cuda:LOCAL_RANK``,
            anything else gloo.

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
    backend = "gloo"
    if device is not None and device.type == "cuda":
        if w.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {w.local_rank} has no GPU: {torch.cuda.device_count()} visible; "
                              f"start at most {torch.cuda.device_count()} processes per node")
        torch.cuda.set_device(w.local_rank)
        backend = "nccl"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
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


def owned(n: int, w: World | None = None) -> list[int]:
    """Indices of ``n`` independent units this rank runs: round-robin (unit i → rank i mod world)."""
    w = w or world()
    return list(range(w.rank, n, w.world_size))


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


def run_owned(n: int, fn: Callable[[int], T]) -> list[T]:
    """``[fn(0), …, fn(n − 1)]`` on every rank, each rank computing the units it :func:`owned`
    and the results all-gathered. Every unit must seed itself, so the list equals one process's."""
    w = world()
    mine = {i: fn(i) for i in owned(n, w)}
    merged: dict[int, T] = {}
    for part in all_gather_objects(mine):
        merged.update(part)
    return [merged[i] for i in range(n)]


@contextmanager
def solo() -> Iterator[None]:
    """Run the enclosed code as a world of one (:func:`world` is rank 0 of 1, collectives are
    no-ops): how a unit of :func:`run_units` runs its nested work (an evaluation, a distillation)
    alone, writing its own files. CUDA stays the GPU of ``LOCAL_RANK``."""
    token = _SOLO.set(True)
    try:
        yield
    finally:
        _SOLO.reset(token)


def shutdown() -> None:
    """Leave the process group (end of a command; no-op when none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["TIMEOUT", "World", "all_gather_objects", "balanced_blocks", "barrier", "broadcast_object", "init",
           "launched", "local_device", "owned", "run_owned", "shutdown", "solo", "world"]
