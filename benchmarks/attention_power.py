"""DataDAM's attention map A(F) = Σ_c |F_c|^p at p = 4: ``abs().pow(4)`` against
:func:`datadistill.methods.losses.abs_power` (two squarings), forward + backward, in one run.

    python benchmarks/attention_power.py --shape 640 128 32 32 --repeats 5

The shape default is the first ConvNet-3 block's activation of a DataDAM MNIST IPC 10 step
(64 real images per class × 10 classes, width 128, 32×32 maps). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table  # noqa: E402

from datadistill.methods.losses import abs_power  # noqa: E402


def _map_pow(x: torch.Tensor, p: float) -> torch.Tensor:
    return F.normalize(x.abs().pow(p).sum(dim=1).flatten(1), dim=-1)


def _map_ours(x: torch.Tensor, p: float) -> torch.Tensor:
    return F.normalize(abs_power(x, p).sum(dim=1).flatten(1), dim=-1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=4, default=[640, 128, 32, 32])
    p.add_argument("--power", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    x = torch.randn(*args.shape, requires_grad=True)
    times = {"pow": [], "abs_power": []}
    for _ in range(args.repeats + 1):  # first round is warm-up
        for name, f in (("pow", _map_pow), ("abs_power", _map_ours)):
            t = time.perf_counter()
            f(x, args.power).sum().backward()
            times[name].append(time.perf_counter() - t)
            x.grad = None
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    print(f"attention map, p = {args.power:g}, input {tuple(args.shape)}, forward + backward, median of "
          f"{args.repeats}; {machine()}\n")
    print(table(["implementation", "seconds", "speedup"],
                [["abs().pow(p)", f"{med['pow']:.3f}", "1.00×"],
                 ["abs_power (squarings)", f"{med['abs_power']:.3f}", f"{med['pow'] / med['abs_power']:.2f}×"]]))


if __name__ == "__main__":
    main()
