"""Run records: which units of a run (grid cells, (method, order) pairs, NAS candidates, federated
clients, expert trajectories) are finished, with which settings, and their results, so that a rerun into
the same output folder reuses them and a run with other settings is refused instead of mixed in.

Two layouts:

* :class:`RunRecord`: one JSON file in the output folder holds the settings that matter, their
  fingerprint (:func:`fingerprint`: SHA-256 of the settings as canonical JSON) and the finished
  units' results. An experiment whose results file already holds its settings and units (continual's
  ``continual.json``, the experts' ``experts.json``) keeps its own layout and tells the record where
  to find them (``settings_of``, ``units_of``).
* :class:`UnitFolders`: one folder per unit (``compare``'s ``cells/<cell>``) holding a marker file
  that records the unit's settings, written after the unit finished and removed before it reruns;
  the unit's result is the marker's ``result`` or a JSON file written beside it. The folder of an
  unfinished unit is kept for its rerun (a checkpoint there resumes it) unless it began with other
  settings (a ``<marker stem>.started.json`` records them while the unit runs).

Settings are compared as plain JSON values (:func:`plain`: tuples are lists, paths strings,
dataclasses mappings); a refusal lists every key that differs (:func:`differences`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

from datadistill.errors import ConfigError
from datadistill.fsutil import atomic_write_text

RECORD_FORMAT = "datadistill.run_record"
RECORD_VERSION = 1
RESTART_HINT = "choose another --out, or delete that folder to start afresh"


def _default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not a settings value")


def plain(value: Any) -> Any:
    """``value`` as plain JSON values (what a record file holds and what settings compare as)."""
    return json.loads(json.dumps(value, default=_default))


def fingerprint(settings: Mapping[str, Any], ignore: Iterable[str] = ()) -> str:
    """SHA-256 (hex) of the settings but ``ignore``, as JSON with sorted keys and no spaces: equal
    for equal settings whatever their key order or container types."""
    skip = set(ignore)
    text = json.dumps(plain({k: v for k, v in settings.items() if k not in skip}), sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """``["epochs = 1 there, 2 here", …]`` for every key (sorted, but ``ignore``) whose value differs
    between the ``recorded`` settings ("there") and the ``current`` ones ("here")."""
    skip = set(ignore)
    theirs = {k: v for k, v in plain(dict(recorded)).items() if k not in skip}
    mine = {k: v for k, v in plain(dict(current)).items() if k not in skip}
    return [f"{k} = {theirs.get(k)!r} there, {mine.get(k)!r} here" for k in sorted(set(mine) | set(theirs))
            if mine.get(k) != theirs.get(k)]


class RunRecord:
    """The record of one run: its settings and finished units, in one JSON file of its output folder.

    Args:
        path: the record file (e.g. ``OUT/run.json``, or an experiment's own results file).
        settings: the settings that matter (a mapping of plain values).
        format, version: what the file's ``format`` and ``format_version`` must be.
        ignore: settings a resumed folder may differ in (where the data is read from, worker counts …).
        what: names the run in the refusal (``"a continual run"``).
        settings_of: the recorded settings in an existing file's content (default: its ``settings``).
        units_of: the finished units in an existing file's content, unit → result (default: its
            ``units``); an experiment with its own layout derives them from its results.
        extra_differences: further differences found in an existing file's content (e.g. a method's
            own settings), listed with the differing keys.

    Usage::

        record = RunRecord(out / "run.json", settings, ignore=("workers",))
        done = record.resume()              # {} for a new folder; ConfigError for other settings
        for unit in units:
            if record.finished(unit) is None:
                record.mark_finished(unit, run(unit))   # rewrites the file atomically
    """

    def __init__(self, path: str | os.PathLike, settings: Mapping[str, Any], *, format: str = RECORD_FORMAT,
                 version: int = RECORD_VERSION, ignore: Iterable[str] = (), what: str = "a run",
                 settings_of: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
                 units_of: Callable[[dict[str, Any]], Mapping[Hashable, Any]] | None = None,
                 extra_differences: Callable[[dict[str, Any]], list[str]] | None = None) -> None:
        self.path = Path(path)
        self.settings = plain(dict(settings))
        self.format = format
        self.version = version
        self.ignore = tuple(ignore)
        self.what = what
        self.settings_of = settings_of or (lambda content: content.get("settings") or {})
        self.units_of = units_of or (lambda content: content.get("units") or {})
        self.extra_differences = extra_differences
        self.units: dict[Hashable, Any] = {}

    @property
    def fingerprint(self) -> str:
        """:func:`fingerprint` of the settings that must match (``ignore`` left out)."""
        return fingerprint(self.settings, self.ignore)

    def load(self) -> dict[str, Any] | None:
        """The existing file's content, None when there is none.

        Raises:
            ConfigError: unreadable, not JSON, or not of this format and version.
        """
        if not self.path.is_file():
            return None
        try:
            content = json.loads(self.path.read_text(encoding="utf-8"))
            ok = content.get("format") == self.format and content.get("format_version") == self.version
        except (OSError, ValueError, AttributeError) as exc:
            raise ConfigError(f"cannot resume from {self.path}: {exc}; delete it or choose another --out") from exc
        if not ok:
            raise ConfigError(f"cannot resume from {self.path}: not a {self.format} file of format version "
                              f"{self.version}; delete it or choose another --out")
        return content

    def differences(self, content: Mapping[str, Any]) -> list[str]:
        """What differs between an existing file's content and this run (empty: it may be resumed)."""
        found = differences(self.settings_of(dict(content)), self.settings, self.ignore)
        if self.extra_differences is not None:
            found += self.extra_differences(dict(content))
        return found

    def resume(self) -> dict[Hashable, Any]:
        """Read the folder's record and return its finished units (unit → result; {} for a new folder).

        Raises:
            ConfigError: the file is unreadable or foreign (:meth:`load`), or was written with other
                settings: ``{path} holds {what} with other settings (k = a there, b here; …): choose
                another --out, or delete that folder to start afresh``. The file is left as it is.
        """
        content = self.load()
        self.units = {}
        if content is None:
            return {}
        found = self.differences(content)
        if found:
            raise ConfigError(f"{self.path} holds {self.what} with other settings ({'; '.join(found)}): "
                              f"{RESTART_HINT}")
        self.units = dict(self.units_of(content))
        return dict(self.units)

    def finished(self, unit: Hashable) -> Any | None:
        """The stored result of ``unit``, None when it is not finished."""
        return self.units.get(unit)

    def mark_finished(self, unit: str, result: Any) -> Path:
        """Record ``unit`` as finished with ``result`` (plain JSON values) and rewrite the file
        atomically (default layout only). Returns the file's path."""
        self.units[unit] = plain(result)
        return self.write()

    def content(self) -> dict[str, Any]:
        """The default layout: format, version, fingerprint, settings, ignored keys and units."""
        return {"format": self.format, "format_version": self.version, "fingerprint": self.fingerprint,
                "settings": self.settings, "resume_independent": list(self.ignore),
                "units": {str(k): v for k, v in self.units.items()}}

    def write(self) -> Path:
        """Write :meth:`content` atomically."""
        return atomic_write_text(self.path, json.dumps(self.content(), indent=2) + "\n")


