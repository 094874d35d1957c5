"""Checkpoint folders: a nested state written so that a run can resume exactly, and read back
without unpickling anything.

A state is nested mappings, lists and tuples of numbers, strings, booleans, None and tensors. On
disk (``FOLDER`` is e.g. ``OUT/checkpoint``)::

    FOLDER/state.safetensors   every tensor of the state (CPU), named by its place in the state
    FOLDER/state.json          everything else; a tensor appears as {"__tensor__": name}
    FOLDER/manifest.json       format, version, and the size and SHA-256 of the two files (written last)

Mappings whose keys are not all strings (an optimiser's ``state`` is keyed by parameter index) are
written as ``{"__dict__": [[key, value], …]}`` and tuples as ``{"__tuple__": […]}``, so the state
reads back with the same types. Floats round-trip exactly (JSON numbers as Python's ``repr``).

Writing is atomic: the files go into ``FOLDER.tmp``, each one flushed and fsynced, the manifest
last; then the previous checkpoint is renamed ``FOLDER.prev`` and ``FOLDER.tmp`` becomes
``FOLDER`` (the parent folder fsynced). At every moment one complete checkpoint is on disk: a kill
between the two renames leaves ``FOLDER.tmp`` complete (its manifest verifies) and ``FOLDER.prev``.
Reading verifies the manifest; a truncated or corrupt ``FOLDER`` falls back to ``FOLDER.prev`` and
says so (:attr:`LoadedCheckpoint.skipped`), and with no complete checkpoint left it is refused with
a :class:`~datadistill.errors.CheckpointError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from datadistill.errors import CheckpointError

FORMAT = "datadistill.checkpoint"
VERSION = 1
TENSORS_FILE = "state.safetensors"
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
TMP_SUFFIX = ".tmp"
PREV_SUFFIX = ".prev"
_TENSOR, _DICT, _TUPLE = "__tensor__", "__dict__", "__tuple__"


# -- nested state <-> (JSON document, tensors) ------------------------------------------------------
class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._by_id: dict[int, str] = {}
        self._storages: set[int] = set()

    def tensor(self, t: torch.Tensor, path: str) -> dict[str, str]:
        key = id(t)
        if key in self._by_id:  # the same tensor twice: one copy on disk
            return {_TENSOR: self._by_id[key]}
        t = t.detach().to("cpu")
        whole = t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * t.element_size()
        if not whole or t.untyped_storage().data_ptr() in self._storages:
            t = t.contiguous().clone()  # safetensors refuses views and tensors sharing memory
        if t.numel():
            self._storages.add(t.untyped_storage().data_ptr())
        name = path or "tensor"
        while name in self.tensors:
            name += "'"
        self.tensors[name] = t
        self._by_id[key] = name
        return {_TENSOR: name}

    def encode(self, value: Any, path: str = "") -> Any:
        if isinstance(value, torch.Tensor):
            return self.tensor(value, path)
        if isinstance(value, Mapping):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: self.encode(v, f"{path}.{k}" if path else k) for k, v in value.items()}
            return {_DICT: [[self.encode(k, path), self.encode(v, f"{path}.{k}")] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {_TUPLE: [self.encode(v, f"{path}.{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{path}.{i}") for i, v in enumerate(value)]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if hasattr(value, "item") and not hasattr(value, "__len__"):  # NumPy scalars
            return value.item()
        raise TypeError(f"{path or 'state'}: {type(value).__name__} cannot be checkpointed")


def encode_state(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``state`` as a JSON document and the tensors it references (by name)."""
    enc = _Encoder()
    return enc.encode(state), enc.tensors


def decode_state(doc: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The inverse of :func:`encode_state`. Raises KeyError for a tensor missing from ``tensors``."""
    if isinstance(doc, list):
        return [decode_state(v, tensors) for v in doc]
    if isinstance(doc, dict):
        if set(doc) == {_TENSOR}:
            return tensors[doc[_TENSOR]]
        if set(doc) == {_DICT}:
            return {decode_state(k, tensors): decode_state(v, tensors) for k, v in doc[_DICT]}
        if set(doc) == {_TUPLE}:
            return tuple(decode_state(v, tensors) for v in doc[_TUPLE])
        return {k: decode_state(v, tensors) for k, v in doc.items()}
    return doc


# -- files -------------------------------------------------------------------------------------
def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file(tensors, str(path))
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a platform without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sibling(folder: str | os.PathLike, suffix: str) -> Path:
    """``FOLDER.tmp`` / ``FOLDER.prev`` beside ``folder``."""
    folder = Path(folder)
    return folder.with_name(folder.name + suffix)


def write_checkpoint(folder: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``folder`` atomically (module docstring); returns ``folder``.

    Raises:
        CheckpointError: the folder cannot be written (permissions, a full disk: ENOSPC …); the
            message names it and the cause. The previous checkpoint is left complete.
    """
    folder = Path(folder)
    tmp, prev = sibling(folder, TMP_SUFFIX), sibling(folder, PREV_SUFFIX)
    doc, tensors = encode_state(state)
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        _write_tensors(tmp / TENSORS_FILE, tensors)
        _write_bytes(tmp / STATE_FILE, json.dumps(doc, separators=(",", ":")).encode("utf-8"))
        files = {name: {"bytes": (tmp / name).stat().st_size, "sha256": _digest(tmp / name)}
                 for name in (TENSORS_FILE, STATE_FILE)}
        manifest = {"format": FORMAT, "format_version": VERSION, "files": files}
        _write_bytes(tmp / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
        _fsync_dir(tmp)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (OSError, SafetensorError)):
            raise CheckpointError(f"cannot write the checkpoint {folder}: {_reason(exc)}; the previous checkpoint "
                                  f"(if any) is left as it was") from None
        raise
    try:
        if folder.exists():
            if prev.exists():
                shutil.rmtree(prev)
            os.rename(folder, prev)
        os.rename(tmp, folder)
        _fsync_dir(folder.parent)
    except OSError as exc:
        raise CheckpointError(f"cannot write the checkpoint {folder}: {_reason(exc)}") from None
    return folder


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f" ({exc.filename})" if exc.filename else "")
    return str(exc) or type(exc).__name__


