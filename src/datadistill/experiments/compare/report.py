"""The tables and plots of ``datadistill compare``: per-(label, IPC, init) summary, ``results.csv``
/ ``.json``, ``summary.csv`` / ``.json``, ``results.md`` (the papers' layout) and the accuracy plots.

A compare folder has no section in the HTML report (``datadistill report`` reads one run's folder);
``results.md`` is its report."""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datadistill.experiments.compare.settings import Cell, ComparePlan
from datadistill.experiments.outputs import write_bundle
from datadistill.experiments.tables import DASH, md_table, mean_std, render_csv

CSV_COLUMNS = ("cell", "label", "method", "dataset", "ipc", "init", "seed", "model", "eval_model", "eval_protocol",
               "num_eval", "eval_epochs", "iterations", "distill_seconds", "eval_seconds", "accuracy_mean", "accuracy_std",
               "accuracies", "init_accuracy_mean", "status", "error")
SUMMARY_COLUMNS = ("label", "method", "dataset", "ipc", "init", "eval_model", "eval_protocol", "eval_epochs", "n",
                   "accuracy_mean",
                   "accuracy_std", "distill_seconds", "iterations", "seeds_done", "seeds_total",
                   "init_accuracy_mean", "init_accuracy_std")
SCORE_COLUMNS = ("score_labels", "hlr_mean", "hlr_std", "ior_mean", "ior_std", "lrs_mean", "lrs_std", "ars_mean",
                 "ars_std")
"""The DD-Ranking score columns (fractions; the set's own label mode), present when the grid has ``scores:``."""


