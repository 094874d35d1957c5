"""Training and test cost of each evaluation architecture on MNIST-sized inputs, to plan evaluations.

For every model of the cross-architecture zoo: seconds of one SGD step on 100 images (an IPC 10
synthetic set is one mini-batch, so one epoch is one step), the projected training seconds of
``--epochs`` epochs, and the seconds of one pass over a 10,000-image test set (from a 256-image
forward pass). Random inputs of shape (N, 1, 28, 28); one warm-up step, then the mean of 2
steps. The threads are torch's (set OMP_NUM_THREADS). glibc's allocator is tuned as the CLI does
(:func:`datadistill.runtime.tune_cpu_allocator`) unless ``--no-tune-allocator``.

    OMP_NUM_THREADS=1 python benchmarks/arch_cost.py --epochs 300
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table  # noqa: E402

from datadistill.models import build_model  # noqa: E402
from datadistill.runtime import tune_cpu_allocator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["convnet", "alexnet", "vgg11", "resnet18", "lenet", "mlp"])
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--no-tune-allocator", action="store_true", help="keep glibc's default malloc settings")
    args = ap.parse_args()
    if not args.no_tune_allocator:
        tune_cpu_allocator()
    x, y = torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))
    rows = []
    for name in args.models:
        net = build_model(name, 1, 10, (28, 28))
        opt = torch.optim.SGD(net.parameters(), lr=0.01)

        def step():
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()

        step()
        t = time.perf_counter()
        step(), step()
        train = (time.perf_counter() - t) / 2
        with torch.no_grad():
            net.eval()
            xb = torch.randn(256, 1, 28, 28)
            net(xb)
            t = time.perf_counter()
            net(xb)
            test = (time.perf_counter() - t) * 10000 / 256
        rows.append([name, f"{train:.3f}", f"{train * args.epochs:.0f}", f"{test:.0f}",
                     f"{train * args.epochs + test:.0f}"])
    print(f"# {machine()}, allocator {'default' if args.no_tune_allocator else 'tuned'}\n")
    print(table(["model", "s per step (100 images)", f"train s ({args.epochs} epochs)", "test s (10,000 images)",
                 "s per network"], rows))


if __name__ == "__main__":
    main()
