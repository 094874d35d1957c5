"""Record what a fixed list of short commands produces, to show that a refactoring changed nothing.

Runs every learning and coreset method at IPC 1 for 2 iterations on real MNIST, ``evaluate``, a
small ``compare`` grid, tiny ``nas``, ``continual`` and ``federated`` configurations, ``experts`` and
``scores``, each through the CLI in a subprocess with one torch thread, and writes one JSON file:
for every command, the SHA-256 of every tensor in every ``.safetensors`` file it wrote and the
content of every JSON file it wrote, with wall times, timestamps and paths removed. Two snapshots
(before and after a change) are then compared with ``--compare``: a command is identical when every
file the old code wrote is written again with the same tensors and JSON values; files only the new
code writes (e.g. resume records) are listed beside it, not counted as changes::

    python benchmarks/behaviour_snapshot.py --work /tmp/snap_before --out before.json
    python benchmarks/behaviour_snapshot.py --work /tmp/snap_after --out after.json
    python benchmarks/behaviour_snapshot.py --compare before.json after.json

The code under test is whatever ``python -c "import datadistill"`` finds (set ``PYTHONPATH`` to a
checkout's ``src`` to snapshot another tree). About 10 minutes on the project's 2-core CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

TIME_KEY = re.compile(r"(seconds|_time|time_|timestamp|created|date|_s$|elapsed|wall|duration|package_version"
                      r"|^version$|per_s|speed|throughput)", re.I)

METHODS = ["random", "herding", "k_center", "el2n", "dm", "datadam", "dc", "dsa", "cafe", "cafe_dsa",
           "mtt", "datm", "pad"]

EVAL = ["--num-eval", "1", "--eval-epochs", "2", "--eval-model", "convnet_w32"]


def _commands(work: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    """(name, argv after ``datadistill``, files to write first {relative path: text})."""
    experts = str(work / "experts")
    scores = str(work / "scores.safetensors")
    cmds: list[tuple[str, list[str], dict[str, str]]] = [
        ("experts", ["experts", "--dataset", "mnist", "--model", "convnet_w32", "--num-experts", "2",
                     "--epochs", "2", "--seed", "0", "--device", "cpu", "--out", experts], {}),
        ("scores", ["scores", "--score", "el2n", "--model", "convnet_w32", "--num-networks", "1", "--epochs", "1",
                    "--device", "cpu", "--out", scores], {}),
    ]
    for m in METHODS:
        argv = ["distill", "--dataset", "mnist", "--method", m, "--ipc", "1", "--iterations", "2", "--seed", "0",
                "--device", "cpu", "--out", str(work / f"distill_{m}"), *EVAL]
        if m in ("herding", "k_center"):
            argv += ["--model", "convnet_w32"]
        if m == "el2n":
            argv += ["--method-arg", f"scores_file={scores}", "--method-arg", "keep=easiest"]
        if m in ("dc", "dsa"):
            argv += ["--method-arg", "outer_loop=1", "--method-arg", "inner_loop=1"]
        if m in ("cafe", "cafe_dsa"):
            argv += ["--method-arg", "max_outer=2", "--method-arg", "max_inner=2", "--method-arg", "watch_batch=16",
                     "--batch-real", "16"]
        if m in ("mtt", "datm", "pad"):
            argv += ["--model", "convnet_w32", "--method-arg", f"experts={experts}", "--method-arg", "syn_steps=3",
                     "--method-arg", "expert_epochs=1", "--method-arg", "max_start_epoch=1", "--lr-img", "100"]
        if m in ("datm", "pad"):
            argv += ["--init", "samples_predicted_correctly", "--method-arg", "current_max_start_epoch=1"]
        cmds.append((f"distill_{m}", argv, {}))
    cmds.append(("evaluate", ["evaluate", str(work / "distill_dm" / "synthetic.safetensors"), "--models",
                              "convnet_w32,mlp", "--num-eval", "2", "--eval-epochs", "2", "--out",
                              str(work / "evaluate")], {}))
    compare_yaml = (f"out: {work / 'compare'}\n"
                    "base: {dataset: mnist, iterations: 2, num_eval: 1, eval_epochs: 2, eval_model: convnet_w32, "
                    "device: cpu}\n"
                    "methods: [random, dm]\nipc: [1]\ninit: [real]\nseeds: [0, 1]\n")
    cmds.append(("compare", ["compare", "--config", str(work / "compare.yaml")], {"compare.yaml": compare_yaml}))
    nas_yaml = "family: mlp\ndepth: [1, 2]\nwidth: [32]\n"
    cmds.append(("nas", ["nas", "--synthetic", str(work / "distill_dm" / "synthetic.safetensors"), "--space",
                         str(work / "nas.yaml"), "--num-eval", "1", "--eval-epochs", "2", "--real-epochs", "1",
                         "--real-subset", "20", "--val-size", "500", "--workers", "1", "--device", "cpu",
                         "--out", str(work / "nas")], {"nas.yaml": nas_yaml}))
    continual_yaml = ("dataset: mnist\nsteps: 2\norders: 1\nmemory_ipc: 1\nmemory_methods: [random, dm]\n"
                      "method_settings:\n  dm: {iterations: 2}\nmodel: convnet_w32\nnum_eval: 1\nepochs: 2\n"
                      "seed: 0\nworkers: 1\ndevice: cpu\n")
    cmds.append(("continual", ["continual", "--config", str(work / "continual.yaml"), "--out",
                               str(work / "continual")], {"continual.yaml": continual_yaml}))
    federated_yaml = ("dataset: mnist\nclients: 2\npartition: iid\nseed: 0\ndevice: cpu\nworkers: 1\nmodel: lenet\n"
                      "client_method: dm\nclient_ipc: 1\nclient_iterations: 2\nserver_epochs: 2\nserver_num_eval: 1\n"
                      "rounds: 1\nlocal_epochs: 1\nclient_fraction: 1.0\n")
    cmds.append(("federated", ["federated", "--config", str(work / "federated.yaml"), "--out",
                               str(work / "federated")], {"federated.yaml": federated_yaml}))
    return cmds


def _scrub(value, root: str):
    if isinstance(value, dict):
        return {k: _scrub(v, root) for k, v in sorted(value.items()) if not TIME_KEY.search(str(k))}
    if isinstance(value, list):
        return [_scrub(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<work>")
    return value


def _tensor_hashes(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), framework="pt") as f:
        for key in sorted(f.keys()):
            t = f.get_tensor(key).contiguous()
            out[key] = f"{t.dtype} {tuple(t.shape)} " + hashlib.sha256(t.view(-1).view(
                __import__("torch").uint8).numpy().tobytes()).hexdigest()[:16]
    return out


def _collect(folder: Path, root: str) -> dict:
    files = {}
    for p in sorted(folder.rglob("*")) if folder.is_dir() else [folder]:
        rel = str(p.relative_to(folder.parent if not folder.is_dir() else folder))
        if p.suffix == ".safetensors":
            files[rel] = _tensor_hashes(p)
        elif p.suffix == ".json":
            try:
                files[rel] = _scrub(json.loads(p.read_text()), root)
            except ValueError:
                files[rel] = "unreadable"
    return files


def snapshot(work: Path, only: list[str] | None) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result: dict = {}
    for name, argv, files in _commands(work):
        if only and name not in only:
            continue
        for rel, text in files.items():
            (work / rel).write_text(text)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", "from datadistill.cli import main; main()", *argv],
                              env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        outs = [a for i, a in enumerate(argv) if i > 0 and argv[i - 1] == "--out"]
        target = Path(outs[0]) if outs else work / name
        if name == "compare":
            target = work / "compare"
        entry = {"returncode": proc.returncode, "files": _collect(target, str(work)) if target.exists() else {}}
        if proc.returncode != 0:
            entry["stderr"] = proc.stderr[-2000:]
        result[name] = entry
        print(f"{name}: exit {proc.returncode}, {seconds:.1f} s, {len(entry['files'])} files", flush=True)
    return result


def compare(a: dict, b: dict) -> int:
    bad = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:  # a partial snapshot (--only): not compared
            print(f"{name}: not run {'before' if name not in a else 'after'}")
            continue
        ea, eb = a[name], b[name]
        diffs = []
        if ea["returncode"] != eb["returncode"]:
            diffs.append(f"exit {ea['returncode']} -> {eb['returncode']}")
        for rel in sorted(set(ea["files"]) | set(eb["files"])):
            if rel in eb["files"] and ea["files"].get(rel) != eb["files"].get(rel):
                diffs.append(rel if rel in ea["files"] else None)
            elif rel not in eb["files"]:
                diffs.append(f"{rel} (no longer written)")
        added = [rel for rel in sorted(eb["files"]) if rel not in ea["files"]]
        diffs = [d for d in diffs if d is not None]  # a file only the new code writes is listed, not a change
        note = f" (and new files: {', '.join(added)})" if added else ""
        print(f"{name}: {'identical' if not diffs else 'DIFFERENT: ' + ', '.join(diffs)}{note}")
        bad += bool(diffs)
    print(f"{len(set(a) & set(b)) - bad} identical, {bad} different")
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="scratch folder for the commands' outputs")
    parser.add_argument("--out", type=Path, help="snapshot JSON to write")
    parser.add_argument("--only", nargs="*", help="run only these command names")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        sys.exit(compare(*(json.loads(p.read_text()) for p in args.compare)))
    snap = snapshot(args.work, args.only)
    args.out.write_text(json.dumps(snap, indent=1, sort_keys=True))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
