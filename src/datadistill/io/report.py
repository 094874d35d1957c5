"""One self-contained HTML report of a run folder (``datadistill report RUN_DIR``).

Reads what ``datadistill distill`` wrote (``metrics.json``; ``config.yaml``, ``init.png``,
``synthetic.png``, ``distill.log``), what ``datadistill evaluate --out RUN_DIR`` wrote
(``evaluation.json``), the learning curves (``curves.json``), what the experiments wrote (each
registered :class:`ReportSection`: ``<name>.json``, ``<name>.md``, ``<name>.png``) and any other
``*.png`` in the folder. A folder needs ``metrics.json`` or a registered section's JSON.

This module names no experiment: each registers its section with :func:`register_report_section`
when it is imported (``datadistill.experiments`` imports them all; the package top imports it).
The page has no external resources: images are base64 data URIs, the CSS is inline, and the only
script is a few lines that record, after ``load``, how many images decoded (``data-images-loaded``
and ``data-images-total`` on ``<body>``), so a browser test can check them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import yaml

from datadistill.errors import ConfigError
from datadistill.fsutil import atomic_write_text, check_writable_file
from datadistill.io.html import (figure, flatten, fmt, img, mean_std, note, pm, read_json, read_png, seconds, si, table,
                                 value)

RUN_PNGS = ("init.png", "synthetic.png")


@dataclass(frozen=True)
class ReportSection:
    """An experiment's section of the report, shown when its folder holds ``<name>.json``: the
    title, ``<name>.md`` as text, the figure ``<name>.png`` and the JSON's ``settings`` as a table.

    Attributes:
        name: the experiment's file stem (``x`` for ``x.json``, ``x.md`` and ``x.png``).
        title: the section's heading.
    """

    name: str
    title: str


#: the registered sections, in registration order (the order of a report's sections)
REPORT_SECTIONS: dict[str, ReportSection] = {}


def register_report_section(name: str, title: str) -> ReportSection:
    """Register (or, under a name already taken, replace in its place) the report section of the
    experiment whose files are ``<name>.json``, ``<name>.md`` and ``<name>.png``. Returns it."""
    section = ReportSection(name, title)
    REPORT_SECTIONS[name] = section
    return section


def _known_pngs() -> tuple[str, ...]:
    return (*RUN_PNGS, *(f"{name}.png" for name in REPORT_SECTIONS))
LOG_LINES = 200

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1150px;
       padding: 0 1rem; color: #1b1b1b; background: #ffffff; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.config td:first-child { font-family: ui-monospace, monospace; }
table.summary td:first-child { font-weight: 600; background: #f7f7f7; }
.note { color: #666; font-style: italic; }
.grids { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
figure { margin: 0; }
figcaption { font-size: 0.9rem; color: #444; margin-bottom: 0.3rem; }
img { max-width: 100%; height: auto; }
img.grid { image-rendering: pixelated; border: 1px solid #ddd; }
pre { background: #f7f7f7; padding: 0.5rem; overflow-x: auto; font-size: 0.8rem; max-height: 30rem; }
"""

SCRIPT = """
window.addEventListener("load", function () {
  var images = document.images, loaded = 0;
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { loaded++; }
  }
  document.body.dataset.imagesTotal = String(images.length);
  document.body.dataset.imagesLoaded = String(loaded);
});
"""


# ---------------------------------------------------------------------------------------- sections


def _summary(m: Mapping[str, Any]) -> str:
    rows = [
        ["method", value(m.get("method"))], ["dataset", value(m.get("dataset"))], ["IPC", value(m.get("ipc"))],
        ["initialisation", value(m.get("init"))], ["distillation model", value(m.get("model"))],
        ["iterations run", value(m.get("iterations"))
         + (f" of {m['iterations_requested']}" if m.get("iterations_requested") not in (None, m.get("iterations"))
            else "")],
        ["distillation time", seconds(m.get("distill_seconds"))], ["final loss", fmt(m.get("final_loss"), 6)],
        ["test accuracy (%)", pm(m.get("accuracy_mean"), m.get("accuracy_std"))],
    ]
    if m.get("learned_lr") is not None:
        rows.append(["learned lr", fmt(m.get("learned_lr"), 6)])
    if m.get("label_kind") not in (None, "hard"):
        rows.append(["labels", value(m.get("label_kind"))])
    if m.get("selected_iteration") is not None:
        rows.append(["selected iteration (validation)", value(m.get("selected_iteration"))])
    if m.get("skipped_iterations"):
        rows.append(["skipped iterations", value(m.get("skipped_iterations"))])
    if m.get("package_version"):
        rows.append(["datadistill version", value(m.get("package_version"))])
    return "<h2>Summary</h2>\n" + table(None, rows, cls="summary")