def summarize(plan: ComparePlan, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate cell rows per (label, IPC, init), pooling the evaluation networks of all seeds.

    Args:
        plan: the grid (gives the order and the number of seeds asked for).
        rows: cell rows (:func:`cell_row`), any order; failed rows count as not done.

    Returns:
        One row per group in table order: label, method, dataset, ipc, init, eval_model,
        eval_protocol, eval_epochs, n (evaluation networks pooled = seeds done × num_eval), accuracy_mean and
        accuracy_std (percent, population std over the n accuracies; None when n is 0),
        distill_seconds and iterations (means over the seeds done), seeds_done, seeds_total,
        init_accuracy_mean / init_accuracy_std (pooled, when the initial sets were evaluated).
    """
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for row in plan.ordered(rows):
        groups.setdefault((row["label"], row["ipc"], row["init"]), []).append(row)
    out = []
    for (label, ipc, init), members in groups.items():
        done = [r for r in members if r["status"] != "failed"]
        accs = [a for r in done for a in (r.get("accuracies") or [])]
        init_accs = [a for r in done for a in (r.get("init_accuracies") or [])]
        seconds = [r["distill_seconds"] for r in done if r.get("distill_seconds") is not None]
        iterations = [r["iterations"] for r in done if r.get("iterations") is not None]
        first = members[0]
        out.append({
            "label": label, "method": first["method"], "dataset": first["dataset"], "ipc": ipc, "init": init,
            "eval_model": first["eval_model"], "eval_protocol": first.get("eval_protocol", "ours"),
            "eval_epochs": first["eval_epochs"], "n": len(accs),
            "accuracy_mean": statistics.fmean(accs) if accs else None,
            "accuracy_std": statistics.pstdev(accs) if accs else None,
            "distill_seconds": statistics.fmean(seconds) if seconds else None,
            "iterations": statistics.fmean(iterations) if iterations else None,
            "seeds_done": len(done), "seeds_total": len(plan.seeds),
            "init_accuracy_mean": statistics.fmean(init_accs) if init_accs else None,
            "init_accuracy_std": statistics.pstdev(init_accs) if init_accs else None,
            **_pooled_scores(done),
        })
    return out


def _pooled_scores(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The score columns of a group: every run of every seed pooled (mean, population std)."""
    if not any("lrs_runs" in r for r in rows):
        return {}
    out: dict[str, Any] = {"score_labels": ",".join(dict.fromkeys(r["score_labels"] for r in rows if "lrs_runs" in r))}
    for key in ("hlr", "ior", "lrs", "ars"):
        runs = [v for r in rows for v in r.get(f"{key}_runs") or []]
        out[f"{key}_mean"] = statistics.fmean(runs) if runs else None
        out[f"{key}_std"] = statistics.pstdev(runs) if runs else None
    return out


def _describe(by_label: dict[str, Any]) -> str:
    """``v`` when every label has value ``v``, else the commonest value and the exceptions."""
    counts = Counter(by_label.values())
    common = counts.most_common(1)[0][0]
    others: dict[Any, list[str]] = {}
    for label, v in by_label.items():
        if v != common:
            others.setdefault(v, []).append(label)
    if not others:
        return str(common)
    exceptions = "; ".join(", ".join(ls) + f": {v}" for v, ls in others.items())
    return f"{common} ({exceptions})"


def _columns(plan: ComparePlan) -> list[tuple[int, str | None]]:
    """Table columns: one per IPC, or per (IPC, init) when the grid lists more than one init."""
    ipcs = sorted(plan.ipcs)
    if len(plan.inits) == 1:
        return [(ipc, None) for ipc in ipcs]
    return [(ipc, init) for ipc in ipcs for init in plan.inits]


def _table_cell(group: dict[str, Any] | None, value: Callable[[dict[str, Any]], str | None]) -> str:
    if group is None:
        return DASH
    if group["seeds_done"] == 0:
        return "failed"
    text = value(group)
    if text is None:
        return DASH
    return text + ("*" if group["seeds_done"] < group["seeds_total"] else "")


def render_markdown(plan: ComparePlan, summary: list[dict[str, Any]]) -> str:
    """``results.md``: the accuracy table in the papers' layout (a row per method label, a column per
    IPC, or per IPC and init when the grid lists several inits; cells ``mean ± std``) with its
    caption, then the table of distillation seconds.

    Args:
        plan: the grid.
        summary: :func:`summarize`'s rows.

    Returns:
        Markdown text.
    """
    columns = _columns(plan)
    lookup: dict[tuple[str, int, str | None], dict[str, Any]] = {}
    for g in summary:
        entry = next(e for e in plan.entries if e.label == g["label"])
        if entry.fixed_init:
            for ipc, init in columns:
                if ipc == g["ipc"]:
                    lookup[(g["label"], ipc, init)] = g
        else:
            lookup[(g["label"], g["ipc"], g["init"] if len(plan.inits) > 1 else None)] = g
    labels = [e.label for e in plan.entries]
    by_label_cells: dict[str, Cell] = {}
    for cell in plan.cells:
        by_label_cells.setdefault(cell.label, cell)
    cfg = {label: c.config for label, c in by_label_cells.items()}
    n_seeds = len(plan.seeds)
    datasets = _describe({lb: c.dataset for lb, c in cfg.items()})
    models = _describe({lb: c.resolved_eval_model for lb, c in cfg.items()})
    # a paper protocol's networks and epochs are known once a cell has run (its metrics), else the config's
    ran = {g["label"]: g for g in summary if g["seeds_done"] and g["n"]}
    epochs = _describe({lb: ran[lb]["eval_epochs"] if lb in ran else c.eval_epochs for lb, c in cfg.items()})
    num_eval = {lb: ran[lb]["n"] // ran[lb]["seeds_done"] if lb in ran else c.num_eval for lb, c in cfg.items()}
    n = _describe({lb: n_seeds * k for lb, k in num_eval.items()})
    protocols = _describe({lb: "paper (each method's own, docs/faithfulness.md)" if c.eval_protocol == "paper"
                           else "ours (the same for every method)" for lb, c in cfg.items()})
    from datadistill.methods import METHODS

    coresets = [e.label for e in plan.entries if not METHODS.get(e.method).learns]
    fixed = [e for e in plan.entries if e.fixed_init and e.label not in coresets]
    header = ["method", *(f"IPC {ipc}" + (f", {init}" if init else "") for ipc, init in columns)]

    def table(value: Callable[[dict[str, Any]], str | None]) -> list[str]:
        return md_table(header, [[label, *(_table_cell(lookup.get((label, ipc, init)), value) for ipc, init in columns)]
                                 for label in labels])

    def accuracy(g: dict[str, Any]) -> str | None:
        if g["accuracy_mean"] is None:
            return None
        return mean_std(g["accuracy_mean"], g["accuracy_std"])

    def seconds(g: dict[str, Any]) -> str | None:
        if g["distill_seconds"] is None:
            return None
        its = g["iterations"]
        return f"{g['distill_seconds']:.1f}" + (f" ({its:.0f} it)" if its else "")

    init_note = f"Init: {', '.join(plan.inits)}"
    if fixed:
        init_note += "; " + "; ".join(f"{e.label}: {e.fixed_init}" for e in fixed)
    if coresets:
        init_note += f" ({', '.join(coresets)}: coreset selection of real images, no learning)"
    lines = [f"# Comparison: {datasets}", "",
             f"Test accuracy (%) on the real {datasets} test set: mean ± std over all evaluation networks of all "
             f"seeds pooled, n = seeds × num_eval = {n} per cell ({n_seeds} seed{'s' if n_seeds > 1 else ''}: "
             f"{', '.join(map(str, plan.seeds))}; population std). Evaluation model {models}, trained "
             f"{epochs} epochs on the distilled set, protocol {protocols}. {init_note}.", ""]
    lines += table(accuracy)
    if plan.scores is not None:
        for key, title in (("lrs", "Label-robust score LRS"), ("ars", "Augmentation-robust score ARS")):
            lines += ["", f"{title} (DD-Ranking, in [0, 1], higher is better; accuracies as fractions; mean ± std "
                          "over K runs of all seeds, each with a fresh random subset R; the set's own label mode).",
                      ""]
            lines += table(lambda g, k=key: None if g.get(f"{k}_mean") is None else
                           mean_std(g[f"{k}_mean"], g[f"{k}_std"], 4))
    lines += ["", f"Distillation time (s, wall clock, mean over seeds; iterations reached in parentheses; "
                  f"coreset methods: selection time).", ""]
    lines += table(seconds)
    done = {(g["label"], g["ipc"], g["init"]) for g in summary if g["seeds_done"] == g["seeds_total"]}
    if len(done) < len({(c.label, c.config.ipc, c.config.init) for c in plan.cells}):
        lines += ["", "— not run yet; failed: every seed failed (errors in results.csv); "
                      "* fewer seeds than asked (a seed failed or is not run yet)."]
    return "\n".join(lines) + "\n"


def write_tables(plan: ComparePlan, rows: list[dict[str, Any]], out_dir: str | os.PathLike) -> None:
    """Write ``results.csv``, ``results.json``, ``summary.csv``, ``summary.json`` and ``results.md``
    to ``out_dir`` (one bundle, each file atomically) from the cell rows so far.

    ``results.csv`` joins the accuracies with ``;``; its ``init_accuracy_mean`` column is present only
    when some cell evaluated its initial set, its score columns (:data:`SCORE_COLUMNS`) only when the
    grid has ``scores:``.
    """
    rows = plan.ordered(rows)
    summary = summarize(plan, rows)
    columns = CSV_COLUMNS if any("init_accuracy_mean" in r for r in rows) else tuple(
        c for c in CSV_COLUMNS if c != "init_accuracy_mean")
    sum_columns = SUMMARY_COLUMNS if any(g["init_accuracy_mean"] is not None for g in summary) else SUMMARY_COLUMNS[:-2]
    if plan.scores is not None:  # before status and error
        columns = (*columns[:-2], *SCORE_COLUMNS, *columns[-2:])
        sum_columns = (*sum_columns, *SCORE_COLUMNS)
    write_bundle(out_dir, {"results.csv": render_csv(rows, columns), "results.json": rows,
                           "summary.csv": render_csv(summary, sum_columns), "summary.json": summary,
                           "results.md": render_markdown(plan, summary)})


def write_plots(plan: ComparePlan, summary: list[dict[str, Any]], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``accuracy_vs_ipc.png`` and ``accuracy_vs_time.png`` (via :mod:`datadistill.io.plots`) from
    the summary rows that have an accuracy; nothing when none has. Series are labels, or
    ``label (init)`` when the grid lists several inits. Returns the paths written."""
    from datadistill.io.plots import plot_accuracy_vs_ipc, plot_accuracy_vs_time

    fixed = {e.label for e in plan.entries if e.fixed_init}
    points = []
    for g in summary:
        if g["accuracy_mean"] is None:
            continue
        label = g["label"] if len(plan.inits) == 1 or g["label"] in fixed else f"{g['label']} ({g['init']})"
        points.append({**g, "label": label})
    if not points:
        return []
    out = Path(out_dir)
    written = [plot_accuracy_vs_ipc(points, out / "accuracy_vs_ipc.png")]
    timed = [p for p in points if p["distill_seconds"] is not None]
    if timed:
        written.append(plot_accuracy_vs_time(timed, out / "accuracy_vs_time.png"))
    return written


__all__ = ["CSV_COLUMNS", "SCORE_COLUMNS", "SUMMARY_COLUMNS", "render_markdown", "summarize", "write_plots", "write_tables"]
