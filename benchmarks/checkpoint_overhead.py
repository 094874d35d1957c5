"""What checkpointing costs a distillation (issue #19: at most 2 % at the default interval): DM on MNIST
at IPC 10 and IPC 50, each run with checkpoints at the default interval (every 60 s, and once when the
loop ends) and with checkpoints off (``checkpoint_seconds`` 0), alternating the two in one process
(off/on, then on/off, …) so that both see the same machine state. The distillation seconds
(construction, initialisation, the loop and its checkpoint writes) of each mode are the median over
the rounds; the table gives their ratio, the checkpoints written, the median seconds per write and the
checkpoint's size, and the write's share of one interval (what a run much longer than the interval
pays).

    .venv/bin/python benchmarks/checkpoint_overhead.py                      # 1000 iterations, 3 rounds
    .venv/bin/python benchmarks/checkpoint_overhead.py --iterations 20 --rounds 1 --checkpoint-seconds 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from _common import machine, table
from datadistill.api import distill, load_dataset_for
from datadistill.api.checkpointing import RunCheckpoint
from datadistill.config import build_config
from datadistill.runtime import tune_cpu_allocator


class TimedCheckpoint(RunCheckpoint):
    """A RunCheckpoint that records how long each write took."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.write_seconds: list[float] = []

    def write(self, loop_done: bool = False) -> Path:
        t = time.perf_counter()
        path = super().write(loop_done)
        self.write_seconds.append(time.perf_counter() - t)
        return path


def run_once(config, data, folder: Path, seconds: float) -> tuple[float, list[float], int]:
    """(distillation seconds, seconds of each checkpoint write, checkpoint bytes) of one run."""
    ck = TimedCheckpoint.for_run(config, folder, restart=True)
    ck.seconds = seconds
    result = distill(config, dataset=data, evaluate=False, checkpoint=ck)
    size = sum(p.stat().st_size for p in folder.iterdir()) if folder.exists() else 0
    ck.remove()
    return result.distill_seconds, ck.write_seconds, size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ipc", nargs="+", type=int, default=[10, 50])
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3, help="runs of each mode per IPC (alternating)")
    p.add_argument("--checkpoint-seconds", type=float, default=60.0, help="the interval measured (default: the default)")
    p.add_argument("--method", default="dm")
    p.add_argument("--model", default="convnet")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--folder", default=None, help="where the checkpoints go (default: a temporary folder)")
    args = p.parse_args()
    print("allocator tuned:", tune_cpu_allocator())
    base = build_config(None, {"dataset": args.dataset, "data_root": args.data_root, "method": args.method,
                               "model": args.model, "iterations": args.iterations, "num_eval": 0,
                               "device": args.device, "seed": 0})
    data = load_dataset_for(base)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        folder = Path(tmp) / "checkpoint"
        for ipc in args.ipc:
            config = build_config(base, {"ipc": ipc})
            seconds: dict[str, list[float]] = {"off": [], "on": []}
            writes: list[float] = []
            counts: list[int] = []
            size = 0
            for r in range(args.rounds):
                for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
                    interval = args.checkpoint_seconds if mode == "on" else 0.0
                    s, w, n_bytes = run_once(config, data, folder, interval)
                    seconds[mode].append(s)
                    if mode == "on":
                        writes += w
                        counts.append(len(w))
                        size = max(size, n_bytes)
                    print(f"ipc {ipc} round {r + 1} checkpoints {mode}: {s:.2f} s, {len(w)} writes", flush=True)
            off, on = statistics.median(seconds["off"]), statistics.median(seconds["on"])
            per_write = statistics.median(writes) if writes else 0.0
            rows.append([ipc, args.iterations, f"{off:.2f}", f"{on:.2f}", f"{on / off:.4f}",
                         f"{(on / off - 1) * 100:+.2f} %", f"{statistics.median(counts):.0f}",
                         f"{per_write * 1000:.1f}", f"{size / 2**20:.2f}",
                         f"{per_write / args.checkpoint_seconds * 100:.3f} %"])
    print(f"\nmachine: {machine()}")
    print(f"{args.method} on {args.dataset}, model {args.model}, {args.iterations} iterations, checkpoint every "
          f"{args.checkpoint_seconds:g} s (and at the loop's end) vs off, {args.rounds} round(s) alternating, medians\n")
    print(table(["IPC", "iterations", "seconds (off)", "seconds (on)", "on / off", "overhead", "checkpoints",
                 "ms per write", "checkpoint MiB", "write / interval"], rows))


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
