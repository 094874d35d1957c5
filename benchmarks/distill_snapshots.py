"""One distillation from a config, with the synthetic set saved at chosen iterations (0 = the
initial set), so the same run's initial set and its accuracy-against-iterations curve can be
evaluated afterwards under any protocol (`datadistill evaluate FILE …`).

    .venv/bin/python benchmarks/distill_snapshots.py --config configs/cpu/datm_mnist_ipc10.yaml \
        --set iterations=1000 --set max_seconds=null --method-arg experts=runs/experts/mnist_w32_gsam \
        --snapshots 0 250 500 750 1000 --out runs/datm_ipc10_snapshots

Writes OUT/iter_NNNNN.safetensors per snapshot and OUT/run.json (settings, wall time, iterations,
loss per iteration, machine). No evaluation: run `datadistill evaluate` on the files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import yaml
from _common import machine
from datadistill.api import distill
from datadistill.config import build_config
from datadistill.fsutil import atomic_write_text
from datadistill.io import save_synthetic_set
from datadistill.runtime import tune_cpu_allocator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=YAML", help="override a config key")
    p.add_argument("--method-arg", action="append", default=[], metavar="KEY=YAML")
    p.add_argument("--snapshots", nargs="+", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    tune_cpu_allocator()
    overrides = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    overrides["method_args"] = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.method_arg)}
    overrides.update(num_eval=0, eval_init=False)
    config = build_config(args.config, overrides)
    unset = {k: None for k, v in overrides.items() if v is None}  # build_config skips None: `--set max_seconds=null`
    if unset:
        config = dataclasses.replace(config, **unset)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    losses: list[float] = []
    start = time.perf_counter()

    def step(iteration, metrics):
        losses.append(float(metrics.get("loss", float("nan"))))
        if iteration % 50 == 0:
            print(f"{time.strftime('%T')} iteration {iteration}: loss {losses[-1]:.4f}", flush=True)

    result = distill(config, callbacks=[step], evaluate=False, snapshot_iterations=args.snapshots)
    for it, syn in sorted(result.snapshots.items()):
        save_synthetic_set(syn, out / f"iter_{it:05d}.safetensors")
    record = {"config": config.as_dict(), "iterations": len(losses),
              "distill_seconds": result.distill_seconds, "wall_seconds": time.perf_counter() - start,
              "snapshots": sorted(result.snapshots), "losses": losses, "machine": machine(),
              "date": time.strftime("%Y-%m-%d")}
    atomic_write_text(out / "run.json", json.dumps(record, indent=1, default=str) + "\n")
    print(f"{len(losses)} iterations in {result.distill_seconds:.0f} s; snapshots {sorted(result.snapshots)} in {out}")


if __name__ == "__main__":
    main()
