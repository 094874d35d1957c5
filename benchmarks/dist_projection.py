"""Projected speedup of MTT (data-parallel student steps) and DM (class-sharded) on W GPUs over one,
from figures measured on this machine (issue #20).

Measured here, with the library's own code on CPU tensors of the real shapes:

* FLOPs of one iteration (``torch.utils.flop_counter.FlopCounterMode``; convolutions and matrix
  products, forward and backward): MTT's ``backward`` (all ``syn_steps`` student steps and the
  matching loss, ``unrolled`` and ``checkpointed``), DM's ``step``. Both are exactly linear in the
  images processed, so they are counted on small batches (MTT: 2 steps × 4 images, and 1 step;
  DM: (batch_real, ipc) = (1, 1), (2, 1), (1, 2)) and scaled to the configuration; the MNIST MTT row
  is also counted at full size (``--check``) to show the scaling is exact.
* Kernels per iteration: aten operators dispatched (a ``TorchDispatchMode`` count), the launch-bound
  floor of a small step on a GPU.
* Bytes moved per iteration, from the collectives the code issues (tests/test_trajectory_parallel.py
  checks the count): MTT all-reduces the student's P float32 gradients twice per student step
  (forward, backward; ``checkpointed`` 3 times), then the learned tensors' gradients once; DM
  all-gathers the synthetic set (N·C·H·W float32) once.

Assumed (flags): GPU throughput ``--peak-tflops`` × ``--efficiency`` (default 400 × 0.4 = 160
TFLOP/s, H100 TF32), ``--launch-us`` per kernel, and per link a bandwidth and a latency per
collective: NVLink 450 GB/s, 15 µs (8 GPUs in one node); 100 Gb/s Ethernet = 12.5 GB/s, 100 µs (each
rank on its own node: the worst case). Ring collectives: all-reduce 2(W−1)/W · S / B, all-gather
(W−1)/W · S / B, plus the latency. A rank's compute: MTT its shard ⌈b/W⌉ of the mini-batch, DM its
block ⌈K/W⌉ of the classes; every rank launches the same kernels; no overlap of communication with
compute (MTT's student step i+1 needs step i's reduced gradient).

    python benchmarks/dist_projection.py --check    # prints the tables (about a minute on 2 cores)
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table  # noqa: E402

CPU = torch.device("cpu")


@dataclass(frozen=True)
class Run:
    label: str
    method: str  # mtt | datm | dm
    shape: tuple[int, int, int]  # C, H, W
    classes: int
    ipc: int
    model: str
    syn_steps: int = 0  # MTT
    batch: int = 0  # MTT: batch_syn (the whole set); DM: batch_real per class


RUNS = [
    Run("MTT MNIST IPC 10", "mtt", (1, 28, 28), 10, 10, "convnet_w32", syn_steps=10, batch=100),
    Run("MTT CIFAR-10 IPC 10", "mtt", (3, 32, 32), 10, 10, "convnet", syn_steps=30, batch=100),
    Run("MTT CIFAR-10 IPC 50", "mtt", (3, 32, 32), 10, 50, "convnet", syn_steps=30, batch=500),
    Run("MTT CIFAR-100 IPC 10", "mtt", (3, 32, 32), 100, 10, "convnet", syn_steps=20, batch=1000),
    Run("MTT CIFAR-100 IPC 50", "mtt", (3, 32, 32), 100, 50, "convnet", syn_steps=80, batch=125),
    Run("DATM CIFAR-10 IPC 10", "datm", (3, 32, 32), 10, 10, "convnet", syn_steps=80, batch=100),
    Run("DM MNIST IPC 10", "dm", (1, 28, 28), 10, 10, "convnet", batch=256),
    Run("DM CIFAR-10 IPC 10", "dm", (3, 32, 32), 10, 10, "convnet", batch=256),
    Run("DM CIFAR-10 IPC 50", "dm", (3, 32, 32), 10, 50, "convnet", batch=256),
]


class OpCount(TorchDispatchMode):
    """Counts the aten operators dispatched that are not views (≈ GPU kernels launched)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += not func.is_view
        return func(*args, **(kwargs or {}))


def count(fn) -> tuple[float, int]:
    """(FLOPs, aten ops) of ``fn()``."""
    with FlopCounterMode(display=False) as flops, OpCount() as ops:
        fn()
    return float(flops.get_total_flops()), ops.ops


def fake_data(run: Run, per_class: int):
    from datadistill.data import DatasetSpec, LabelledImages, SplitDataset

    c, h, w = run.shape
    spec = DatasetSpec(name=f"shape_{c}x{h}x{w}", channels=c, image_size=(h, w),
                       class_names=tuple(str(k) for k in range(run.classes)), mean=(0.5,) * c, std=(0.25,) * c,
                       dsa_strategy="none")
    gen = torch.Generator().manual_seed(0)
    train = LabelledImages(torch.randn(run.classes * per_class, c, h, w, generator=gen),
                           torch.arange(run.classes).repeat(per_class))
    return SplitDataset(spec, train, LabelledImages(train.images[: run.classes], train.labels[: run.classes]))


