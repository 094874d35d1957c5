"""One writer for an experiment's output files: a bundle of named outputs (JSON, CSV, markdown, PNG,
anything else through a writer function) rendered in memory first, then written atomically one by one.

Nothing is written when rendering fails (every figure and table is rendered before the first file),
and a reader never sees half a file (each is written to a temporary name and renamed). An
interrupted bundle leaves the files written before the interruption, each whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from datadistill.experiments.tables import render_json
from datadistill.fsutil import atomic_write_bytes
from datadistill.fsutil import check_output_folder

Writer = Callable[[Path], Any]


def render_output(name: str, value: Any) -> bytes | Writer:
    """The bytes of one output: ``str`` as UTF-8, ``bytes`` as they are, a matplotlib figure as PNG,
    a mapping or list as indented JSON (:func:`~datadistill.experiments.tables.render_json`; the name
    must end with ``.json``); a callable is returned as it is (a writer called with the path).

    Raises:
        TypeError: a value of another kind.
    """
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if hasattr(value, "savefig"):
        from datadistill.io.plots import png_bytes

        return png_bytes(value)
    if isinstance(value, (Mapping, list)) and name.endswith(".json"):
        return render_json(value).encode("utf-8")
    if callable(value):
        return value
    raise TypeError(f"output {name!r}: cannot render a {type(value).__name__}")


def write_bundle(folder: str | os.PathLike, outputs: Mapping[str, Any], what: str = "output path") -> list[Path]:
    """Render every output (:func:`render_output`), create ``folder`` and write them in the mapping's
    order, each atomically; a writer function is called with its path (it must write atomically
    itself, as :func:`~datadistill.io.save_synthetic_set` and the ``io.plots`` functions do).

    Args:
        folder: the output folder (created with its parents).
        outputs: file name → content.
        what: names the folder in the error message.

    Returns:
        The paths, in the mapping's order.

    Raises:
        ConfigError: ``folder`` exists and is not a folder (checked before anything is rendered).
    """
    out = check_output_folder(folder, what)
    rendered = {name: render_output(name, value) for name, value in outputs.items()}
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in rendered.items():
        path = out / name
        if callable(data):
            data(path)
        else:
            atomic_write_bytes(path, data)
        paths.append(path)
    return paths


__all__ = ["render_output", "write_bundle"]
