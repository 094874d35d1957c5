"""The one harness of the multi-process tests (test_distributed_methods.py, test_distributed_units.py,
test_trajectory_parallel.py): :func:`run_ranks` starts W gloo processes on the CPU as torchrun does
and each joins the group through ``datadistill.distributed.init``.

As under torchrun, this process plays the agent: it serves the group's TCP store (on a port the OS
picks, so no free-port race) and each rank gets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``/``MASTER_PORT`` of that store, ``TORCHELASTIC_USE_AGENT_STORE=True`` (the ranks are
the store's clients) and ``TORCHELASTIC_RESTART_COUNT=0`` (``init``'s torchrun path, its store
prefix included). The ranks never outlive the call: past ``timeout`` they are killed, and when one
fails the others are ended (torch.multiprocessing's ProcessContext) and its traceback raised here.
The scenarios the worlds run are in tests/dist_scenarios_*.py (importable by the spawned processes).
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any

import torch

from helpers import TINY_MODEL, tiny_builder

CPU = torch.device("cpu")


def _rank_main(rank: int, world_size: int, port: int, fn, args: tuple, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      TORCHELASTIC_USE_AGENT_STORE="True", TORCHELASTIC_RESTART_COUNT="0")
    torch.set_num_threads(1)
    from datadistill import distributed
    from datadistill.models import MODELS

    MODELS._items[TINY_MODEL] = tiny_builder  # the test process registers it with the tiny_model fixture
    distributed.init(CPU)
    try:
        result = fn(*args)
        Path(out, f"rank{rank}.pkl").write_bytes(pickle.dumps(result))  # the test's own file
    finally:
        distributed.shutdown()


def run_ranks(world_size: int, fn, *args: Any, out: Path, timeout: float = 300.0) -> list[Any]:
    """``fn(*args)`` (a module-level function) in ``world_size`` spawned processes of one gloo group;
    each rank's return value (picklable), in rank order.

    ``timeout``: seconds for the whole run; the ranks' collectives time out at half of it
    (``DATADISTILL_DIST_TIMEOUT``), so a hung rank fails with its own error before the kill.

    Raises:
        torch.multiprocessing.ProcessRaisedException: a rank raised (its traceback in the message).
        TimeoutError: the ranks ran past ``timeout`` (they were killed).
    """
    import torch.distributed as dist
    import torch.multiprocessing as mp

    out.mkdir(parents=True, exist_ok=True)
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)  # the agent's store
    env = {"OMP_NUM_THREADS": "1", "DATADISTILL_DIST_TIMEOUT": str(timeout / 2)}  # read as the ranks import
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        ranks = mp.start_processes(_rank_main, args=(world_size, store.port, fn, args, str(out)), nprocs=world_size,
                                   join=False, start_method="spawn")
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    deadline = time.monotonic() + timeout
    try:
        while not ranks.join(timeout=min(5.0, max(0.0, deadline - time.monotonic())), grace_period=5):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{world_size} ranks running {fn.__name__} for more than {timeout:.0f} s: killed")
    finally:  # whatever happened here (a timeout, an interrupt), no rank is left running
        for p in ranks.processes:
            if p.is_alive():
                p.kill()
            p.join()
        del store
    return [pickle.loads((out / f"rank{r}.pkl").read_bytes()) for r in range(world_size)]
