"""Test accuracy of the synthetic set against distillation iterations: one distillation per method,
snapshots of the set evaluated under the same protocol (same seeds, K models, E epochs).

    .venv/bin/python benchmarks/accuracy_vs_iterations.py --methods datadam dm --ipc 10 \
        --checkpoints 0 250 500 1000 --num-eval 2 --eval-epochs 300
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from _common import machine, table
from datadistill import DistillConfig, distill
from datadistill.api import eval_settings
from datadistill.data import load_dataset
from datadistill.evaluation import evaluate_synthetic_set
from datadistill.io import save_synthetic_set
from datadistill.runtime import select_device, tune_cpu_allocator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["datadam", "dm"])
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--checkpoints", nargs="+", type=int, default=[0, 250, 500, 1000])
    p.add_argument("--num-eval", type=int, default=2, help="eval models per intermediate checkpoint")
    p.add_argument("--final-num-eval", type=int, default=None, help="eval models at the last checkpoint")
    p.add_argument("--init", default="real")
    p.add_argument("--method-arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--eval-epochs", type=int, default=300)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-root", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-final", default=None, metavar="DIR",
                   help="write each method's last set to DIR/METHOD_ipcN.safetensors")
    args = p.parse_args()
    tune_cpu_allocator()
    data = load_dataset(args.dataset, args.data_root)
    rows = []
    for method in args.methods:
        cfg = DistillConfig(dataset=args.dataset, method=method, ipc=args.ipc, iterations=max(args.checkpoints),
                            init=args.init, num_eval=args.num_eval, eval_epochs=args.eval_epochs, seed=args.seed,
                            method_args=dict(kv.split("=", 1) for kv in args.method_arg))
        result = distill(cfg, dataset=data, evaluate=False, snapshot_iterations=args.checkpoints)
        settings = eval_settings(cfg, data.spec)
        final = dataclasses.replace(settings, num_eval=args.final_num_eval or args.num_eval)
        per_it = result.distill_seconds / max(cfg.iterations, 1)
        print(f"{method}: {cfg.iterations} iterations in {result.distill_seconds:.0f} s", flush=True)
        if args.save_final:
            save_synthetic_set(result.synthetic_set, Path(args.save_final) / f"{method}_ipc{args.ipc}.safetensors")
        for it in sorted(result.snapshots):
            ev = evaluate_synthetic_set(result.snapshots[it], data.test, final if it == cfg.iterations else settings,
                                        select_device("auto"), seed=args.seed)
            rows.append([method, args.ipc, args.init, it, f"{it * per_it:.0f}", len(ev.accuracies),
                         f"{ev.mean:.2f} ± {ev.std:.2f}"])
            print(rows[-1], flush=True)
    print(f"\nmachine: {machine()}")
    print(f"dataset {args.dataset}, ConvNet-3, {args.eval_epochs} evaluation epochs, seed {args.seed}\n")
    print(table(["method", "IPC", "init", "iterations", "distill s (pro rata)", "eval models", "test accuracy %"],
                rows))


if __name__ == "__main__":
    main()