class _Unreadable(Exception):
    pass


def read_checkpoint_folder(folder: Path) -> dict[str, Any]:
    """The state in one checkpoint folder, its manifest verified.

    Raises:
        _Unreadable: with the reason (no manifest, a file missing, of another size or checksum,
            unreadable, or of a newer format).
    """
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _Unreadable(f"incomplete (no {MANIFEST_FILE})") from None
    except (OSError, ValueError) as exc:
        raise _Unreadable(f"unreadable ({MANIFEST_FILE}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _Unreadable(f"not a datadistill checkpoint ({MANIFEST_FILE} has no format {FORMAT!r})")
    found = manifest.get("format_version")
    if not isinstance(found, int) or found > VERSION:
        raise _Unreadable(f"of format version {found!r}, which this datadistill does not read (≤ {VERSION})")
    files = manifest.get("files") or {}
    for name in (TENSORS_FILE, STATE_FILE):
        path, info = folder / name, files.get(name) or {}
        if not path.is_file():
            raise _Unreadable(f"incomplete ({name} is missing)")
        size = path.stat().st_size
        if size != info.get("bytes"):
            raise _Unreadable(f"truncated or corrupt ({name} has {size} bytes, {info.get('bytes')} were written)")
        if _digest(path) != info.get("sha256"):
            raise _Unreadable(f"corrupt ({name} does not match its SHA-256)")
    try:
        tensors = load_file(str(folder / TENSORS_FILE))
        return decode_state(json.loads((folder / STATE_FILE).read_text(encoding="utf-8")), tensors)
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise _Unreadable(f"unreadable ({exc})") from None


@dataclass
class LoadedCheckpoint:
    """A checkpoint read back: its state, the folder it came from, and the newer folders that could
    not be read (``"PATH is REASON"``; non-empty when the run falls back to the previous checkpoint)."""

    state: dict[str, Any]
    path: Path
    skipped: list[str] = field(default_factory=list)


def load_checkpoint(folder: str | os.PathLike) -> LoadedCheckpoint | None:
    """The newest complete checkpoint at ``folder`` (``folder``; ``folder.tmp`` when a kill came between
    the renames; ``folder.prev``), or None when there is none.

    Raises:
        CheckpointError: a checkpoint is there but none is complete and readable; the message names
            the folder and why (an incomplete ``folder.tmp`` alone is no checkpoint: it is ignored).
    """
    folder = Path(folder)
    tmp, prev = sibling(folder, TMP_SUFFIX), sibling(folder, PREV_SUFFIX)
    candidates = [folder] if folder.exists() else [tmp]
    candidates.append(prev)
    problems: list[str] = []
    for path in candidates:
        if not path.exists():
            continue
        try:
            return LoadedCheckpoint(read_checkpoint_folder(path), path, problems)
        except _Unreadable as exc:
            if path != tmp:  # a partial write that never became a checkpoint is not one
                problems.append(f"{path} is {exc}")
    if problems:
        raise CheckpointError(f"cannot resume: the checkpoint {problems[0]}; delete {folder} or rerun with "
                              f"--restart to start afresh")
    return None


def remove_checkpoint(folder: str | os.PathLike) -> None:
    """Remove ``folder`` and its ``.tmp`` and ``.prev`` siblings (missing ones are fine)."""
    for path in (Path(folder), sibling(folder, TMP_SUFFIX), sibling(folder, PREV_SUFFIX)):
        shutil.rmtree(path, ignore_errors=True)


def checkpoint_exists(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` or its ``.tmp`` / ``.prev`` siblings exist."""
    return any(p.exists() for p in (Path(folder), sibling(folder, TMP_SUFFIX), sibling(folder, PREV_SUFFIX)))


__all__ = ["FORMAT", "LoadedCheckpoint", "VERSION", "checkpoint_exists", "decode_state", "encode_state",
           "load_checkpoint", "remove_checkpoint", "sibling", "write_checkpoint"]
