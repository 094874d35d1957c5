"""The runs of tests/test_distributed_methods.py (class-sharded distillation): :func:`run_jobs` runs a
list of jobs (names in :data:`JOBS`) in each rank of a world of 2 (tests/dist_helpers.py), and
:func:`distil` is also the one-process reference the test computes itself.
"""

from __future__ import annotations

import torch

from datadistill import distributed
from datadistill.errors import ConfigError
from helpers import make_distiller, make_tiny_dataset

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


def run_jobs(jobs: list[str]) -> dict[str, dict]:
    """``{job: its result}`` for the named :data:`JOBS`, in this rank."""
    return {name: JOBS[name]() for name in jobs}