def _config(run: Path) -> str:
    out = "<h2>Configuration</h2>\n"
    path = run / "config.yaml"
    if not path.is_file():
        return out + note("No config.yaml in this folder.")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return out + note(f"config.yaml could not be read ({exc}); left out.")
    if not isinstance(cfg, Mapping) or not cfg:
        return out + note("config.yaml holds no settings.")
    return out + table(["setting", "value"], [[k, value(v)] for k, v in flatten(cfg)], cls="config")


def _grids(run: Path) -> str:
    parts = []
    for name, caption in (("init.png", "Initial set"), ("synthetic.png", "Final synthetic set")):
        data, why = read_png(run / name)
        if data is None:
            parts.append(f"<figure><figcaption>{escape(caption)}</figcaption>{note(why)}</figure>")
        else:
            parts.append(f"<figure><figcaption>{escape(caption)} ({escape(name)}, one row per class)</figcaption>"
                         f"{img(data, caption, 'grid')}</figure>")
    return '<h2>Synthetic images</h2>\n<div class="grids">\n' + "\n".join(parts) + "\n</div>"


def _loss(m: Mapping[str, Any]) -> str:
    from datadistill.io.plots import loss_curve_figure

    out = "<h2>Distillation loss</h2>\n"
    history = m.get("loss_history") or []
    if not history:
        return out + note("No loss history in metrics.json (a coreset method learns nothing).")
    try:
        fig = loss_curve_figure(history, title=f"{m.get('method', '')} loss")
    except (ConfigError, TypeError, ValueError) as exc:
        return out + note(f"The loss history could not be drawn ({exc}).")
    return out + img(figure(fig), "loss against iteration")


def _evaluation(m: Mapping[str, Any], ev: Any, ev_note: str | None) -> str:
    headers = ["set", "model", "test accuracy (%)", "train accuracy (%)", "networks", "epochs", "seconds"]
    rows = []
    epochs = m.get("eval_epochs")
    if m.get("accuracy_mean") is not None:
        tmean, tstd = mean_std(m.get("train_accuracies"))
        rows.append(["synthetic (distill run)", value(m.get("eval_model") or m.get("model")),
                     pm(m.get("accuracy_mean"), m.get("accuracy_std")), pm(tmean, tstd),
                     value(len(m.get("accuracies") or []) or m.get("num_eval")), value(epochs),
                     seconds(m.get("eval_seconds"))])
    if m.get("init_accuracy_mean") is not None:
        rows.append(["initial set (distill run)", value(m.get("eval_model") or m.get("model")),
                     pm(m.get("init_accuracy_mean"), m.get("init_accuracy_std")), "–",
                     value(len(m.get("init_accuracies") or []) or m.get("num_eval")), value(epochs), "–"])
    notes = []
    if ev_note:
        notes.append(ev_note)
    elif ev is None:
        notes.append("No evaluation.json in this folder (datadistill evaluate … --out RUN_DIR writes one).")
    elif not isinstance(ev, Mapping):
        notes.append("evaluation.json is not an object; left out.")
    else:
        source = f"synthetic ({Path(str(ev['file'])).name})" if ev.get("file") else "synthetic (evaluate)"
        for r in ev.get("rows") or []:
            if not isinstance(r, Mapping):
                continue
            rows.append([source, value(r.get("model")), pm(r.get("accuracy_mean"), r.get("accuracy_std")),
                         pm(r.get("train_accuracy_mean"), r.get("train_accuracy_std")),
                         value(len(r.get("accuracies") or []) or None), value(r.get("epochs")),
                         seconds(r.get("eval_seconds"))])
    out = "<h2>Evaluation</h2>\n"
    if rows:
        out += table(headers, rows, numeric={2, 3, 4, 5, 6}, cls="evaluation")
    else:
        out += note("metrics.json holds no evaluation (the run had num_eval 0).")
    return out + "".join(note(n) for n in notes)


def _curves(run: Path) -> str:
    from datadistill.io.plots import learning_curves_figure

    out = "<h2>Learning curves</h2>\n"
    curves, why = read_json(run / "curves.json")
    if why:
        return out + note(why)
    if curves is None:
        return out + note("No curves.json in this folder.")
    try:
        fig = learning_curves_figure(curves)
    except (ConfigError, TypeError, ValueError, KeyError) as exc:
        return out + note(f"curves.json could not be drawn ({exc}).")
    return out + img(figure(fig), "test and train accuracy against epoch and training time")


