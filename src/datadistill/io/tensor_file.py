"""The container shared by datadistill's files (synthetic sets, difficulty scores, expert epochs):
a ``.safetensors`` file whose header holds one JSON object under the key ``datadistill`` with at
least ``format`` (a name) and ``format_version`` (an integer). Reading never unpickles."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from datadistill.errors import DatadistillError
from datadistill.fsutil import atomic_write

HEADER_KEY = "datadistill"


def write_tensor_file(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                      fmt: str, version: int) -> Path:
    """Write ``tensors`` (CPU, contiguous) and ``meta`` (JSON-able) to ``path`` atomically."""
    header = {HEADER_KEY: json.dumps({**meta, "format": fmt, "format_version": version}, sort_keys=True)}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=header))


def read_tensor_file(path: str | os.PathLike, fmt: str, version: int, error: type[DatadistillError],
                     what: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`write_tensor_file` with format ``fmt``.

    Args:
        error: the exception class raised for any problem; ``what`` names the kind of file in its messages.

    Returns:
        (tensors on the CPU, metadata).

    Raises:
        ``error``: missing file, not a readable safetensors file, no datadistill metadata, metadata
            that is not a JSON object, another format, or a format version newer than ``version``.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(HEADER_KEY)
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise error(f"{path} is not a readable safetensors file ({exc})") from exc
    if raw is None:
        raise error(f"{path} is a safetensors file but not a datadistill {what} (no '{HEADER_KEY}' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise error(f"{path}: metadata is {type(meta).__name__}, expected a JSON object")
    if meta.get("format") != fmt:
        raise error(f"{path}: format {meta.get('format')!r} is not {fmt!r}")
    found = meta.get("format_version")
    if not isinstance(found, int) or found > version:
        raise error(f"{path}: format version {found!r} is not one this datadistill reads (≤ {version})")
    return tensors, meta
