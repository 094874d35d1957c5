"""Result tables as text: CSV, markdown and JSON from rows of plain values.

Every experiment renders its tables with these functions, so a value looks the same in every CSV
file of one float format. Two float formats exist, because the files written so far use both:

* :func:`fixed_floats` (``compare``, ``continual``): accuracies and other figures with 4 decimals,
  ``…seconds`` columns with 2, an ``iterations`` mean with 1;
* :func:`exact_floats` (``nas``, ``federated``): ``repr``, which reads back to the same float.

Lists (per-network accuracies, client ids) are joined with ``;``; None is an empty CSV field and
``—`` in markdown.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

FloatFormat = Callable[[str, float], str]
DASH = "—"


def fixed_floats(key: str, value: float) -> str:
    """``.2f`` for a ``…seconds`` column, ``.1f`` for ``iterations`` (a mean over seeds), else ``.4f``."""
    if key == "iterations":
        return f"{value:.1f}"
    return f"{value:.2f}" if key.endswith("seconds") else f"{value:.4f}"


def exact_floats(key: str, value: float) -> str:
    """``repr(value)``: the shortest text that reads back to the same float."""
    return repr(value)


def csv_value(key: str, value: Any, floats: FloatFormat = fixed_floats) -> str:
    """One CSV field: ``""`` for None, list items joined with ``;``, floats as ``floats(key, value)``,
    anything else ``str``."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ";".join(csv_value(key, v, floats) for v in value)
    if isinstance(value, float):
        return floats(key, value)
    return str(value)


def render_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], floats: FloatFormat = fixed_floats) -> str:
    """A header line of ``columns``, then one line per row (missing keys are empty fields); ``\\n``
    line ends."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_value(k, row.get(k), floats) for k in columns])
    return buf.getvalue()


def render_json(data: Any) -> str:
    """``data`` as JSON indented by 2, with a final newline (key order kept)."""
    return json.dumps(data, indent=2) + "\n"


# ------------------------------------------------------------------------------------------ markdown


def fmt(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, ``—`` for None."""
    return DASH if value is None else f"{value:.{digits}f}"


def mean_std(mean: float, std: float, digits: int = 2) -> str:
    """``"mean ± std"`` with ``digits`` decimals each."""
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def md_row(cells: Iterable[Any]) -> str:
    """``| a | b |`` (an empty cell is ``| |``)."""
    return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|"


def md_rule(align: str, columns: int | None = None) -> str:
    """The line under a header: one ``---`` (``l``) or ``---:`` (``r``) per character of ``align``,
    or ``columns`` times its one character."""
    marks = align * columns if columns is not None else align
    return "|" + "|".join("---:" if a == "r" else "---" for a in marks) + "|"


def md_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], align: str = "l") -> list[str]:
    """The lines of a markdown table; ``align`` is one character per column (``l`` or ``r``) or one
    character for all of them."""
    rule = md_rule(align, len(header)) if len(align) == 1 else md_rule(align)
    return [md_row(header), rule, *(md_row(r) for r in rows)]


__all__ = ["DASH", "FloatFormat", "csv_value", "exact_floats", "fixed_floats", "fmt", "md_row", "md_rule",
           "md_table", "mean_std", "render_csv", "render_json"]
