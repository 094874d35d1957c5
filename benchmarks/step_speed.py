"""Seconds per distillation step of each matching method at several IPCs: all classes in one pass
(``batched``, chunked on CPU) against the reference implementations' per-class loop, measured in the
same process, alternating the two layouts.

    .venv/bin/python benchmarks/step_speed.py --steps 10 --ipc 1 10 50
    .venv/bin/python benchmarks/step_speed.py --no-allocator-tuning ...   # glibc malloc defaults
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import machine, table
from datadistill.augment import DSA
from datadistill.data import RealSet, load_dataset
from datadistill.methods import METHODS
from datadistill.runtime import make_generator, tune_cpu_allocator


def time_steps(method: str, ipc: int, batched: bool, data, steps: int, batch_real: int) -> float:
    cls = METHODS.get(method)
    cfg = cls.config_class(batch_real=batch_real, batched=batched)
    torch.manual_seed(0)
    dist = cls(cfg, data.spec, RealSet(data.train, data.spec.num_classes), ipc=ipc, model="convnet",
               dsa=DSA(data.spec.dsa_strategy), device=torch.device("cpu"), generator=make_generator(0))
    dist.initialise("real")
    dist.fit(2)  # warm-up
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        dist.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["dm", "datadam"])
    p.add_argument("--ipc", nargs="+", type=int, default=[1, 10, 50])
    p.add_argument("--batch-real", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-root", default=None)
    p.add_argument("--no-allocator-tuning", action="store_true",
                   help="leave glibc malloc at its defaults (to measure what tune_cpu_allocator gains)")
    args = p.parse_args()
    print("allocator tuned:", False if args.no_allocator_tuning else tune_cpu_allocator())
    data = load_dataset(args.dataset, args.data_root)
    rows = []
    for method in args.methods:
        for ipc in args.ipc:
            per_class = time_steps(method, ipc, False, data, args.steps, args.batch_real)
            batched = time_steps(method, ipc, True, data, args.steps, args.batch_real)
            rows.append([method, ipc, args.batch_real, f"{per_class:.3f}", f"{batched:.3f}", f"{1 / batched:.2f}",
                         f"{per_class / batched:.2f}×"])
    print(f"\nmachine: {machine()}")
    print(f"dataset {args.dataset}, ConvNet-3, DSA on, median of {args.steps} steps after 2 warm-up steps\n")
    print(table(["method", "IPC", "batch_real", "per-class loop s/it", "batched s/it", "batched it/s",
                 "speedup"], rows))


if __name__ == "__main__":
    main()