def build(method: str, data, ipc: int, model: str, **cfg):
    from datadistill.augment import DSA
    from datadistill.data import RealSet
    from datadistill.methods import METHODS
    from datadistill.runtime import make_generator

    cls = METHODS.get(method)
    real = RealSet(data.train, data.spec.num_classes)
    d = cls(cls.config_class.from_dict(cfg), data.spec, real, ipc=ipc, model=model, dsa=DSA("none"), device=CPU,
            generator=make_generator(0), zca_eps=None)
    d.initialise("real")
    return d


def mtt_counts(run: Run, memory: str, experts: Path, data, steps: int, batch: int) -> tuple[float, int, int]:
    """(FLOPs, ops, P) of one MTT ``backward`` with ``steps`` student steps of ``batch`` images."""
    d = build("mtt", data, max(1, -(-batch // run.classes)), run.model, experts=str(experts), syn_steps=steps,
              expert_epochs=1, max_start_epoch=0, batch_syn=batch, memory=memory)
    traj = d.buffer.trajectories[0]
    start, target = [list(traj[e].values()) for e in (0, 1)]
    flops, ops = count(lambda: d.backward(start, target))
    return flops, ops, sum(p.numel() for p in d.net.parameters())


def measure_mtt(run: Run, memory: str, workdir: Path) -> dict:
    from datadistill.trajectory import ExpertSettings, train_experts

    data = fake_data(run, per_class=1)
    experts = train_experts(data, workdir / f"experts_{run.model}_{run.shape[0]}_{run.classes}", ExpertSettings(
        model=run.model, num_experts=1, epochs=1, batch_size=20, dsa_strategy="none"), CPU)
    f2, ops2, params = mtt_counts(run, memory, experts, data, 2, 4)
    _, ops1, _ = mtt_counts(run, memory, experts, data, 1, 4)
    per_image_step = f2 / (2 * 4)
    ops = ops1 + (ops2 - ops1) * (run.syn_steps - 1)
    return {"flops": per_image_step * run.syn_steps * run.batch, "ops": ops, "params": params,
            "experts": experts, "data": data}


def measure_dm(run: Run) -> dict:
    data = fake_data(run, per_class=2)

    def step(batch_real: int, ipc: int) -> tuple[float, int]:
        d = build("dm", data, ipc, run.model, batch_real=batch_real)
        return count(d.step)

    (f11, ops), (f21, _), (f12, _) = step(1, 1), step(2, 1), step(1, 2)
    per_real, per_syn = f21 - f11, f12 - f11  # FLOPs of one more real / synthetic image in every class
    assert abs(f11 - (per_real + per_syn)) <= 1e-6 * f11, "DM FLOPs are not linear in the images"
    return {"flops": per_real * run.batch + per_syn * run.ipc, "ops": ops}


def comm_seconds(kind: str, nbytes: float, world: int, bandwidth: float, latency: float) -> float:
    if world == 1:
        return 0.0
    factor = 2 * (world - 1) / world if kind == "all_reduce" else (world - 1) / world
    return factor * nbytes / bandwidth + latency


def project(run: Run, m: dict, memory: str, world: int, link: tuple[float, float], a,
            launch_bound: bool) -> dict:
    """Seconds per iteration on ``world`` GPUs: compute (this rank's share of the FLOPs at the assumed
    rate; with ``launch_bound``, at least the kernel launches, the same on every rank) and
    communication (not overlapped)."""
    rate = a.peak_tflops * 1e12 * a.efficiency
    bandwidth, latency = link
    if run.method == "dm":
        share = math.ceil(run.classes / world) / run.classes
        comm = comm_seconds("all_gather", set_bytes(run), world, bandwidth, latency)
    else:
        share = math.ceil(run.batch / world) / run.batch
        comm = (steps_all_reduces(run, memory) * comm_seconds("all_reduce", 4 * m["params"], world, bandwidth, latency)
                + comm_seconds("all_reduce", 4 * learned_numel(run), world, bandwidth, latency))
    compute = m["flops"] * share / rate
    if launch_bound:
        compute = max(compute, m["ops"] * a.launch_us * 1e-6)
    return {"compute": compute, "comm": comm, "total": compute + comm}


def set_bytes(run: Run) -> int:
    return 4 * run.classes * run.ipc * math.prod(run.shape)


def steps_all_reduces(run: Run, memory: str) -> int:
    return (2 if memory == "unrolled" else 3) * run.syn_steps


def learned_numel(run: Run) -> int:
    """Images, the lr, and DATM's label logits."""
    n = run.classes * run.ipc
    return n * math.prod(run.shape) + 1 + (n * run.classes if run.method == "datm" else 0)


def comm_bytes(run: Run, m: dict, memory: str) -> int:
    """Payload of the iteration's collectives (each rank sends and receives about twice this in a ring
    all-reduce, once in an all-gather)."""
    if run.method == "dm":
        return set_bytes(run)
    return 4 * (steps_all_reduces(run, memory) * m["params"] + learned_numel(run))


def dominates_from(run: Run, m: dict, memory: str, link, a) -> str:
    """The smallest W at which communication takes at least as long as the FLOP-bound compute."""
    top = run.classes if run.method == "dm" else run.batch
    for k in range(2, top + 1):
        t = project(run, m, memory, k, link, a, launch_bound=False)
        if t["comm"] >= t["compute"]:
            return str(k)
    return f"never (W ≤ {top})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peak-tflops", type=float, default=400.0)
    p.add_argument("--efficiency", type=float, default=0.4)
    p.add_argument("--launch-us", type=float, default=5.0)
    p.add_argument("--nvlink-gbs", type=float, default=450.0)
    p.add_argument("--nvlink-latency-us", type=float, default=15.0)
    p.add_argument("--ethernet-gbits", type=float, default=100.0)
    p.add_argument("--ethernet-latency-us", type=float, default=100.0)
    p.add_argument("--world", type=int, default=8)
    p.add_argument("--check", action="store_true", help="also count the MNIST MTT iteration at full size")
    a = p.parse_args()
    torch.set_num_threads(1)
    links = {"NVLink": (a.nvlink_gbs * 1e9, a.nvlink_latency_us * 1e-6),
             "Ethernet": (a.ethernet_gbits / 8 * 1e9, a.ethernet_latency_us * 1e-6)}
    print(f"# {machine()}")
    print(f"# GPU {a.peak_tflops:g} TFLOP/s × {a.efficiency:g} = {a.peak_tflops * a.efficiency:g} TFLOP/s, "
          f"{a.launch_us:g} µs/kernel; NVLink {a.nvlink_gbs:g} GB/s + {a.nvlink_latency_us:g} µs, "
          f"Ethernet {a.ethernet_gbits:g} Gb/s + {a.ethernet_latency_us:g} µs per collective; W = {a.world}\n")
    measured, projected, checks = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in RUNS:
            memories = ("unrolled", "checkpointed") if run.method != "dm" else ("-",)
            for memory in memories:
                m = measure_mtt(run, memory, Path(tmp)) if run.method != "dm" else measure_dm(run)
                if a.check and run.label.startswith("MTT MNIST"):
                    full = fake_data(run, per_class=run.ipc)
                    f_full, ops_full, _ = mtt_counts(run, memory, m["experts"], full, run.syn_steps, run.batch)
                    checks.append([run.label, memory, f"{f_full / 1e9:.2f}", f"{m['flops'] / 1e9:.2f}",
                                   ops_full, m["ops"]])
                one_f = project(run, m, memory, 1, links["NVLink"], a, launch_bound=False)["total"]
                one_l = project(run, m, memory, 1, links["NVLink"], a, launch_bound=True)["total"]
                measured.append([run.label, memory, f"{m['flops'] / 1e9:.1f}", m["ops"],
                                 f"{m.get('params', 0):,}" if run.method != "dm" else "-",
                                 f"{comm_bytes(run, m, memory) / 2**20:.2f}", f"{one_f * 1e3:.2f}",
                                 f"{m['ops'] * a.launch_us * 1e-3:.1f}"])
                row = [run.label, memory]
                for link in links.values():
                    wf = project(run, m, memory, a.world, link, a, launch_bound=False)
                    wl = project(run, m, memory, a.world, link, a, launch_bound=True)
                    row += [f"{wf['compute'] * 1e3:.2f} + {wf['comm'] * 1e3:.2f}", f"{one_f / wf['total']:.2f}",
                            f"{one_l / wl['total']:.2f}", dominates_from(run, m, memory, link, a)]
                projected.append(row)
    print(table(["run", "memory", "GFLOP / it", "kernels / it", "student P", "payload MiB / it",
                 "1 GPU ms / it (FLOPs)", "launch floor ms / it"], measured))
    print(f"\nProjection on W = {a.world} GPUs (speedup over 1 GPU; FLOP-bound: compute = FLOPs / rate; "
          f"launch-bound: compute ≥ kernels × {a.launch_us:g} µs on every rank):\n")
    head = ["run", "memory"]
    for name in links:
        head += [f"{name} ms compute + comm", "speedup FLOP-bound", "speedup launch-bound", "comm ≥ compute from W"]
    print(table(head, projected))
    if checks:
        print("\nScaling check (MNIST MTT at full size vs scaled from 2 steps × 4 images):\n")
        print(table(["run", "memory", "GFLOP counted", "GFLOP scaled", "kernels counted", "kernels scaled"], checks))


if __name__ == "__main__":
    main()
