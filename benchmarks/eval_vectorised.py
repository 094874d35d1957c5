"""Vectorised evaluation (K networks of one architecture trained together under torch.vmap) against
the sequential loop, in one run: wall time, speedup and accuracies.

    python benchmarks/eval_vectorised.py runs/exp/dm_ipc10/synthetic.safetensors --ks 5 10 --epochs 300

Prints a markdown table (K, mode, seconds, speedup, accuracy mean ± std). Sequential and vectorised
train the same K networks (same initialisations, shuffles and DSA draws).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from datadistill.data import load_dataset
from datadistill.evaluation import EvalSettings, evaluate_synthetic_set
from datadistill.io import load_synthetic_set
from datadistill.runtime import tune_cpu_allocator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--model", default="convnet")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    tune_cpu_allocator()
    syn = load_synthetic_set(args.file)
    data = load_dataset(syn.metadata["dataset"], args.data_root)
    print(f"# {args.file}: {len(syn)} images, model {args.model}, {args.epochs} epochs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print("| K | mode | seconds | speedup | accuracy % (mean ± std) |")
    print("|---|---|---|---|---|")
    for k in args.ks:
        times = {}
        for vectorise in (False, True):
            settings = EvalSettings(model=args.model, num_eval=k, epochs=args.epochs, vectorise=vectorise,
                                    dsa_strategy=data.spec.dsa_strategy)
            start = time.perf_counter()
            result = evaluate_synthetic_set(syn, data.test, settings, torch.device("cpu"), seed=0)
            times[vectorise] = time.perf_counter() - start
            assert result.vectorised == vectorise
            speedup = f"{times[False] / times[True]:.2f}×" if vectorise else "1.00×"
            print(f"| {k} | {'vectorised' if vectorise else 'sequential'} | {times[vectorise]:.1f} | {speedup} | "
                  f"{result.mean:.2f} ± {result.std:.2f} ({', '.join(f'{a:.2f}' for a in result.accuracies)}) |",
                  flush=True)


if __name__ == "__main__":
    main()
