"""An experiment's section of ``datadistill report RUN_DIR``, rendered from its output folder.

An experiment that writes ``<name>.json``, ``<name>.md`` and ``<name>.png`` to its folder (``continual``,
``federated``) gets one section: a heading, the markdown summary as preformatted text, the figure
(a base64 data URI) and the JSON's ``settings`` flattened into a table. The HTML is the one
:mod:`datadistill.io.report` writes for an application (same CSS classes, same notes for a missing
or unreadable file), so the report can take the section from the experiment.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _value(v: Any) -> str:
    """A settings value as text: ``none``, ``true``/``false``, JSON for lists and mappings."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mappings as ``parent.child`` keys, sorted."""
    out: list[tuple[str, Any]] = []
    for key in sorted(d, key=str):
        v = d[key]
        name = f"{prefix}{key}"
        if isinstance(v, Mapping) and v:
            out.extend(_flatten(v, name + "."))
        else:
            out.append((name, v))
    return out


def _settings_table(settings: Mapping[str, Any]) -> str:
    head = "<thead><tr><th>setting</th><th>value</th></tr></thead>"
    body = "".join(f"<tr><td>{escape(k)}</td><td>{escape(_value(v))}</td></tr>\n" for k, v in _flatten(settings))
    return f'<table class="config">\n{head}\n<tbody>\n{body}</tbody>\n</table>'


def _figure(path: Path) -> str:
    if not path.is_file():
        return _note(f"No {path.name} in this folder.")
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        return _note(f"{path.name} is not a PNG file; left out.")
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f'<img src="{src}" alt="{escape(path.name)}">'


def experiment_section(run_dir: str | os.PathLike, name: str, title: str) -> str:
    """The HTML section of experiment ``name`` in the folder ``run_dir``.

    Args:
        run_dir: the output folder.
        name: the files' stem (``continual`` → ``continual.json``, ``.md``, ``.png``).
        title: the heading.

    Returns:
        ``""`` when the folder has no ``<name>.json``; a heading and a note when it cannot be read;
        else the heading, ``<name>.md`` (when present) as preformatted text, the PNG (or a note
        saying why not) and a collapsed table of the JSON's ``settings`` (when it has some).
    """
    run = Path(run_dir)
    path = run / f"{name}.json"
    if not path.is_file():
        return ""
    out = f"<h2>{escape(title)}</h2>\n"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return out + _note(f"{path.name} could not be read ({exc}); left out.")
    md = run / f"{name}.md"
    if md.is_file():
        out += f"<pre>{escape(md.read_text(encoding='utf-8', errors='replace'))}</pre>\n"
    out += _figure(run / f"{name}.png")
    settings = data.get("settings") if isinstance(data, dict) else None
    if isinstance(settings, Mapping) and settings:
        out += "\n<details><summary>settings</summary>\n" + _settings_table(settings) + "\n</details>"
    return out


__all__ = ["experiment_section"]
