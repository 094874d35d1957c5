"""Accuracy of the coreset baselines (random, herding, k-center) at several IPCs under the evaluation
protocol. The feature network for herding and k-center is trained once and shared by every IPC.

    .venv/bin/python benchmarks/coreset_baselines.py --ipc 1 10 50 --num-eval 3 --eval-epochs 300
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import machine, table
from datadistill.data import RealSet, load_dataset
from datadistill.evaluation import EvalSettings, evaluate_synthetic_set
from datadistill.io import SyntheticSet
from datadistill.runtime import make_generator, select_device, tune_cpu_allocator
from datadistill.selection import FeatureSettings, class_features, herding_order, k_center_order


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--ipc", nargs="+", type=int, default=[1, 10, 50])
    p.add_argument("--methods", nargs="+", default=["random", "herding", "k_center"])
    p.add_argument("--num-eval", type=int, default=3)
    p.add_argument("--eval-epochs", type=int, default=300)
    p.add_argument("--feature-epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    tune_cpu_allocator()
    device = select_device(args.device)
    data = load_dataset(args.dataset, args.data_root)
    spec = data.spec
    real = RealSet(data.train, spec.num_classes)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    feats = class_features(real, spec, FeatureSettings(epochs=args.feature_epochs), device, make_generator(args.seed))
    feature_seconds = time.perf_counter() - t0
    settings = EvalSettings(num_eval=args.num_eval, epochs=args.eval_epochs, dsa_strategy=spec.dsa_strategy)
    rows = []
    for ipc in args.ipc:
        for method in args.methods:
            if method == "random":
                images = real.sample(ipc, make_generator(args.seed)).flatten(0, 1)
            else:
                pick = herding_order if method == "herding" else k_center_order
                idx = torch.cat([ids[pick(f, ipc)] for ids, f in zip(real.indices_by_class, feats)])
                images = real.images[idx]
            labels = torch.arange(spec.num_classes).repeat_interleave(ipc)
            syn = SyntheticSet(images, labels, metadata={"num_classes": spec.num_classes})
            res = evaluate_synthetic_set(syn, data.test, settings, device, seed=args.seed)
            rows.append([method, ipc, f"{res.mean:.2f} ± {res.std:.2f}", " / ".join(f"{a:.2f}" for a in res.accuracies),
                         f"{res.seconds:.0f}"])
            print(rows[-1], flush=True)
    print(f"\nmachine: {machine()}, device {device}")
    print(f"dataset {args.dataset}; feature network ConvNet-3 trained {args.feature_epochs} epoch(s) "
          f"({feature_seconds:.0f} s); evaluation ConvNet-3, {args.num_eval} models x {args.eval_epochs} epochs, DSA\n")
    print(table(["method", "IPC", "accuracy %", "per model", "eval s"], rows))


if __name__ == "__main__":
    main()
