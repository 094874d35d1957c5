"""``datadistill --nproc N <command> …``: the command in N processes on this machine, started by
torchrun's launcher (``torch.distributed.run``, standalone rendezvous on a free local port), exactly
as ``torchrun --standalone --nproc-per-node N -m datadistill <command> …`` would."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import click

from datadistill import distributed
from datadistill.errors import ConfigError


def without_nproc(argv: Sequence[str], command: str | None) -> list[str]:
    """``argv`` without the group's ``--nproc N`` / ``--nproc=N`` (given before the command's name)."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        token = args[i]
        if token == command:
            return out + args[i:]
        if token == "--nproc":
            i += 2
            continue
        if not token.startswith("--nproc="):
            out.append(token)
        i += 1
    return out


def threads_per_process(nproc: int) -> int:
    """The CPU cores this process may use (its affinity) shared among ``nproc`` processes (≥ 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // nproc)


def launch(nproc: int, args: Sequence[str]) -> int:
    """Run ``datadistill <args>`` in ``nproc`` processes; returns the exit status (the first failed
    rank's, 0 when all succeeded). ``OMP_NUM_THREADS`` is set to :func:`threads_per_process` unless
    the environment sets it already.

    Raises:
        ConfigError: this process was itself started by torchrun or ``--nproc``.
    """
    if distributed.launched() or "TORCHELASTIC_RUN_ID" in os.environ:
        raise ConfigError("--nproc cannot be given inside a process started by torchrun or --nproc: drop --nproc "
                          "(the launcher already sets the number of processes)")
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_process(nproc)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # each rank says why it failed
    try:
        torchrun.run(torchrun.parse_args(["--standalone", "--nproc-per-node", str(nproc), "-m", "datadistill",
                                          *args]))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        status = failure.exitcode if failure.exitcode > 0 else 1
        click.echo(f"datadistill --nproc {nproc}: rank {rank} ended with exit status {failure.exitcode} (its message "
                   f"is above; torchrun stopped the other ranks)", err=True)
        return status
    return 0


__all__ = ["launch", "threads_per_process", "without_nproc"]
