"""The measurements of scripts/device_check.sh (issue #20, item 7): DM, DataDAM and DATM on MNIST IPC
10 for a fixed number of iterations (world 1, and world 2 through torchrun when two GPUs exist), and
the vectorised evaluation of 5 networks × 300 epochs; one JSON summary.

    python benchmarks/device_check.py --out device_check.json [--data-root DIR] [--cuda-tests XML] [--dry-run]

Per method: seconds per iteration (median of the step-to-step times after the first step, which is
reported apart: it holds CUDA's start-up), the test accuracy of the learned set (``num_eval``
networks, ``eval_epochs`` epochs), and the peak GPU memory of the distillation and of the evaluation
(``torch.cuda.max_memory_allocated``, bytes; per rank at world 2). DATM needs experts: a tiny set is
trained first (2 ``convnet_w32`` experts × 3 epochs). The vectorised evaluation trains the same 5
networks on DM's set under ``torch.vmap`` and one by one: seconds, accuracy, peak memory.

``--dry-run`` runs everything at toy sizes on the CPU (a 500-image training subset, 2 iterations, 2
evaluation epochs; world 2 through torchrun on gloo), to check the script where there is no GPU.
Sizes in :data:`SIZES`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import torch

from datadistill import api, distributed
from datadistill.config import build_config
from datadistill.data import LabelledImages, SplitDataset, load_dataset
from datadistill.evaluation import EvalSettings, evaluate_synthetic_set
from datadistill.runtime import tune_cpu_allocator
from datadistill.trajectory import ExpertSettings, train_experts

SIZES = {
    "gpu": {"iterations": {"dm": 200, "datadam": 200, "datm": 100}, "num_eval": 2, "eval_epochs": 300,
            "experts": 2, "expert_epochs": 3, "syn_steps": 20, "vec_networks": 5, "vec_epochs": 300,
            "train_images": None, "test_images": None, "datm_init": "samples_predicted_correctly"},
    "dry": {"iterations": {"dm": 2, "datadam": 2, "datm": 2}, "num_eval": 1, "eval_epochs": 2,
            "experts": 1, "expert_epochs": 2, "syn_steps": 2, "vec_networks": 5, "vec_epochs": 2,
            "train_images": 500, "test_images": 500, "datm_init": "real"},  # toy experts: too weak to pick images
}
METHODS = ("dm", "datadam", "datm")


def load_data(data_root: str | None, sizes: dict[str, Any]) -> SplitDataset:
    """MNIST, cut to the first ``train_images`` / ``test_images`` of each split in a dry run."""
    data = load_dataset("mnist", data_root)

    def cut(s: LabelledImages, n: int | None) -> LabelledImages:
        return s if n is None or n >= len(s) else s.subset(torch.arange(n))

    return SplitDataset(data.spec, cut(data.train, sizes["train_images"]), cut(data.test, sizes["test_images"]))


def peak_memory(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def method_config(method: str, sizes: dict[str, Any], experts: str, device: str) -> Any:
    values: dict[str, Any] = {"dataset": "mnist", "method": method, "ipc": 10,
                              "iterations": sizes["iterations"][method], "num_eval": sizes["num_eval"], "eval_epochs": sizes["eval_epochs"], "device": device,
                              "seed": 0}
    if method == "datm":  # configs/cpu/datm_mnist_ipc10.yaml, cut to the tiny experts
        values.update(model="convnet_w32", init=sizes["datm_init"], lr_img=100, momentum_img=0.5,
                      method_args={"experts": experts, "syn_steps": sizes["syn_steps"], "expert_epochs": 1,
                                   "max_start_epoch": 1, "current_max_start_epoch": 1, "lr_teacher": 0.01,
                                   "soft_labels": True, "lr_y": 2.0, "memory": "checkpointed"})
    return build_config(None, values)


def run_method(method: str, data: SplitDataset, sizes: dict[str, Any], experts: str, device: torch.device):
    """One distillation, then its evaluation: (summary row, the learned set)."""
    config = method_config(method, sizes, experts, device.type)
    stamps: list[float] = []
    reset_peak(device)
    start = time.perf_counter()
    result = api.distill(config, callbacks=[lambda it, metrics: stamps.append(time.perf_counter())], dataset=data,
                         evaluate=False)
    distill_peak = peak_memory(device)
    steps = [b - a for a, b in zip([start] + stamps, stamps)]
    reset_peak(device)
    settings = EvalSettings(model=config.resolved_eval_model, num_eval=config.num_eval, epochs=config.eval_epochs,
                            dsa_strategy=data.spec.dsa_strategy)
    t0 = time.perf_counter()
    ev = evaluate_synthetic_set(result.synthetic_set, data.test, settings, device, seed=0)
    row = {"method": method, "iterations": result.iterations_run, "first_step_seconds": steps[0] if steps else None,
           "seconds_per_iteration": statistics.median(steps[1:]) if len(steps) > 1 else (steps or [None])[0],
           "distill_seconds": result.distill_seconds, "accuracy_mean": ev.mean, "accuracy_std": ev.std,
           "accuracies": ev.accuracies, "eval_networks": config.num_eval, "eval_epochs": config.eval_epochs,
           "eval_seconds": time.perf_counter() - t0, "eval_vectorised": ev.vectorised,
           "peak_gpu_memory_distill_bytes": distill_peak, "peak_gpu_memory_eval_bytes": peak_memory(device)}
    return row, result.synthetic_set


def distill_all(data: SplitDataset, sizes: dict[str, Any], experts: str, device: torch.device) -> tuple[list, Any]:
    """Every method; a method that fails gives a row with its ``error`` (the others still run)."""
    rows, dm_set = [], None
    for method in METHODS:
        try:
            row, syn = run_method(method, data, sizes, experts, device)
        except Exception as exc:  # recorded in the summary; the script exits non-zero
            rows.append({"method": method, "error": f"{type(exc).__name__}: {exc}"})
            print(f"device_check: {method} failed: {exc}", file=sys.stderr, flush=True)
            continue
        rows.append(row)
        dm_set = syn if method == "dm" else dm_set
        print(f"device_check: {method} world {distributed.world().world_size}: "
              f"{row['seconds_per_iteration']:.4f} s/it, {row['accuracy_mean']:.2f} %", file=sys.stderr, flush=True)
    return rows, dm_set


def vectorised_evaluation(syn, data: SplitDataset, sizes: dict[str, Any], device: torch.device) -> list[dict]:
    rows = []
    for vectorise in (True, False):
        settings = EvalSettings(model="convnet", num_eval=sizes["vec_networks"], epochs=sizes["vec_epochs"],
                                vectorise=vectorise, dsa_strategy=data.spec.dsa_strategy)
        reset_peak(device)
        t0 = time.perf_counter()
        ev = evaluate_synthetic_set(syn, data.test, settings, device, seed=0)
        rows.append({"mode": "vectorised" if ev.vectorised else "sequential", "networks": settings.num_eval,
                     "epochs": settings.recipe.epochs, "seconds": time.perf_counter() - t0,
                     "train_seconds": ev.train_seconds, "accuracy_mean": ev.mean, "accuracy_std": ev.std,
                     "accuracies": ev.accuracies, "peak_gpu_memory_bytes": peak_memory(device)})
    return rows


def cuda_tests(xml_path: str | None) -> dict[str, Any] | None:
    """The counts of the ``pytest -m cuda`` run (its JUnit XML)."""
    if not xml_path or not Path(xml_path).is_file():
        return None
    root = ET.parse(xml_path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed_tests": failed}


def world_two(args: argparse.Namespace, experts: str, work: Path) -> dict[str, Any]:
    """The three methods again under ``torchrun --nproc-per-node 2`` (this script as the worker)."""
    part = work / "world2.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", __file__,
           "--worker", str(part), "--experts", experts] + (["--dry-run"] if args.dry_run else []) + \
          (["--data-root", args.data_root] if args.data_root else [])
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
                          capture_output=True, text=True)
    if done.returncode != 0 or not part.is_file():
        return {"error": f"torchrun exited {done.returncode}", "stderr_tail": done.stderr[-4000:]}
    return {**json.loads(part.read_text()), "wall_seconds": time.perf_counter() - t0}


def worker(args: argparse.Namespace, sizes: dict[str, Any], device: torch.device) -> None:
    """A torchrun rank: every method at world 2; rank 0 writes the rows with every rank's peak memory."""
    distributed.init(device)
    try:
        rows, _ = distill_all(load_data(args.data_root, sizes), sizes, args.experts, distributed.local_device(device))
        peaks = distributed.all_gather_objects([(r.get("peak_gpu_memory_distill_bytes"),
                                                 r.get("peak_gpu_memory_eval_bytes")) for r in rows])
        for j, row in enumerate(rows):
            row["peak_gpu_memory_distill_bytes_per_rank"] = [p[j][0] for p in peaks]
            row["peak_gpu_memory_eval_bytes_per_rank"] = [p[j][1] for p in peaks]
        if distributed.world().is_main:
            Path(args.worker).write_text(json.dumps({"world_size": distributed.world().world_size, "methods": rows},
                                                    indent=2) + "\n")
    finally:
        distributed.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="device_check.json")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--cuda-tests", default=None, help="JUnit XML of `pytest -m cuda`, summarised in the JSON")
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--experts", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    tune_cpu_allocator()
    sizes = SIZES["dry" if args.dry_run else "gpu"]
    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("device_check: no CUDA GPU is visible (use --dry-run to check the script on the CPU)")
    if args.worker:
        return worker(args, sizes, device)
    t_start = time.perf_counter()
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    data = load_data(args.data_root, sizes)
    with tempfile.TemporaryDirectory(prefix="device_check_") as tmp:
        work = Path(tmp)
        experts = str(work / "experts")
        t0 = time.perf_counter()
        train_experts(data, experts, ExpertSettings(model="convnet_w32", num_experts=sizes["experts"],
                                                    epochs=sizes["expert_epochs"], batch_size=256), device)
        experts_seconds = time.perf_counter() - t0
        rows, dm_set = distill_all(data, sizes, experts, device)
        two = world_two(args, experts, work) if gpus >= 2 or args.dry_run else \
            {"skipped": f"{gpus} CUDA GPU(s) visible: world 2 needs two"}
        vec = vectorised_evaluation(dm_set, data, sizes, device) if dm_set is not None else \
            [{"error": "no DM set to evaluate (DM failed)"}]
    summary = {
        "dry_run": args.dry_run, "device": torch.cuda.get_device_name(0) if gpus else "cpu", "gpus": gpus,
        "torch": torch.__version__, "cuda": torch.version.cuda, "date": time.strftime("%Y-%m-%d"),
        "sizes": sizes, "cuda_tests": cuda_tests(args.cuda_tests),
        "experts": {"model": "convnet_w32", "experts": sizes["experts"], "epochs": sizes["expert_epochs"],
                    "seconds": experts_seconds},
        "world1": {"methods": rows}, "world2": two, "vectorised_evaluation": vec,
        "total_seconds": time.perf_counter() - t_start,
    }
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"device_check: summary in {args.out} ({summary['total_seconds']:.0f} s)", file=sys.stderr)
    failed = [r for r in rows + two.get("methods", []) + vec if "error" in r] + ([two] if "error" in two else [])
    if failed:
        sys.exit(f"device_check: {len(failed)} measurement(s) failed (see {args.out})")


if __name__ == "__main__":
    main()
