"""Peak memory of MTT steps against syn_steps, for the unrolled and the checkpointed backward.

Each (memory mode, syn_steps) cell runs in a fresh process: load MNIST, build MTT on the given
experts, run ``--iterations`` steps, and report the process's peak resident set size (VmHWM) and the
resident size just before the first step (dataset, experts and model loaded), so the step's own
peak is the difference. One process per cell, one run each.

    python benchmarks/mtt_memory.py --experts runs/experts/mnist_w32 --model convnet_w32 --ipc 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, status_kib as _status_kib, table  # noqa: E402


def child(args: argparse.Namespace) -> None:
    import time

    import torch

    from datadistill.api import method_config
    from datadistill.augment import DSA
    from datadistill.config import DistillConfig
    from datadistill.data import RealSet, load_dataset
    from datadistill.methods import METHODS
    from datadistill.runtime import make_generator, tune_cpu_allocator

    tune_cpu_allocator()
    data = load_dataset("mnist", args.data_root)
    real = RealSet(data.train, data.spec.num_classes)
    cfg = DistillConfig(method="mtt", ipc=args.ipc, model=args.model, method_args={
        "experts": args.experts, "syn_steps": args.syn_steps, "expert_epochs": 2, "max_start_epoch": 2,
        "memory": args.memory})
    d = METHODS.get("mtt")(method_config(cfg), data.spec, real, ipc=args.ipc, model=args.model,
                           dsa=DSA(data.spec.dsa_strategy), device=torch.device("cpu"), generator=make_generator(0))
    d.initialise("real")
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    for _ in range(args.iterations):
        d.step()
        d.iteration += 1
    seconds = (time.perf_counter() - start) / args.iterations
    print(json.dumps({"before_kib": before, "peak_kib": _status_kib("VmHWM"), "seconds_per_iteration": seconds}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experts", required=True)
    p.add_argument("--model", default="convnet_w32")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--syn-steps", default="10,20,40")
    p.add_argument("--modes", default="unrolled,checkpointed")
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--data-root", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--memory", default="unrolled", help=argparse.SUPPRESS)
    p.add_argument("--syn-steps-one", dest="syn_steps_one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.syn_steps = args.syn_steps_one
        child(args)
        return
    rows, results = [], {}
    for mode in args.modes.split(","):
        for steps in (int(s) for s in args.syn_steps.split(",")):
            cmd = [sys.executable, __file__, "--child", "--memory", mode, "--syn-steps-one", str(steps),
                   "--experts", args.experts, "--model", args.model, "--ipc", str(args.ipc),
                   "--iterations", str(args.iterations)] + (["--data-root", args.data_root] if args.data_root else [])
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            results[(mode, steps)] = r
            rows.append([mode, steps, f"{r['peak_kib'] / 1024:.0f}", f"{(r['peak_kib'] - r['before_kib']) / 1024:.0f}",
                         f"{r['seconds_per_iteration']:.2f}"])
            print(f"{mode} syn_steps {steps}: {rows[-1]}", file=sys.stderr, flush=True)
    print(f"MTT peak memory, MNIST IPC {args.ipc}, {args.model}, batch_syn = whole set, {args.iterations} iterations "
          f"per cell; {machine()}\n")
    print(table(["memory", "syn_steps", "peak RSS (MiB)", "step peak over loaded (MiB)", "s / iteration"], rows))
    for mode in args.modes.split(","):
        peaks = [results[(mode, int(s))]["peak_kib"] for s in args.syn_steps.split(",")]
        steps_peaks = [results[(mode, int(s))]["peak_kib"] - results[(mode, int(s))]["before_kib"]
                       for s in args.syn_steps.split(",")]
        print(f"\n{mode}: largest / smallest peak RSS = {max(peaks) / min(peaks):.2f}; "
              f"of the step peak = {max(steps_peaks) / max(min(steps_peaks), 1):.2f}")


if __name__ == "__main__":
    main()
