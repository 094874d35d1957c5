"""Runs of the tiny fixtures in a world of 2 gloo processes on the CPU (torch.multiprocessing spawn,
a file store in a temporary folder: no port to pick), for tests/test_distributed_methods.py.

:func:`run_world` starts the processes once for a list of jobs (names of functions in :data:`JOBS`);
each rank writes ``{job: result}`` to ``rank<R>.pt`` and the test reads both files.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from datadistill import distributed
from datadistill.errors import ConfigError
from datadistill.models import MODELS
from helpers import TINY_MODEL, make_distiller, make_tiny_dataset, tiny_builder

ITERATIONS = 3
#: the method settings of the equivalence runs: tiny loops, DSA where the method uses it
RUNS = {
    "dm": {"dsa": "color_crop_cutout_scale_rotate"},
    "datadam": {"dsa": "color_crop_cutout_scale_rotate"},
    "dc": {"outer_loop": 2, "inner_loop": 2},
    "dsa": {"outer_loop": 2, "inner_loop": 2, "dsa": "color_crop_cutout_scale_rotate"},
    "cafe": {"window": 2, "max_outer": 3, "max_inner": 2, "watch_batch": 4, "lr_milestones": "2"},
    "cafe_dsa": {"window": 2, "max_outer": 3, "max_inner": 2, "watch_batch": 4,
                 "dsa": "color_crop_cutout_scale_rotate"},
}


def distil(method: str, iterations: int = ITERATIONS, state: dict | None = None) -> dict:
    """``method`` on the tiny set (3 classes, IPC 2) for ``iterations`` steps from seed 0 (or from
    ``state``): the images, the loss history and the state a checkpoint would hold."""
    torch.manual_seed(0)
    d = make_distiller(method, make_tiny_dataset(), ipc=2, seed=0, **RUNS[method])
    if state is None:
        d.initialise("real")
    else:
        d.load_state_dict(state)
    losses: list[float] = []
    d.fit(iterations, [lambda it, m: losses.append(m["loss"])])
    return {"images": d.images.detach().clone(), "losses": losses, "state": d.state_dict(),
            "own_classes": list(d.own_classes)}


def _method_job(method: str):
    return lambda: distil(method)


def resumed_dm() -> dict:
    """DM: 2 steps alone (:func:`distributed.solo`), its state loaded by both ranks, 2 more steps."""
    with distributed.solo():
        state = distil("dm", 2)["state"]
    return distil("dm", 2, state)


def collectives() -> dict:
    """The helpers of :mod:`datadistill.distributed` on unequal blocks and rank-dependent input."""
    w = distributed.world()
    rows = torch.full((w.rank + 1, 2), float(w.rank))  # rank 0: 1 row, rank 1: 2 rows
    out = {"gathered": distributed.gather_rows(rows, [1, 2]),
           "any": distributed.any_rank(w.rank == 1, False),
           "sum": distributed.all_reduce_sum(torch.tensor([w.rank + 1.0])),
           "main": distributed.on_main(lambda: f"from rank {w.rank}")}

    def refuse():
        raise ConfigError("refused on rank 0")

    try:
        distributed.on_main(refuse)
    except ConfigError as exc:
        out["error"] = str(exc)
    with distributed.solo():
        out["solo"] = (distributed.world().world_size, distributed.gather_rows(rows, [rows.shape[0]]).shape[0])
    return out


JOBS = {**{m: _method_job(m) for m in RUNS}, "resumed_dm": resumed_dm, "collectives": collectives}


def _worker(rank: int, world_size: int, folder: str, jobs: list[str]) -> None:
    torch.set_num_threads(1)
    MODELS._items[TINY_MODEL] = tiny_builder
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world_size)
    try:
        results = {name: JOBS[name]() for name in jobs}
        torch.save(results, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_world(folder: Path, jobs: list[str], world_size: int = 2) -> list[dict]:
    """Run ``jobs`` in ``world_size`` spawned processes; each rank's results."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {"OMP_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        mp.start_processes(_worker, args=(world_size, str(folder), jobs), nprocs=world_size, start_method="spawn")
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(world_size)]
