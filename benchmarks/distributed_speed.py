"""Two processes × 1 thread (torchrun, gloo) against one process × 2 threads, on the CPU, measured in one
run alternating the two ways (issue #20): a DM and a DataDAM MNIST IPC 10 step (class-sharded over
the ranks), the evaluation of 4 networks (spread over the ranks), and an 8-cell compare grid (cells
spread over the ranks).

    python benchmarks/distributed_speed.py [--repeats 2] [--parts dm,datadam,eval,grid] [--data-root DIR]

Prints a markdown table: per part, the seconds of each way in every repeat (the order of the two
ways alternates from one repeat to the next), their medians and the ratio one process ÷ two
processes (> 1: two processes are faster). Each way runs in fresh processes (this script as the
worker); the seconds are the worker's timed section only (data loading and process start-up left
out; two processes: rank 0's wall between two barriers). Sizes: ``--iterations`` steps of the
width-128 ConvNet (the median step after the first is reported), ``--eval-epochs`` for the 4
networks (``--model``, default the width-32 ConvNet, which keeps the whole run within about 10
minutes on a 2-core CPU; sequential loop, each tested on the 10,000 test images), and a grid of
random and DM × IPC 1, 10 × seeds 0, 1 (``--model``) with 2 DM iterations and one evaluation network
of ``--grid-epochs`` epochs per cell.
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
from pathlib import Path

import torch

from _common import machine, table

PARTS = ("dm", "datadam", "eval", "grid")
WAYS = ("1 process × 2 threads", "2 processes × 1 thread")


def worker_run(part: str, args: argparse.Namespace) -> float:
    """The timed section of ``part`` in this process (one rank of the run when under torchrun)."""
    from datadistill import api, distributed
    from datadistill.config import build_config
    from datadistill.data import load_dataset

    data = load_dataset("mnist", args.data_root)
    if part in ("dm", "datadam"):
        config = build_config(None, {"dataset": "mnist", "method": part, "ipc": 10, "iterations": args.iterations,
                                     "num_eval": 0, "device": "cpu", "seed": 0})
        stamps: list[float] = []
        distributed.barrier()
        start = time.perf_counter()
        api.distill(config, callbacks=[lambda it, m: stamps.append(time.perf_counter())], dataset=data,
                    evaluate=False)
        steps = [b - a for a, b in zip([start] + stamps, stamps)]
        return statistics.median(steps[1:]) if len(steps) > 1 else steps[0]
    distributed.barrier()
    start = time.perf_counter()
    if part == "eval":
        from datadistill.evaluation import EvalSettings, evaluate_synthetic_set
        from datadistill.io import SyntheticSet

        picked = torch.cat([torch.nonzero(data.train.labels == c).flatten()[:10] for c in range(10)])
        syn = SyntheticSet(data.train.images[picked], data.train.labels[picked], metadata={"num_classes": 10})
        settings = EvalSettings(model=args.model, num_eval=4, epochs=args.eval_epochs, vectorise=False,
                                dsa_strategy=data.spec.dsa_strategy)
        evaluate_synthetic_set(syn, data.test, settings, torch.device("cpu"), seed=0)
    else:
        from datadistill.experiments.compare import run_compare

        grid = {"base": {"dataset": "mnist", "data_root": args.data_root, "device": "cpu", "iterations": 2,
                         "num_eval": 1, "eval_epochs": args.grid_epochs, "model": args.model},
                "methods": ["random", "dm"], "ipc": [1, 10], "seeds": [0, 1]}
        with tempfile.TemporaryDirectory(prefix="grid_") as tmp:
            out = distributed.broadcast_object(tmp)  # rank 0's folder: the cells' folders must be shared
            run_compare(grid, out=out)
            distributed.barrier()
    distributed.barrier()
    return time.perf_counter() - start


def worker(args: argparse.Namespace) -> None:
    from datadistill import distributed
    from datadistill.runtime import tune_cpu_allocator

    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    distributed.init(torch.device("cpu"))
    try:
        seconds = worker_run(args.worker, args)
        if distributed.world().is_main:
            Path(args.result).write_text(json.dumps({"seconds": seconds}))
    finally:
        distributed.shutdown()


def run_way(way: int, part: str, args: argparse.Namespace, result: Path) -> float:
    """Start ``part`` one way (0: one process, 2 threads; 1: torchrun, 2 processes × 1 thread)."""
    threads = 2 if way == 0 else 1
    launcher = [sys.executable] if way == 0 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                  "--nproc-per-node", "2"]
    cmd = launcher + [__file__, "--worker", part, "--result", str(result), "--threads", str(threads),
                      "--iterations", str(args.iterations), "--eval-epochs", str(args.eval_epochs),
                      "--grid-epochs", str(args.grid_epochs), "--model", args.model]
    cmd += ["--data-root", args.data_root] if args.data_root else []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{WAYS[way]} {part} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(result.read_text())["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--eval-epochs", type=int, default=20)
    parser.add_argument("--grid-epochs", type=int, default=10)
    parser.add_argument("--model", default="convnet_w32", help="the evaluation's and the grid's network")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--worker", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        sys.exit(f"unknown part(s) {', '.join(unknown)}: expected some of {', '.join(PARTS)}")
    print(f"# {machine()}")
    print(f"# sizes: {args.iterations} steps (ConvNet), 4 {args.model} × {args.eval_epochs} epochs, 8 {args.model} "
          f"cells (eval {args.grid_epochs} epochs); {args.repeats} repeats, the two ways alternating\n")
    seconds = {p: ([], []) for p in parts}
    with tempfile.TemporaryDirectory(prefix="dist_speed_") as tmp:
        for r in range(args.repeats):
            for part in parts:
                for way in ((0, 1) if r % 2 == 0 else (1, 0)):
                    seconds[part][way].append(run_way(way, part, args, Path(tmp) / f"{part}_{r}_{way}.json"))
                    print(f"  repeat {r + 1}, {part}, {WAYS[way]}: {seconds[part][way][-1]:.3f} s",
                          file=sys.stderr, flush=True)
    names = {"dm": "DM step (s)", "datadam": "DataDAM step (s)", "eval": "evaluate 4 networks (s)",
             "grid": "8-cell grid (s)"}
    rows = []
    for part in parts:
        one, two = (statistics.median(s) for s in seconds[part])
        each = [" / ".join(f"{s:.3f}" for s in seconds[part][way]) for way in (0, 1)]
        rows.append([names[part], *each, f"{one:.3f}", f"{two:.3f}", f"{one / two:.2f}×"])
    print(table(["part", f"{WAYS[0]}, each repeat", f"{WAYS[1]}, each repeat", "median 1 process",
                 "median 2 processes", "ratio 1 ÷ 2"], rows))


if __name__ == "__main__":
    main()
