"""Helpers shared by the benchmark scripts: machine description and markdown tables."""

from __future__ import annotations

import datetime
import platform

import torch


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{datetime.date.today().isoformat()}, {cpu}, {torch.get_num_threads()} torch threads, {dev}, "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB (``VmRSS``, ``VmHWM`` = peak RSS)."""
    with open("/proc/self/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")