class UnitFolders:
    """Finished units kept one per folder: ``root/<unit>/<marker>`` records the settings the unit
    ran with (under ``settings_key``) and, unless the result is a file of its own (``result``), its
    result. The marker is removed before a unit (re)runs and written, atomically, after it finished,
    so a folder whose unit was interrupted or failed is never taken for a finished one.

    Args:
        root: the folder holding one folder per unit.
        marker: the marker file's name.
        settings_key: the marker's key holding the settings.
        result: the name of the unit's JSON result file in its folder (written by whatever ran the
            unit), or None: the result is stored in the marker under ``result``.
    """

    def __init__(self, root: str | os.PathLike, *, marker: str = "unit.json", settings_key: str = "settings",
                 result: str | None = None) -> None:
        self.root = Path(root)
        self.marker = marker
        self.settings_key = settings_key
        self.result = result

    def folder(self, unit: str) -> Path:
        return self.root / unit

    def finished(self, unit: str, settings: Mapping[str, Any]) -> Any | None:
        """The unit's result when its folder holds a marker of exactly these settings (and, with
        ``result``, a readable JSON object in that file), else None."""
        folder = self.folder(unit)
        try:
            recorded = json.loads((folder / self.marker).read_text(encoding="utf-8"))
            result = (json.loads((folder / self.result).read_text(encoding="utf-8")) if self.result
                      else recorded.get("result"))
        except (OSError, ValueError, AttributeError):
            return None
        if not isinstance(recorded, dict) or recorded.get(self.settings_key) != plain(dict(settings)):
            return None
        if self.result and not isinstance(result, dict):
            return None
        return result

    def started_marker(self, unit: str) -> Path:
        """``<marker stem>.started.json`` in the unit's folder: the settings an unfinished run began with."""
        return self.folder(unit) / f"{Path(self.marker).stem}.started.json"

    def begin(self, unit: str, settings: Mapping[str, Any] | None = None, stale: Iterable[str] = ()) -> Path:
        """Remove the unit's marker (no stale record while its folder changes); returns the folder.

        The folder itself is kept, with what an interrupted run left there (e.g. a checkpoint the
        rerun resumes from). With ``settings``: when the folder's last run (its started marker, else
        its finished marker) had other settings, the entries ``stale`` of the folder (names of files
        or folders, e.g. ``("checkpoint",)``) are deleted, since they belong to those settings; then
        the started marker records ``settings``, atomically, until :meth:`mark_finished`.
        """
        folder = self.folder(unit)
        if settings is not None:
            previous = None
            for path in (self.started_marker(unit), folder / self.marker):
                try:
                    previous = json.loads(path.read_text(encoding="utf-8")).get(self.settings_key)
                    break
                except (OSError, ValueError, AttributeError):
                    continue
            if previous is not None and previous != plain(dict(settings)):
                for name in stale:
                    target = folder / name
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    else:
                        target.unlink(missing_ok=True)
        (folder / self.marker).unlink(missing_ok=True)
        if settings is not None:
            atomic_write_text(self.started_marker(unit), json.dumps({self.settings_key: plain(dict(settings))},
                                                                     indent=2, sort_keys=True) + "\n")
        return folder

    def mark_finished(self, unit: str, settings: Mapping[str, Any], result: Any = None, **extra: Any) -> Path:
        """Write the unit's marker atomically: ``extra`` keys, the settings and (without a result
        file) the result, as JSON with sorted keys. Returns the marker's path."""
        record = {**extra, self.settings_key: plain(dict(settings))}
        if self.result is None:
            record["result"] = plain(result)
        path = atomic_write_text(self.folder(unit) / self.marker, json.dumps(record, indent=2, sort_keys=True) + "\n")
        self.started_marker(unit).unlink(missing_ok=True)
        return path


__all__ = ["RECORD_FORMAT", "RECORD_VERSION", "RunRecord", "UnitFolders", "differences", "fingerprint", "plain"]