def _cost(ev: Any) -> str:
    out = "<h2>Cost against training on the whole data</h2>\n"
    if not isinstance(ev, Mapping):
        return out + note("No cost comparison (evaluation.json with a whole-data baseline) in this folder.")
    # "baselines" (one per model) when evaluate compared several architectures, else "baseline"
    many = ev.get("baselines")
    baselines = [b for b in (many.values() if isinstance(many, Mapping) and many else [ev.get("baseline")])
                 if isinstance(b, Mapping)]
    if not ev.get("cost") and not baselines:
        return out + note("No cost comparison (evaluation.json with a whole-data baseline) in this folder.")
    if baselines:
        out += table(
            ["baseline: whole data", "model", "epochs", "test accuracy (%)", "train accuracy (%)", "training time",
             "forward FLOPs / image", "training FLOPs"],
            [[value(b.get("dataset")), value(b.get("model")), value(b.get("epochs")), fmt(b.get("accuracy")),
              fmt(b.get("train_accuracy")), seconds(b.get("train_seconds")), si(b.get("forward_flops")),
              si(b.get("train_flops"))] for b in baselines], numeric={2, 3, 4, 5, 6, 7}, cls="baseline")
    cost = [c for c in ev.get("cost") or [] if isinstance(c, Mapping)]
    if cost:
        out += table(
            ["model", "synthetic accuracy (%)", "whole-data accuracy (%)", "accuracy gap (points)",
             "synthetic training", "whole-data training", "training-time speedup", "FLOPs ratio"],
            [[value(c.get("model")), fmt(c.get("synthetic_accuracy")), fmt(c.get("baseline_accuracy")),
              fmt(c.get("accuracy_gap")), seconds(c.get("synthetic_seconds")), seconds(c.get("baseline_seconds")),
              fmt(c.get("time_speedup"), 1, "×"), fmt(c.get("flops_ratio"), 1, "×")] for c in cost],
            numeric={1, 2, 3, 4, 5, 6, 7}, cls="cost")
    else:
        out += note("evaluation.json has a baseline but no cost rows.")
    return out


def _ranking_scores(ev: Any) -> str:
    r = ev.get("ranking_scores") if isinstance(ev, Mapping) else None
    if not isinstance(r, Mapping) or not isinstance(r.get("scores"), Mapping):
        return ""
    out = ("<h2>DD-Ranking scores</h2>\n" + note(
        f"{r.get('model')}, K = {r.get('num_eval')} runs, accuracies as fractions; Acc(real, hard) = "
        f"{fmt(r.get('real_hard_accuracy'), 4)} (whole-data baseline). HLR: lower is better; IOR, LRS, ARS: higher. "
        "Each lr chosen on a validation split of the training set; the test set read once per network."))
    rows = []
    for mode, s in r["scores"].items():
        if isinstance(s, Mapping):
            own = " (own labels)" if mode == r.get("primary_mode") and len(r["scores"]) > 1 else ""
            rows.append([f"{mode}{own}", *(f"{fmt(s.get(k + '_mean'), 4)} ± {fmt(s.get(k + '_std'), 4)}"
                                          for k in ("hlr", "ior", "lrs", "ars"))])
    out += table(["labels", "HLR", "IOR", "LRS", "ARS"], rows, numeric={1, 2, 3, 4}, cls="ranking")
    lrs = r.get("lr") if isinstance(r.get("lr"), Mapping) else {}
    accs = r.get("accuracies") if isinstance(r.get("accuracies"), Mapping) else {}
    body = []
    for name, a in accs.items():
        lr = lrs.get(name) if isinstance(lrs.get(name), Mapping) else {}
        how = "validation" if lr.get("source") == "grid" else value(lr.get("source"))
        body.append([name, fmt(lr.get("chosen"), 4), how, fmt(mean_std(a)[0], 4), ", ".join(fmt(x, 4) for x in a or [])])
    out += table(["protocol", "lr", "how chosen", "test accuracy (mean)", "per run"], body, numeric={1, 3},
                 cls="ranking-accuracies")
    return out


def _others(run: Path) -> str:
    names = sorted(p.name for p in run.glob("*.png") if p.name not in _known_pngs() and not p.name.startswith("."))
    if not names:
        return ""
    parts = []
    for name in names:
        data, why = read_png(run / name)
        parts.append(f"<figure><figcaption>{escape(name)}</figcaption>"
                     f"{img(data, name) if data is not None else note(why)}</figure>")
    return "<h2>Other figures</h2>\n" + "\n".join(parts)


