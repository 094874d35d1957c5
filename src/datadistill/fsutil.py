"""File-system helpers shared by every layer: atomic writes (write to a temporary file in the target
folder, fsync, then rename) and the output checks (:func:`check_writable_folder`, :func:`check_writable_file`:
a folder or file can be written, proved before any work starts).

A leaf module: it imports nothing from the package but :mod:`datadistill.errors`.
"""

from __future__ import annotations

import errno
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
    """Check that ``path`` can be used as an output folder: see :func:`check_writable_folder`.

    ``what`` names the path in the message (e.g. ``"expert folder"``). Nothing is created.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ConfigError: ``path`` exists and is not a folder, or cannot be created or written; the
            message names it and says why.
    """
    return check_writable_folder(path, what)


def check_writable_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Prove, before any work, that files can be written in the folder ``path``.

    ``path`` must be a folder or not exist yet; then a temporary file is created and removed at once
    in ``path`` when it exists, else in its nearest existing parent (the folder the missing ones
    would be created in). Nothing is created and nothing is left behind, whatever the outcome.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ConfigError: ``path`` exists and is not a folder, a parent is a file, or the folder (or its
            nearest existing parent) cannot be written, e.g. a read-only file system or ``/proc``;
            the message names ``what``, the path and the reason.
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{what} {path} exists and is not a folder")
        folder = path
        while not folder.exists():
            if folder.is_symlink():
                raise ConfigError(f"{what} {path} cannot be created: {folder} is a link to a missing target")
            folder = folder.parent
        if not folder.is_dir():
            raise ConfigError(f"{what} {path} cannot be created: {folder} is a file, not a folder")
    except OSError as exc:  # e.g. a parent that cannot be searched
        raise ConfigError(f"{what} {path} cannot be used: {exc.strerror or exc}") from None
    reason = _write_probe(folder)
    if reason is not None:
        where = "is not writable" if folder == path else f"cannot be created: {folder} is not writable"
        raise ConfigError(f"{what} {path} {where} ({reason})")
    return path


def check_writable_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Prove, before any work, that the file ``path`` can be written (atomically, as
    :func:`atomic_write` does): it is not a folder, and its folder passes :func:`check_writable_folder`.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ConfigError: ``path`` is a folder, or its folder cannot be created or written; the message
            names ``what``, the path and the reason.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; expected a file name")
    try:
        check_writable_folder(path.parent, "folder")
    except ConfigError as exc:
        raise ConfigError(f"{what} {path} cannot be written: {exc}") from None
    return path


def _write_probe(folder: Path) -> str | None:
    """Create and remove a temporary file in ``folder``; None when that worked, else the reason."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".datadistill-write-test-", suffix=".tmp", dir=folder)
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # the folder exists but takes no new file (/proc)
            return "it takes no new file"
        return exc.strerror or str(exc)
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError as exc:
        return f"a test file could not be removed: {exc.strerror or exc}"
    return None
