"""``export``: a synthetic set as an image folder, NumPy arrays or a Hugging Face dataset, for other
code (``import`` reads all three back, in :mod:`datadistill.cli.distill`)."""

from __future__ import annotations

import click

from datadistill.cli.base import main

FORMATS = ("imagefolder", "npz", "hf")  # datadistill.io.export.EXPORT_FORMATS, without importing io here


@main.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS),
              help="imagefolder: OUT/<class>/<index>.png (8-bit pixels, hard labels only); npz: one .npz file "
                   "(float32 images as stored, labels, metadata JSON); hf: a Hugging Face dataset saved with "
                   "save_to_disk (float32 normalised images, ClassLabel; pip install datadistill[hf]).")
@click.argument("out", type=click.Path())
def export_cmd(file, fmt, out) -> None:
    """Write the synthetic set FILE (.safetensors) to OUT in another format, atomically. OUT must not
    exist (an empty folder is accepted for imagefolder and hf)."""
    from datadistill.api import run_export

    syn, path = run_export(file, fmt, out)
    click.echo(f"exported {len(syn)} images ({syn.label_kind} labels) from {file} as {fmt}: {path}")
