"""Small HTML building blocks of the report page (:mod:`datadistill.io.report`): number formats
(percent, SI units, seconds, mean ± std), escaped tables, embedded PNG images (base64 data URIs) and
reading a run folder's PNG and JSON files without raising (a problem becomes a note on the page)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt(x: Any, digits: int = 2, unit: str = "") -> str:
    """A number with ``digits`` decimals (and ``unit``), "–" when missing."""
    if not num(x):
        return "–" if x is None else str(x)
    return f"{x:.{digits}f}{unit}"


def pm(mean: Any, std: Any) -> str:
    """``mean ± std`` in percent with 2 decimals, "–" when the mean is missing."""
    if not num(mean):
        return "–"
    return f"{mean:.2f} ± {std:.2f}" if num(std) else f"{mean:.2f}"


def mean_std(values: Any) -> tuple[float | None, float | None]:
    vals = [v for v in values or [] if num(v)]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))


def si(x: Any) -> str:
    """A count with an SI prefix: 1.23 G."""
    if not num(x):
        return "–"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}"
    return f"{x:.3g}"


def seconds(x: Any) -> str:
    if not num(x):
        return "–"
    return f"{x:.2f} s" if x < 10 else f"{x:.1f} s" if x < 3600 else f"{x:.0f} s ({x / 3600:.1f} h)"


def value(v: Any) -> str:
    """A configuration value as text."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mappings as ``parent.child`` keys (``method_args.attention_power``)."""
    out: list[tuple[str, Any]] = []
    for key in sorted(d, key=str):
        v = d[key]
        name = f"{prefix}{key}"
        if isinstance(v, Mapping) and v:
            out.extend(flatten(v, name + "."))
        else:
            out.append((name, v))
    return out


# ------------------------------------------------------------------------------------------ pieces


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def table(headers: list[str] | None, rows: list[list[str]], numeric: set[int] = frozenset(), cls: str = "") -> str:
    """An HTML table; ``rows`` hold plain text (escaped here); columns in ``numeric`` are right-aligned;
    no header row when ``headers`` is None."""
    head = "" if headers is None else "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr></thead>"
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{escape(c)}</td>' if i in numeric else f"<td>{escape(c)}</td>"
                         for i, c in enumerate(row)) + "</tr>\n" for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}>\n{head}\n<tbody>\n{body}</tbody>\n</table>"


def img(data: bytes, alt: str, cls: str = "") -> str:
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    attr = f' class="{cls}"' if cls else ""
    return f'<img{attr} src="{src}" alt="{escape(alt)}">'


def read_png(path: Path) -> tuple[bytes | None, str | None]:
    """(bytes, None) for a PNG file, (None, why not) otherwise."""
    if not path.is_file():
        return None, f"No {path.name} in this folder."
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        return None, f"{path.name} is not a PNG file; left out."
    return data, None


def read_json(path: Path) -> tuple[Any, str | None]:
    """(content, None), or (None, why not) when the file is missing or not JSON."""
    if not path.is_file():
        return None, None
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path.name} could not be read ({exc}); left out."


def figure(fig) -> bytes:
    from datadistill.io.plots import png_bytes

    return png_bytes(fig)
