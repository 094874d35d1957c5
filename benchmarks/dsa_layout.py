"""Seconds of one training step (forward + backward) on a single-channel batch in the layout DSA's
crop op used to return (a permuted view whose strides torch reads as channels-last, so the
convolutions and GroupNorm take their channels-last kernels) against standard NCHW strides, which
the crop op now returns. Same network, same values, the two layouts alternated in one process.

    OMP_NUM_THREADS=1 python benchmarks/dsa_layout.py --models convnet_w32 convnet --batch 256 --repeats 5
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

from datadistill.models import build_model  # noqa: E402
from datadistill.runtime import tune_cpu_allocator  # noqa: E402


def permuted_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, 1, H, W) with the strides the old crop op returned when training epochs call DSA
    (one image per group): (H·W, 1, W, 1), the channel stride 1 that torch reads as channels-last."""
    n, c, h, w = x.shape
    return x.clone().as_strided((n, c, h, w), (h * w, 1, w, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["convnet_w32", "convnet"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    tune_cpu_allocator()
    torch.manual_seed(0)
    rows = []
    for name in args.models:
        net = build_model(name, 1, 10, (28, 28))
        x = torch.randn(args.batch, 1, 28, 28)
        y = torch.randint(10, (args.batch,))
        layouts = {"standard NCHW": x, "permuted (old crop)": permuted_layout(x)}
        assert torch.equal(layouts["standard NCHW"], layouts["permuted (old crop)"])
        times: dict[str, list[float]] = {k: [] for k in layouts}
        for r in range(args.repeats + 1):  # the first round warms up
            for tag, inp in layouts.items():
                net.zero_grad(set_to_none=True)
                t = time.perf_counter()
                F.cross_entropy(net(inp), y).backward()
                if r:
                    times[tag].append(time.perf_counter() - t)
        new, old = (statistics.median(times[k]) for k in layouts)
        rows.append([name, args.batch, f"{old:.3f}", f"{new:.3f}", f"{old / new:.2f}×"])
    print(f"# {machine()}\n")
    print(table(["model", "batch", "permuted s/step", "standard s/step", "speedup"], rows))


if __name__ == "__main__":
    main()
