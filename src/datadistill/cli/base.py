"""The ``datadistill`` command group, its error handling (one ``error:`` line, exit status 2) and the
flag helpers the command modules share."""

from __future__ import annotations

import sys

import click

from datadistill._version import __version__
from datadistill.errors import DatadistillError, RunInterrupted

_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Group(click.Group):
    """Turns every DatadistillError and click usage error into one line on stderr and exit status 2, and
    a run stopped by SIGINT / SIGTERM (RunInterrupted) into its message and exit status 130 / 143."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except DatadistillError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except RunInterrupted as exc:  # SIGINT / SIGTERM: the message says how to resume
            click.echo(str(exc), err=True)
            sys.exit(exc.exit_status)
        except _NO_ARGS_IS_HELP as exc:  # bare `datadistill`: show the help, as click does
            click.echo(exc.format_message(), err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code if exc.exit_code else 2)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
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
def main(verbose: int, quiet: bool) -> None:
    """datadistill: learn small synthetic training sets (dataset distillation) and evaluate them.

    Long commands show progress bars on stderr when it is a terminal (off with --quiet); results are
    printed to stdout at the end."""
    from datadistill.cli.progress import setup_logging
    from datadistill.runtime import tune_cpu_allocator

    click.get_current_context().call_on_close(setup_logging(verbose, quiet))
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
