"""The files of a continual-learning run, rendered from the ``continual.json`` content (the report):
``continual.json``, ``continual.csv`` (one row per method, order and step), ``continual.md`` (the
accuracy table, the verdict, per-order values, memory sizes and times) and ``continual.png``
(:func:`datadistill.io.plots.accuracy_vs_step_figure`), written together by :func:`write_outputs`
(:func:`datadistill.experiments.outputs.write_bundle`: rendered first, then each file atomically).
The module registers the run's section of ``datadistill report`` (:data:`SECTION`).

Units: accuracies in percent (4 decimals in the CSV, 2 in markdown), seconds (2 decimals in the CSV).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datadistill.experiments.outputs import write_bundle
from datadistill.experiments.tables import fixed_floats, md_table, mean_std
from datadistill.experiments.tables import render_csv as csv_table
from datadistill.io.report import register_report_section

FILES = ("continual.json", "continual.csv", "continual.md", "continual.png")
REPORT_TITLE = "Continual learning (datadistill continual)"
SECTION = register_report_section("continual", REPORT_TITLE)  # its section of `datadistill report`
CSV_COLUMNS = ("method", "order", "step", "classes", "seen_classes", "memory_images", "test_images", "seed",
               "iterations", "accuracy_mean", "accuracy_std", "accuracies", "condense_seconds", "train_seconds",
               "eval_seconds")


def _records(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [r for m in report["methods"].values() for o in m["orders"] for r in o["steps"]]


def render_csv(report: Mapping[str, Any]) -> str:
    """``continual.csv``: one row per method, order and step (columns :data:`CSV_COLUMNS`; lists
    joined with ``;``, accuracies in % with 4 decimals, seconds with 2:
    :func:`~datadistill.experiments.tables.fixed_floats`)."""
    return csv_table(_records(report), CSV_COLUMNS, fixed_floats)


def render_markdown(report: Mapping[str, Any]) -> str:
    """``continual.md`` from the ``continual.json`` content: the protocol in one paragraph, the
    accuracy table (a row per memory method, a column per step, ``mean ± std`` over the class
    orders), the last-step verdict, the per-order values at the last step, and memory sizes and
    wall times."""
    s = report["settings"]
    ds = report["dataset"]
    per_step = report["classes_per_step"]
    n_orders = report["orders_done"]
    methods = [m for m in s["memory_methods"] if report["methods"][m]["summary"]]
    steps = list(range(1, s["steps"] + 1))
    seeds = ", ".join(str(k) for k in range(s["orders"]))
    lines = [f"# Class-incremental continual learning: {ds['name']}", "",
             f"{s['steps']} steps of {per_step} classes; class order k = a permutation of the {ds['num_classes']} "
             f"classes drawn with seed k (seeds {seeds}). Memory: {s['memory_ipc']} images per class of each step's "
             f"classes, condensed from that step's training images only, kept for the later steps. After each step, "
             f"{s['num_eval']} fresh {s['eval_model']} network{'s' if s['num_eval'] > 1 else ''} × {s['epochs']} "
             f"epochs (lr {s['eval_lr']:g}, DSA {s['dsa_strategy']}) trained from scratch on the whole memory, "
             f"tested on the real test images of all classes seen so far. Cells: accuracy (%) on the seen classes, "
             f"mean ± std over the {n_orders} class order{'s' if n_orders != 1 else ''} (per order: the mean of its "
             f"networks; population std). Same seed for every method at a given order and step, so random is the "
             f"starting point of the learning methods (init real).", ""]
    if not report["complete"]:
        lines += [f"**Incomplete: {n_orders} of {s['orders']} class orders done** (the run is going on or was "
                  "interrupted).", ""]
    rows = []
    for m in methods:
        by_step = {r["step"]: r for r in report["methods"][m]["summary"]}
        rows.append([m, *(mean_std(by_step[t]["accuracy_mean"], by_step[t]["accuracy_std"]) if t in by_step else "—"
                          for t in steps)])
    lines += md_table(["memory", *(f"step {t} ({t * per_step} cl.)" for t in steps)], rows)
    lines += ["", "## Last step", "", report["last_step"]["text"], ""]
    if methods:
        done = sorted({o["order"] for m in methods for o in report["methods"][m]["orders"]
                       if any(r["step"] == s["steps"] for r in o["steps"])})
        rows = []
        for m in methods:
            last = {o["order"]: o["steps"][-1] for o in report["methods"][m]["orders"]
                    if o["steps"] and o["steps"][-1]["step"] == s["steps"]}
            rows.append([m, *(f"{last[k]['accuracy_mean']:.2f}" if k in last else "—" for k in done)])
        lines += ["## Per class order, last step", "", *md_table(["memory", *(f"order {k}" for k in done)], rows)]
        lines += ["", "Class orders: " + "; ".join(f"{k}: {report['class_orders'][k]}" for k in done) + ".", ""]
        rows = []
        for m in methods:
            summary = report["methods"][m]["summary"]
            rows.append([m, ", ".join(str(r["memory_images"]) for r in summary),
                         f"{sum(r['condense_seconds'] for r in summary):.1f}",
                         f"{sum(r['train_seconds'] for r in summary):.1f}"])
        lines += ["## Memory and time", "",
                  "Memory images after each step; seconds are wall clock, means over the orders, summed over the "
                  "steps (condensation: `distill` on the step's classes; training: the evaluation networks).", "",
                  *md_table(["memory", "images per step", "condensation s", "training s"], rows)]
    return "\n".join(lines) + "\n"


def continual_figure(report: Mapping[str, Any]):
    """Accuracy on the seen classes against step, a line per memory method (mean over the orders)
    with a ± std band; x ticks ``step (classes seen)``
    (:func:`datadistill.io.plots.accuracy_vs_step_figure`). Returns a :class:`matplotlib.figure.Figure`."""
    from datadistill.io.plots import accuracy_vs_step_figure

    s = report["settings"]
    n = report["orders_done"]
    title = (f"{report['dataset']['name']}: {s['memory_ipc']} images per class, "
             f"{n} class order{'s' if n != 1 else ''} (mean ± std)")
    series = {m: report["methods"][m]["summary"] for m in s["memory_methods"]}
    return accuracy_vs_step_figure(series, s["steps"], report["classes_per_step"], title, legend_title="memory")


def write_outputs(report: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """Write :data:`FILES` to ``out_dir`` (created if needed): every file rendered first, then each
    written atomically. Returns the paths.

    Raises:
        ConfigError: ``out_dir`` exists and is not a folder.
    """
    return write_bundle(out_dir, {"continual.json": report, "continual.csv": render_csv(report),
                                  "continual.md": render_markdown(report), "continual.png": continual_figure(report)})


__all__ = ["CSV_COLUMNS", "FILES", "REPORT_TITLE", "continual_figure", "render_csv", "render_markdown",
           "SECTION", "write_outputs"]
