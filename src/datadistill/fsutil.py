"""File-system helpers shared by every layer: atomic writes (write to a temporary file in the target
folder, fsync, then rename) and the output-folder check.

A leaf module: it imports nothing from the package but :mod:`datadistill.errors`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from datadistill.errors import ConfigError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result to ``path``; on any error nothing is left behind.

    Creates the parent folder if needed. Returns ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp_path)
        # after the write: some writers (safetensors) replace the file and leave it 0600
        os.chmod(tmp_path, 0o666 & ~umask)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def check_output_folder(path: str | os.PathLike, what: str = "output path") -> Path:
    """Check that ``path`` can be used as an output folder: it does not exist yet or is a folder.

    Nothing is created. ``what`` names the path in the message (e.g. ``"expert folder"``).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ConfigError: ``path`` exists and is not a folder; the message names it.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} exists and is not a folder")
    return path
