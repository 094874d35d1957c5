"""The scenarios of tests/test_distributed_units.py: each runs in a world of 2 ranks (tests/dist_helpers.py,
:func:`all_scenarios` in one group) and again at world size 1 in the test process, and the test compares."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from dist_helpers import CPU
from helpers import TINY_MODEL, make_tiny_dataset


def units_scenario(folder: str, n: int = 6) -> dict[str, Any]:
    """run_units: the results on every rank, the units rank 0 was told about, the world inside a unit,
    and whether two processes computed units at the same time (unit 0 waits, up to 60 s, for another
    process to start unit 1)."""
    import time

    from datadistill.distributed import world
    from datadistill.units import run_units

    Path(folder).mkdir(parents=True, exist_ok=True)
    flag = Path(folder) / "unit1_started"

    def unit(i: int) -> tuple[int, int, int, bool]:
        if i == 1:
            flag.write_text("1")
        together = True
        if i == 0:
            start = time.monotonic()
            while not flag.exists() and time.monotonic() - start < 60:
                time.sleep(0.05)
            together = flag.exists()
        return i * i, os.getpid(), world().world_size, together

    seen = []
    out = run_units(n, unit, on_result=lambda i, r: seen.append(i))
    return {"values": [v[0] for v in out], "pids": len({v[1] for v in out}), "inner_world": {v[2] for v in out},
            "together": out[0][3], "seen": sorted(seen)}


def failing_scenario() -> str:
    """A unit raises: every rank raises it (returned here as its message)."""
    from datadistill.units import run_units

    def unit(i: int) -> int:
        if i == 1:
            raise ValueError("unit 1 cannot be computed")
        return i

    try:
        run_units(3, unit)
    except ValueError as exc:
        return str(exc)
    return "no error"


def unshared_scenario(folder: str) -> str:
    """Each rank names its own folder, as ranks on machines without a shared filesystem would see it."""
    from datadistill.distributed import world
    from datadistill.errors import ConfigError
    from datadistill.units import check_shared_folder

    try:
        check_shared_folder(Path(folder) / f"rank{world().rank}", "expert folder")
    except ConfigError as exc:
        return str(exc)
    return "no error"


def square(x: int) -> int:
    return x * x


def fail(message: str) -> None:
    raise ValueError(message)


def all_scenarios(folder: str, data_root: str, syn_path: str) -> dict[str, Any]:
    """Every scenario in turn (one process group for all: starting processes costs seconds)."""
    root = Path(folder)
    return {"units": units_scenario(folder), "failing": failing_scenario(),
            "scores_baseline": scores_baseline_scenario(syn_path, data_root, str(root / "scores_baseline")),
            "unshared": unshared_scenario(str(root / "unshared")),
            "evaluation": evaluation_scenario(str(root / "evaluation")),
            "experts": experts_scenario(str(root / "experts")),
            "scores": {s: scores_scenario(s) for s in ("el2n", "forgetting")},
            "compare": compare_scenario(data_root, str(root / "compare")),
            "nas": nas_scenario(str(root / "nas")),
            "after": units_scenario(folder + "/after", 4)}  # the calls still line up after the failure


def tiny_set(n_per_class: int = 2):
    from datadistill.io import SyntheticSet

    data = make_tiny_dataset()
    k = data.spec.num_classes
    gen = torch.Generator().manual_seed(7)
    meta = {"dataset": "tiny", "num_classes": k, "channels": 1, "image_size": [28, 28]}
    return SyntheticSet(torch.randn(k * n_per_class, 1, 28, 28, generator=gen),
                        torch.arange(k).repeat_interleave(n_per_class), metadata=meta)


def evaluation_scenario(folder: str) -> dict[str, Any]:
    """Two architectures × 2 networks (4 networks), parts recorded, the trained networks kept (rank 0)."""
    from datadistill.distributed import world
    from datadistill.evaluation import EvalParts, EvalSettings
    from datadistill.evaluation.suite import evaluate_architectures

    data = make_tiny_dataset()
    settings = EvalSettings(model=TINY_MODEL, num_eval=2, epochs=2, batch_size=8, vectorise=False)
    saved: dict[str, dict[str, torch.Tensor]] = {}
    reported: list[tuple[str, int, float]] = []
    result = evaluate_architectures(
        tiny_set(), data.test, [TINY_MODEL, "mlp"], settings, CPU, seed=3, parts=EvalParts(Path(folder) / "parts"),
        progress=lambda m, k, a: reported.append((m, k, a)),
        on_model=lambda m, k, net: saved.update({f"{m}_{k}": {n: t.clone() for n, t in net.state_dict().items()}}))
    return {"rows": result.as_dict()["rows"], "saved": saved, "reported": sorted(reported), "rank": world().rank}


def experts_scenario(folder: str) -> None:  # the files are the result
    from datadistill.trajectory import ExpertSettings, train_experts

    settings = ExpertSettings(model=TINY_MODEL, num_experts=3, epochs=2, batch_size=16, dsa_strategy="none")
    train_experts(make_tiny_dataset(), folder, settings, CPU)
    return None


def scores_scenario(score: str) -> torch.Tensor:
    from datadistill.selection.difficulty import ScoreSettings, compute_scores

    data = make_tiny_dataset()
    settings = ScoreSettings(model=TINY_MODEL, num_networks=3, epochs=1, batch_size=16)
    return compute_scores(score, data.train, data.spec, settings, CPU).values


def compare_grid(data_root: str) -> dict[str, Any]:
    """4 cells (random and dm × seeds 0, 1) on the fake MNIST, tiny sizes."""
    return {"base": {"dataset": "mnist", "data_root": data_root, "device": "cpu", "iterations": 2, "num_eval": 1,
                     "eval_epochs": 1, "model": TINY_MODEL, "batch_real": 8},
            "methods": ["random", "dm"], "ipc": [1], "seeds": [0, 1]}


def compare_scenario(data_root: str, out: str) -> list[dict[str, Any]]:
    from datadistill.experiments.compare import run_compare

    return run_compare(compare_grid(data_root), out=out).rows


def nas_scenario(out: str) -> dict[str, Any]:
    from datadistill.experiments.nas import run_nas

    space = {"family": "convnet", "depth": [1, 2], "width": 4, "norm": ["instancenorm", "batchnorm"]}
    result = run_nas(tiny_set(), space, out, dataset=make_tiny_dataset(), workers=0, num_eval=2, epochs=2,
                     batch_size=256, real_epochs=1, real_batch_size=16, val_size=15, seed=3, device="cpu")
    return {"rows": result.rows, "summary": result.summary}


def random_set(data_root: str, out: str) -> str:
    """A random IPC 1 set of the fake MNIST (``distill --method random``), for :func:`scores_baseline_scenario`."""
    from datadistill.api import run_distill
    from datadistill.config import DistillConfig

    run_distill(DistillConfig(dataset="mnist", data_root=data_root, method="random", ipc=1, num_eval=0,
                              model=TINY_MODEL, device="cpu"), out)
    return str(Path(out) / "synthetic.safetensors")


def scores_baseline_scenario(syn_path: str, data_root: str, folder: str) -> dict[str, Any]:
    """``evaluate --scores`` with a new baseline folder (its whole-data baseline trained there, 1 epoch):
    the scores, and how many times this rank trained the baseline."""
    import datadistill.api.runs as runs
    from datadistill.evaluation.ranking_protocol import RankingSettings

    trained = []
    real = runs.run_baseline

    def counted(*args: Any, **kwargs: Any):
        trained.append(1)
        return real(*args, **{**kwargs, "epochs": 1})

    runs.run_baseline = counted
    try:
        result = runs.run_evaluate(syn_path, [TINY_MODEL], baselines=[folder], data_root=data_root, device="cpu",
                                   scores=RankingSettings(lr_grid=(0.01,), labels="hard"), num_eval=1, epochs=1)
    finally:
        runs.run_baseline = real
    return {"scores": result.metadata["ranking_scores"], "trained": len(trained)}
