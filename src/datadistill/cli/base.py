"""The ``datadistill`` command group, its error handling (one ``error:`` line, exit status 2), the
process group of a distributed run (every command joins it under torchrun, :class:`_Command`) and
the flag helpers the command modules share."""

from __future__ import annotations

import contextlib
import os
import sys

import click

from datadistill import distributed
from datadistill._version import __version__
from datadistill.errors import DatadistillError, RunInterrupted

_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())

#: the commands every rank of a distributed run takes part in (issue #20); under torchrun any other
#: command runs on rank 0 alone while the other ranks leave at once
DISTRIBUTED_COMMANDS = frozenset({"distill", "evaluate", "experts", "scores", "compare", "nas", "continual",
                                  "federated"})


def error_prefix() -> str:
    """``error:``, or ``error (rank R of N):`` in a process of a distributed run."""
    w = distributed.world()
    return f"error (rank {w.rank} of {w.world_size}):" if w.distributed else "error:"


class _Command(click.Command):
    """A command that, under torchrun, joins the process group with its ``--device`` (when it has none or
    leaves it to its config: CUDA if this rank has a GPU; CUDA gets NCCL with gloo beside it) before
    it runs and leaves it after; the ranks other than 0 print nothing on stdout, and run the command
    only if it is one of :data:`DISTRIBUTED_COMMANDS`."""

    def invoke(self, ctx: click.Context):
        if not distributed.launched():
            return super().invoke(ctx)
        import torch

        from datadistill.runtime import select_device

        name = ctx.params.get("device")
        if name is None:  # no flag, or the command's config decides: this rank's GPU when it has one
            name = "cuda" if distributed.world().local_rank < torch.cuda.device_count() else "cpu"
        w = distributed.init(distributed.local_device(select_device(name)))
        if not w.is_main and self.name not in DISTRIBUTED_COMMANDS:
            distributed.shutdown()
            return None
        with open(os.devnull, "w") as devnull, \
                contextlib.redirect_stdout(devnull) if not w.is_main else contextlib.nullcontext():
            result = super().invoke(ctx)
        distributed.shutdown()  # after a success only: after an error the process exits (torchrun ends the rest)
        return result


class _Group(click.Group):
    """Turns every DatadistillError and click usage error into one line on stderr and exit status 2, and
    a run stopped by SIGINT / SIGTERM (RunInterrupted) into its message and exit status 130 / 143. In a
    distributed run the line names the rank (:func:`error_prefix`); another exception is named with its
    rank, then shown with its traceback."""

    command_class = _Command
    group_class = type  # sub-groups (``data``) are of this class, their commands :class:`_Command`s
    argv: list[str] = []

    def main(self, args=None, *rest, **kwargs):
        self.argv = list(sys.argv[1:] if args is None else args)  # --nproc passes them on
        kwargs["standalone_mode"] = False
        try:
            code = super().main(args, *rest, **kwargs)
        except DatadistillError as exc:
            click.echo(f"{error_prefix()} {exc}", err=True)
            sys.exit(2)
        except RunInterrupted as exc:  # SIGINT / SIGTERM: the message says how to resume (all ranks stop alike)
            if distributed.world().is_main:
                click.echo(str(exc), err=True)
            sys.exit(exc.exit_status)
        except _NO_ARGS_IS_HELP as exc:  # bare `datadistill`: show the help, as click does
            click.echo(exc.format_message(), err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"{error_prefix()} {exc.format_message()}", err=True)
            sys.exit(exc.exit_code if exc.exit_code else 2)
        except click.exceptions.Abort:
            click.echo(f"{error_prefix()} aborted", err=True)
            sys.exit(1)
        except Exception as exc:
            if distributed.world().distributed:  # torchrun's agent then ends the other ranks
                click.echo(f"{error_prefix()} {type(exc).__name__}: {exc}", err=True)
            raise
        sys.exit(code if isinstance(code, int) else 0)


def parse_method_args(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--method-arg")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def data_options(defaults: bool):
    """--image-size, --stream and --num-workers (None when ``defaults`` is False: the config decides)."""
    def decorate(f):
        f = click.option("--num-workers", type=click.INT, default=2 if defaults else None,
                         show_default=defaults, help="DataLoader workers decoding a streamed dataset.")(f)
        f = click.option("--stream", type=click.Choice(["auto", "on", "off"]), default="auto" if defaults else None,
                         show_default=defaults,
                         help="Decode image files on demand (auto: when the training set exceeds 1 GiB as float32).")(f)
        return click.option("--image-size", type=click.INT, default=None,
                            help="Resize images to N×N pixels (e.g. 32, 64, 128, 224 for mhist). Default: the dataset's size.")(f)
    return decorate


def init_help() -> str:
    from datadistill.methods import describe_inits

    return describe_inits()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="datadistill")
@click.option("-v", "--verbose", count=True, help="Log what runs to stderr (INFO; -vv: DEBUG).")
@click.option("--quiet", is_flag=True, help="No progress bars; only warnings and errors on stderr.")
@click.option("--nproc", type=click.IntRange(min=1), default=None, metavar="N",
              help="Run the command in N processes on this machine (torchrun's launcher; gloo on the CPU, NCCL "
                   "on CUDA, one GPU each), e.g. `datadistill --nproc 2 distill ...`. Several machines: torchrun.")
def main(verbose: int, quiet: bool, nproc: int | None) -> None:
    """datadistill: learn small synthetic training sets (dataset distillation) and evaluate them.

    Long commands show progress bars on stderr when it is a terminal (off with --quiet); results are
    printed to stdout at the end. Under torchrun (`torchrun --nproc-per-node N -m datadistill ...`) or
    with --nproc, rank 0 prints and writes the files."""
    from datadistill.cli.progress import setup_logging
    from datadistill.runtime import tune_cpu_allocator

    ctx = click.get_current_context()
    if nproc is not None:
        from datadistill.cli.launch import launch, without_nproc

        ctx.exit(launch(nproc, without_nproc(ctx.find_root().command.argv, ctx.invoked_subcommand)))
    ctx.call_on_close(setup_logging(verbose, quiet))
    tune_cpu_allocator()

def models_list(value: str) -> list[str]:
    names = [m.strip() for m in value.split(",") if m.strip()]
    if not names:
        raise click.BadParameter(f"{value!r} names no model: expected a comma-separated list such as "
                                 "convnet,alexnet,vgg11,resnet18,lenet,mlp", param_hint="--models")
    return names


def fmt_ratio(x) -> str:
    return "-" if x is None else f"{x:,.1f}×"


def load_mapping(path: str | None) -> dict:
    from datadistill.config import read_yaml_mapping

    return read_yaml_mapping(path) if path else {}