def _sections(run: Path) -> str:
    """One section per registered experiment whose JSON is in the folder: its markdown summary (as
    text), its figure and its settings."""
    parts = []
    for app, section in REPORT_SECTIONS.items():
        title = section.title
        data, why = read_json(run / f"{app}.json")
        if data is None and why is None:
            continue
        out = f"<h2>{escape(title)}</h2>\n"
        if why:
            parts.append(out + note(why))
            continue
        md = run / f"{app}.md"
        if md.is_file():
            out += f"<pre>{escape(md.read_text(encoding='utf-8', errors='replace'))}</pre>\n"
        png, png_why = read_png(run / f"{app}.png")
        out += img(png, f"{app}.png") if png is not None else note(png_why)
        settings = data.get("settings") if isinstance(data, dict) else None
        if isinstance(settings, Mapping) and settings:
            out += "\n<details><summary>settings</summary>\n" + table(
                ["setting", "value"], [[k, value(v)] for k, v in flatten(settings)], cls="config") + "\n</details>"
        parts.append(out)
    return "\n\n".join(parts)


def _log(run: Path) -> str:
    path = run / "distill.log"
    if not path.is_file():
        return ""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    shown = lines[-LOG_LINES:]
    cut = f", last {LOG_LINES} of {len(lines)} lines" if len(lines) > LOG_LINES else ""
    return (f"<h2>Log</h2>\n<details><summary>distill.log{escape(cut)}</summary>\n"
            f"<pre>{escape(chr(10).join(shown))}</pre>\n</details>")


# -------------------------------------------------------------------------------------------- main


def render_report(run_dir: str | os.PathLike) -> str:
    """The HTML text of the report of ``run_dir`` (see :func:`write_report`)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run folder {run} does not exist or is not a folder")
    metrics_path = run / "metrics.json"
    apps = _sections(run)
    if not metrics_path.is_file():
        if not apps:
            raise ConfigError(f"run folder {run} has no metrics.json (written by datadistill distill) and no "
                              f"{', '.join(a + '.json' for a in REPORT_SECTIONS)}: nothing to report")
        title = "application results"
        sections = [apps, _others(run)]
    else:
        try:
            m = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{metrics_path} is not valid JSON ({exc})") from exc
        if not isinstance(m, dict):
            raise ConfigError(f"{metrics_path} holds {type(m).__name__}, expected a JSON object")
        ev, ev_note = read_json(run / "evaluation.json")
        title = f"{m.get('method', '?')} on {m.get('dataset', '?')}, IPC {m.get('ipc', '?')}"
        sections = [_summary(m), _config(run), _grids(run), _loss(m), _evaluation(m, ev, ev_note), _curves(run),
                    _cost(None if ev_note else ev), _ranking_scores(None if ev_note else ev), apps, _others(run), _log(run)]
    body = "\n\n".join(s for s in sections if s)
    total = body.count("<img ")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape('datadistill: ' + title)}</title>\n<style>{CSS}</style>\n"
        f"<script>{SCRIPT}</script>\n</head>\n"
        f'<body data-images-total="{total}" data-images-loaded="0">\n'
        f"<h1>{escape(title)}</h1>\n<p class=\"note\">Run folder: {escape(str(run.resolve()))}</p>\n\n"
        f"{body}\n</body>\n</html>\n")


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write one self-contained HTML report of the run folder ``run_dir`` to ``out`` (default
    ``run_dir/report.html``), atomically, and return its path.

    Sections: title (method, dataset, IPC), summary, configuration (``config.yaml``, nested settings
    flattened as ``method_args.name``), initial and final grids, loss curve (``metrics.json``'s
    ``loss_history``), evaluation table (``metrics.json`` and ``evaluation.json``), learning curves
    (``curves.json``), cost against the whole-data baseline and the DD-Ranking scores with the accuracy and
    lr of each protocol (``evaluation.json``, ``evaluate --scores``), other ``*.png``
    figures, and the log. A missing optional file leaves its section with a short note. A folder
    holding an experiment's results gets that experiment's registered section (its summary, figure
    and settings; :data:`REPORT_SECTIONS`).

    Raises:
        ConfigError: ``run_dir`` is not a folder, or has neither a readable ``metrics.json`` nor a
            registered section's JSON; the report file cannot be written (checked first).
    """
    target = Path(out) if out is not None else Path(run_dir) / "report.html"
    if out is not None or Path(run_dir).is_dir():  # else render_report names the missing run folder
        check_writable_file(target, "report file")
    html = render_report(run_dir)
    return atomic_write_text(target, html)
