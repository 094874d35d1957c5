"""Helpers shared by the trajectory-matching tests (MTT, DATM, PAD: test_trajectory_loss.py,
test_trajectory_steps.py, test_experts.py, test_curriculum.py, test_datm.py, test_trajectory_api.py):
small expert settings, distillers on the ``experts`` fixture (tests/conftest.py), the files of an
expert folder, and snapshots of a distiller's learned state."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from datadistill.trajectory import ExpertSettings
from helpers import make_distiller

CPU = torch.device("cpu")


def expert_settings(model: str, **overrides) -> ExpertSettings:
    return ExpertSettings(**{"model": model, "num_experts": 2, "epochs": 4, "batch_size": 16,
                             "dsa_strategy": "none", **overrides})


def small_args(method: str, **overrides) -> dict:
    """Small MTT-family settings that fit the 4-epoch experts."""
    args = {"syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 2}
    if method in ("datm", "pad"):
        args["current_max_start_epoch"] = 2
    return {**args, **overrides}


def distiller(method: str, data, experts_dir: Path, **overrides):
    return make_distiller(method, data, experts=str(experts_dir), **small_args(method, **overrides))


def epoch_file(root: Path, expert: int, epoch: int) -> Path:
    return root / f"expert_{expert:03d}" / f"epoch_{epoch:03d}.safetensors"


def read_epoch(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["datadistill"])
    return tensors, meta


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def snapshot(d) -> dict:
    return {"tensors": [t.detach().clone() for t in d.learned_tensors()],
            "ema": None if getattr(d, "ema", None) is None else [t.clone() for t in d.ema],
            "optimisers": [copy.deepcopy(o.state_dict()) for o in d.optimisers()]}


def assert_nested_equal(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_nested_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_nested_equal(x, y)
    else:
        assert a == b


def assert_same_state(now: dict, before: dict) -> None:
    assert len(now["tensors"]) == len(before["tensors"])
    for x, y in zip(now["tensors"], before["tensors"]):
        assert torch.equal(x, y)
    assert (now["ema"] is None) == (before["ema"] is None)
    if now["ema"] is not None:
        assert_nested_equal(now["ema"], before["ema"])
    assert_nested_equal(now["optimisers"], before["optimisers"])
