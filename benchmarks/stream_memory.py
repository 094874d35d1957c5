"""Peak memory of distillation steps on a 224×224 MHIST-layout dataset, streamed against in memory.

Writes an MHIST-layout fixture (``annotations.csv`` + ``images/*.png``, random RGB images, about
70 % HP / 30 % SSA, 70 % train) unless it already exists, then runs each mode in a fresh process:
load the dataset (``stream on``: index the files only; ``stream off``: decode every image into one
tensor), build the method, take ``--iterations`` steps, and report the process's peak resident set
size (VmHWM), the resident size once the data is loaded and the method built, and the peak of the
DataLoader workers (the children's ru_maxrss). One run each.

    python benchmarks/stream_memory.py --images 2000 --size 224 --method datadam --ipc 10
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, status_kib as _status_kib, table  # noqa: E402


def write_fixture(root: Path, images: int, size: int, seed: int = 0) -> None:
    """MHIST's layout with ``images`` random size×size RGB PNGs (skipped when the csv is there)."""
    import numpy as np
    from PIL import Image

    if (root / "annotations.csv").is_file():
        return
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(images):
        name = f"MHIST_{i:04d}.png"
        label = "SSA" if rng.random() < 0.3 else "HP"
        smooth = rng.random((size // 8, size // 8, 3))  # blocky texture: PNGs of realistic size
        pixels = np.kron(smooth, np.ones((8, 8, 1)))[:size, :size] * 200 + rng.random((size, size, 3)) * 55
        Image.fromarray(pixels.astype(np.uint8)).save(root / "images" / name)
        rows.append([name, label, "5" if label == "SSA" else "1", "train" if rng.random() < 0.7 else "test"])
    with open(root / "annotations.csv.tmp", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Image Name", "Majority Vote Label", "Number of Annotators who Selected SSA (Out of 7)", "Partition"])
        w.writerows(rows)
    os.replace(root / "annotations.csv.tmp", root / "annotations.csv")


def child(args: argparse.Namespace) -> None:
    import time

    import torch

    from datadistill.api import method_config
    from datadistill.augment import DSA
    from datadistill.config import DistillConfig
    from datadistill.data import RealSet, load_dataset
    from datadistill.methods import METHODS
    from datadistill.models.convnet import default_depth
    from datadistill.runtime import make_generator, tune_cpu_allocator

    tune_cpu_allocator()
    start = time.perf_counter()
    data = load_dataset("mhist", args.root, stream=args.stream, num_workers=args.num_workers)
    load_seconds = time.perf_counter() - start
    real = RealSet(data.train, data.spec.num_classes)
    cfg = DistillConfig(dataset="mhist", method=args.method, ipc=args.ipc, batch_real=args.batch_real)
    d = METHODS.get(args.method)(method_config(cfg), data.spec, real, ipc=args.ipc, model="convnet",
                                 dsa=DSA(data.spec.dsa_strategy), device=torch.device("cpu"), generator=make_generator(0))
    d.initialise("real")
    before = _status_kib("VmRSS")
    times = []
    for _ in range(args.iterations):
        t = time.perf_counter()
        d.step()
        d.iteration += 1
        times.append(time.perf_counter() - t)
    workers_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"before_kib": before, "peak_kib": _status_kib("VmHWM"), "workers_peak_kib": workers_kib,
                      "load_seconds": load_seconds, "step_seconds": times, "streamed": bool(data.train.streamed),
                      "train_images": len(data.train), "depth": default_depth(data.spec.image_size)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="runs/fixtures/mhist224_2000", help="Fixture folder (written if missing).")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--method", default="datadam")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--batch-real", type=int, default=128)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--modes", default="on,off", help="stream settings to run, in order")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--stream", default="on", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    write_fixture(Path(args.root), args.images, args.size)
    rows = []
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--child", "--stream", mode, "--root", args.root, "--size", str(args.size),
               "--method", args.method, "--ipc", str(args.ipc), "--batch-real", str(args.batch_real),
               "--iterations", str(args.iterations), "--num-workers", str(args.num_workers)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows.append([mode, "yes" if r["streamed"] else "no", r["train_images"], f"{r['load_seconds']:.1f}",
                     f"{r['before_kib'] / 1024:.0f}", f"{r['peak_kib'] / 1024:.0f}",
                     f"{(r['peak_kib'] - r['before_kib']) / 1024:.0f}", f"{r['workers_peak_kib'] / 1024:.0f}",
                     ", ".join(f"{s:.1f}" for s in r["step_seconds"])])
        print(f"stream {mode}: {rows[-1]}", file=sys.stderr, flush=True)
    print(f"{args.method} on an MHIST-layout fixture: {args.images} images of 3×{args.size}×{args.size}, ConvNet-{r['depth']} "
          f"(width 128), IPC {args.ipc}, batch_real {args.batch_real} per class, {args.iterations} steps, "
          f"{args.num_workers} DataLoader workers; {machine()}\n")
    print(table(["stream", "streamed", "train images", "load s", "RSS loaded (MiB)", "peak RSS (MiB)",
                 "step peak over loaded (MiB)", "worker peak RSS (MiB)", "step seconds"], rows))


if __name__ == "__main__":
    main()
