"""Seconds per DC iteration (one fresh network: outer_loop synthetic-set updates with inner_loop
network epochs between them) for three layouts of the per-class gradients, measured in one process:

* ``loop``: the reference code's layout, a Python loop over classes with ``torch.autograd.grad``
  on both the real and the synthetic side;
* ``default``: ours: the synthetic side of all classes in one ``torch.func.vmap`` pass; the real side
  as the automatic setting chooses (a per-class loop on CPU, vmap chunks on CUDA);
* ``vmap``: both sides vectorised, ``--chunk`` classes per real pass.

Also splits one synthetic-set update into its real-gradient and synthetic-gradient + backward parts.

    .venv/bin/python benchmarks/dc_step_speed.py --ipc 10 --steps 1
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import machine, table
from datadistill.augment import DSA
from datadistill.data import RealSet, load_dataset
from datadistill.methods import METHODS
from datadistill.runtime import make_generator, select_device, tune_cpu_allocator

LAYOUTS = {"loop": {"batched": False}, "default": {"batched": True}, "vmap": {"batched": True}}


def build(layout: str, data, ipc: int, batch_real: int, chunk: int, device: torch.device):
    cls = METHODS.get("dc")
    cfg = cls.config_class(batch_real=batch_real, chunk=chunk if layout == "vmap" else 0, **LAYOUTS[layout])
    torch.manual_seed(0)
    dist = cls(cfg, data.spec, RealSet(data.train, data.spec.num_classes), ipc=ipc, model="convnet",
               dsa=DSA("none"), device=device, generator=make_generator(0))
    dist.initialise("real")
    return dist


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--batch-real", type=int, default=256)
    p.add_argument("--steps", type=int, default=1, help="iterations timed per layout (after one update as warm-up)")
    p.add_argument("--chunk", type=int, default=1, help="classes per real vmap pass in the vmap layout")
    p.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    print("allocator tuned:", tune_cpu_allocator())
    device = select_device(args.device)
    data = load_dataset(args.dataset, args.data_root)
    rows, per_iteration = [], {}
    for layout in args.layouts:
        dist = build(layout, data, args.ipc, args.batch_real, args.chunk, device)
        net, _ = dist.fresh_network()
        dist.update_images(dist.matching_loss(net))  # warm-up
        t0 = time.perf_counter()
        dist.update_images(dist.matching_loss(net))
        update = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(args.steps):
            dist.step()
        per_iteration[layout] = (time.perf_counter() - t0) / args.steps
        outer, inner = dist.loops
        rows.append([layout, args.ipc, args.batch_real, f"{outer}/{inner}", f"{update:.2f}",
                     f"{per_iteration[layout]:.1f}"])
        print(rows[-1], flush=True)
    base = per_iteration.get("loop")
    for row, layout in zip(rows, args.layouts):
        row.append(f"{base / per_iteration[layout]:.2f}×" if base else "n/a")
    print(f"\nmachine: {machine()}, device {device}")
    print(f"dataset {args.dataset}, ConvNet-3, DC (no augmentation), {args.steps} iteration(s) per layout\n")
    print(table(["layout", "IPC", "batch_real", "outer/inner", "s per update", "s per iteration",
                 "speedup vs loop"], rows))


if __name__ == "__main__":
    main()
