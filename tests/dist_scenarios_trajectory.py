"""The scenarios of tests/test_trajectory_parallel.py (data-parallel MTT, DATM, PAD): :func:`run_scenario`
runs in the test process (one process's reference) and, through :func:`rank_scenarios`, in each rank
of a world of 2 (tests/dist_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from datadistill.errors import ConfigError
from helpers import DSA_ON, make_tiny_dataset
from trajectory_helpers import distiller

ITERATIONS = 3
# name: (method, distiller overrides); ipc 2 × 3 classes = 6 synthetic images, syn_steps 3
SCENARIOS = {
    "mtt_unrolled": ("mtt", {"memory": "unrolled", "batch_syn": 4, "dsa": DSA_ON}),
    "mtt_checkpointed": ("mtt", {"memory": "checkpointed", "batch_syn": 4, "dsa": DSA_ON}),
    "mtt_uneven_unrolled": ("mtt", {"memory": "unrolled", "batch_syn": 5}),
    "mtt_empty_shard_unrolled": ("mtt", {"memory": "unrolled", "batch_syn": 1}),
    "mtt_empty_shard_checkpointed": ("mtt", {"memory": "checkpointed", "batch_syn": 1}),
    "datm_soft_labels_unrolled": ("datm", {"memory": "unrolled", "batch_syn": 4, "dsa": DSA_ON}),
    "datm_soft_labels_uneven_checkpointed": ("datm", {"memory": "checkpointed", "batch_syn": 5}),
    "pad_loss_mask_whole_set": ("pad", {"memory": "checkpointed", "batch_syn": 0, "mask_mode": "loss"}),
}
DATM_EXTRA = {"loss_threshold": 0, "ema_decay": 0.5}


ALL_REDUCED: list[int] = []  # sizes (elements) of the all-reduces of a rank, recorded by _counting


def _counting(all_reduce):
    def wrapper(tensor, *args, **kwargs):
        ALL_REDUCED.append(tensor.numel())
        return all_reduce(tensor, *args, **kwargs)
    return wrapper


def run_scenario(name: str, experts_dir: Path, seed: int = 3) -> dict:
    """ITERATIONS steps of a scenario: every iteration's gradients, the final learned tensors and
    output, the batch size of every network forward during the steps, and (several ranks) the sizes
    of every iteration's all-reduces."""
    method, extra = SCENARIOS[name]
    extra = {**extra, **(DATM_EXTRA if method != "mtt" else {}), "syn_steps": 3}
    d = distiller(method, make_tiny_dataset(), experts_dir, seed=seed, **extra)
    d.initialise("real")
    sizes: list[int] = []
    d.net.register_forward_pre_hook(lambda module, args: sizes.append(int(args[0].shape[0])))
    grads, losses, comm = [], [], []
    for it in range(ITERATIONS):
        d.iteration = it
        ALL_REDUCED.clear()
        metrics = d.step()
        comm.append(list(ALL_REDUCED))
        assert metrics["skipped"] == 0
        losses.append(metrics["loss"])
        grads.append([p.grad.detach().clone() for p in d.learned_tensors()])
    images, labels, lr = d.output()
    return {"grads": grads, "losses": torch.tensor(losses), "sizes": torch.tensor(sizes, dtype=torch.long),
            "final": [p.detach().clone() for p in d.learned_tensors()], "comm": torch.tensor(comm, dtype=torch.long),
            "params": torch.tensor(sum(p.numel() for p in d.net.parameters())),
            "output": [images.clone(), labels.clone(), torch.tensor(lr)]}


def rank_scenarios(experts_dir: str) -> dict:
    """In a rank: every scenario (``results``), then the refusal of ranks seeded differently
    (``refused``: the message, empty when nothing was refused)."""
    import torch.distributed as dist

    dist.all_reduce = _counting(dist.all_reduce)  # torch.distributed.nn's all-reduce calls it too
    results = {name: run_scenario(name, Path(experts_dir)) for name in SCENARIOS}
    rank = dist.get_rank()
    try:  # rank 1 seeded differently: refused by every rank before any step
        run_scenario("mtt_unrolled", Path(experts_dir), seed=3 + rank)
        message = ""
    except ConfigError as exc:
        message = str(exc)
    return {"results": results, "refused": message}
