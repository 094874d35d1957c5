"""The report of ``datadistill nas``: ``nas.json`` (space, settings, one row per candidate, summary,
times), ``nas.csv`` (the rows), ``nas.md`` (the summary and a table sorted by the real ranking) and
``nas.png`` (synthetic against real validation accuracy), written as one bundle; and the section the
HTML report (``datadistill report``) gives a folder holding them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from datadistill.experiments.outputs import write_bundle
from datadistill.experiments import tables
from datadistill.experiments.tables import exact_floats, fmt, md_table
from datadistill.io.plots import synthetic_vs_real_figure
from datadistill.io.report import register_report_section

if TYPE_CHECKING:
    from datadistill.experiments.nas.run import NASResult

SECTION = register_report_section("nas", "Architecture search proxy (datadistill nas)")

CSV_COLUMNS = ("real_rank", "synthetic_rank", "index", "name", "params", "synthetic_val_accuracy",
               "real_val_accuracy", "synthetic_test_accuracy", "real_test_accuracy", "synthetic_train_seconds",
               "real_train_seconds", "synthetic_val_accuracies", "synthetic_test_accuracies", "seed")


def render_csv(result: NASResult) -> str:
    """``nas.csv``: one row per candidate in grid order (per-network accuracies joined with ``;``,
    floats exact); the grid keys come after ``name``."""
    keys = list(result.space.grid)
    return tables.render_csv(result.rows, [*CSV_COLUMNS[:4], *keys, *CSV_COLUMNS[4:]], exact_floats)


def render_markdown(result: NASResult) -> str:
    """``nas.md``: what was searched, the summary, and the table sorted by the real ranking."""
    s, t, cfg = result.summary, result.times, result.settings
    n = s["candidates"]
    space = result.space
    grid = "; ".join(f"{k} {{{', '.join(str(v) for v in vals)}}}" for k, vals in space.grid.items())
    sampled = f", {space.sample} sampled (seed {space.seed})" if space.sample else ""
    src = result.synthetic
    proto, real = cfg["synthetic_protocol"], cfg["real_proxy"]
    subset = "all" if real["subset"] is None else f"{real['subset']} per class,"
    workers = "in this process" if cfg["workers"] <= 1 else f"{cfg['workers']} worker processes"
    augment = "no augmentation" if real["dsa_strategy"] in ("", "none", "None") else f"DSA `{real['dsa_strategy']}`"
    rho = s["spearman"]
    lines = [
        f"# Architecture search: {n} {space.family} candidates",
        "",
        f"- space: {grid} (grid of {space.grid_size}{sampled})",
        f"- synthetic set: {src.get('images')} images ({src.get('method')}, IPC {src.get('ipc')}, {src.get('dataset')})"
        + (f", `{src['file']}`" if src.get("file") else ""),
        f"- synthetic side: {proto['num_eval']} network(s) × {proto['epochs']} epochs, DSA `{proto['dsa_strategy']}`",
        f"- real proxy: 1 network × {real['epochs']} epoch(s) over {subset} {cfg['real_train_images']} real training "
        f"images, {augment}",
        f"- ranking: validation accuracy on {cfg['val_images']} images carved from the real training set "
        f"(seed {cfg['seed']}); test accuracy ({cfg['test_images']} images) reported, never used to rank",
        "",
        "## Summary",
        "",
        f"- Spearman ρ (synthetic vs real validation ranking): all {fmt(rho['all'], 3)}, "
        + ", ".join(f"top-{k} {fmt(rho.get(f'top{k}'), 3)}" for k in cfg["top_k"])
        + (" (— = undefined: fewer candidates than k, or one side constant)" if None in rho.values() else ""),
        f"- best architecture agrees: {'yes' if s['best_agrees'] else 'no'}; "
        f"synthetic-best `{s['synthetic_best_name']}` "
        f"has real rank {s['synthetic_best_real_rank']} of {n} (regret {s['regret']:.2f} points); real best "
        f"`{s['real_best_name']}` has synthetic rank {s['real_best_synthetic_rank']}",
        f"- search time, training only: synthetic {t['synthetic_train_seconds']:.1f} s, real "
        f"{t['real_train_seconds']:.1f} s (real ÷ synthetic {fmt(t['train_seconds_ratio'], 1)}×)",
        f"- search time, wall ({workers}): synthetic {t['synthetic_wall_seconds']:.1f} s, real "
        f"{t['real_wall_seconds']:.1f} s (real ÷ synthetic {fmt(t['wall_seconds_ratio'], 1)}×); "
        f"{t['total_wall_seconds']:.1f} s in all" + (", worker start-up included" if cfg["workers"] > 1 else ""),
        "",
        "## Candidates (by real validation rank)",
        "",
    ]
    header = ["real rank", "syn. rank", "candidate", "params", "syn. val %", "real val %", "syn. test %",
              "real test %"]
    lines += md_table(header, [[r["real_rank"], r["synthetic_rank"], f"`{r['name']}`", f"{r['params']:,}",
                                fmt(r["synthetic_val_accuracy"], 2), fmt(r["real_val_accuracy"], 2),
                                fmt(r["synthetic_test_accuracy"], 2), fmt(r["real_test_accuracy"], 2)]
                               for r in sorted(result.rows, key=lambda r: (r["real_rank"], r["index"]))],
                      align="rrlrrrrr")
    return "\n".join(lines) + "\n"


def scatter_figure(result: NASResult):
    """Synthetic against real validation accuracy, one point per candidate, the synthetic-best and the
    real best marked (:func:`datadistill.io.plots.synthetic_vs_real_figure`)."""
    rows, s = result.rows, result.summary
    return synthetic_vs_real_figure(
        [r["synthetic_val_accuracy"] for r in rows], [r["real_val_accuracy"] for r in rows], [r["name"] for r in rows],
        s["synthetic_best"], s["real_best"],
        f"{result.space.family} search, {len(rows)} candidates: Spearman ρ = {fmt(s['spearman']['all'], 2)}")


def write_outputs(result: NASResult, out: str | os.PathLike) -> Path:
    """Write ``nas.json``, ``nas.csv``, ``nas.md`` and ``nas.png`` into ``out`` (created), each
    atomically, everything rendered before the first file is written; returns the folder.

    Raises:
        ConfigError: ``out`` exists and is not a folder.
    """
    write_bundle(out, {"nas.json": result.as_dict(), "nas.csv": render_csv(result), "nas.md": render_markdown(result),
                       "nas.png": scatter_figure(result)})
    return Path(out)

__all__ = ["CSV_COLUMNS", "SECTION", "render_csv", "render_markdown", "scatter_figure", "write_outputs"]
