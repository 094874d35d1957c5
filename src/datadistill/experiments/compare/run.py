"""Running a comparison grid: every cell with :func:`datadistill.api.run_distill`, finished cells
reused (:class:`~datadistill.record.UnitFolders`: ``cells/<cell>/cell.json`` beside the
cell's ``metrics.json``), an interrupted cell resumed from its folder (``checkpoint/``), the tables
refreshed after every cell."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from datadistill.errors import ConfigError, DatadistillError
from datadistill.experiments.compare.report import summarize, write_plots, write_tables
from datadistill.experiments.compare.scores import baseline_folder, cell_baseline, score_cell, score_fields
from datadistill.experiments.compare.settings import Cell, CompareSettings, load_compare
from datadistill.distributed import broadcast_object, world
from datadistill.fsutil import atomic_write_text, check_output_folder
from datadistill.record import UnitFolders
from datadistill.units import check_shared_folder, run_units

Progress = Callable[[str, str], None]
log = logging.getLogger("datadistill")
#: what a cell's folder holds of an unfinished run that only a rerun with the same config may reuse
STALE = ("checkpoint",)


@dataclass
class CompareResult:
    """What :func:`run_compare` returns.

    Attributes:
        out: the output folder.
        rows: one row per cell, in table order (see :func:`cell_row`).
        summary: one row per (label, IPC, init) (see :func:`summarize`).
    """

    out: Path
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]

    @property
    def failures(self) -> list[dict[str, Any]]:
        """The rows of the cells that raised (``status`` ``failed``, message in ``error``)."""
        return [r for r in self.rows if r["status"] == "failed"]

    @property
    def ok(self) -> bool:
        """True when no cell failed."""
        return not self.failures


def cell_row(cell: Cell, metrics: Mapping[str, Any] | None, status: str, error: str | None = None,
             scores: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One results row: the cell's settings, and its ``metrics.json`` figures when it ran.

    Args:
        cell: the cell.
        metrics: its ``metrics.json`` content (None for a failed cell).
        status: ``done`` (run now), ``reused`` (earlier results) or ``failed``.
        error: the failure's message.
        scores: the cell's ranking scores (:func:`~datadistill.experiments.compare.scores.score_cell`), when
            the grid asks for them.

    Returns:
        A mapping with cell, label, method, dataset, ipc, init, seed, model, eval_model, eval_protocol
        (``ours`` or ``paper:<method>``), num_eval, eval_epochs (those the evaluation used when it
        ran, else the config's), iterations (reached), distill_seconds, eval_seconds, accuracy_mean,
        accuracy_std, accuracies (percent; None without evaluation), init_accuracy_mean and
        init_accuracies (only when the initial set was evaluated), the score columns
        (:func:`~datadistill.experiments.compare.scores.score_fields`, only with scores), status, error.
    """
    c = cell.config
    m = metrics or {}
    row: dict[str, Any] = {
        "cell": cell.name, "label": cell.label, "method": c.method, "dataset": c.dataset, "ipc": c.ipc,
        "init": c.init, "seed": c.seed, "model": c.model, "eval_model": c.resolved_eval_model,
        "eval_protocol": m.get("eval_protocol", c.eval_protocol), "num_eval": m.get("num_eval", c.num_eval),
        "eval_epochs": m.get("eval_epochs", c.eval_epochs), "iterations": m.get("iterations"),
        "distill_seconds": m.get("distill_seconds"), "eval_seconds": m.get("eval_seconds"),
        "accuracy_mean": m.get("accuracy_mean"), "accuracy_std": m.get("accuracy_std"),
        "accuracies": m.get("accuracies"),
    }
    if m.get("init_accuracy_mean") is not None:
        row.update(init_accuracy_mean=m["init_accuracy_mean"], init_accuracies=m.get("init_accuracies"))
    row.update(score_fields(scores))
    row.update(status=status, error=error)
    return row


def run_compare(config: str | os.PathLike | Mapping[str, Any] | CompareSettings,
                out: str | os.PathLike | None = None, progress: Progress | None = None,
                run: bool = True, *, run_options: Callable[[Cell], Mapping[str, Any]] | None = None) -> CompareResult:
    """Run (or reuse) every cell of a comparison grid and write its tables and plots.

    Cells run with :func:`datadistill.api.run_distill`, one after another in one process; under
    torchrun the ranks share them out (:func:`datadistill.units.run_units`: each rank runs a cell
    alone, writing its folder, which must then be on a filesystem every rank sees), rank 0 writes
    the tables and plots, and every rank returns the result. A cell whose folder holds
    ``metrics.json`` and a ``cell.json`` recording the same resolved config is reused, not rerun
    (:class:`~datadistill.record.UnitFolders`). A cell that was interrupted reruns in the same
    folder, which keeps what the interrupted run left there: ``run_distill`` resumes from the
    cell's ``checkpoint/`` and reuses its finished evaluation networks (``evaluation_parts/``);
    ``cell.started.json`` records the config the cell began with, and a checkpoint of another config
    is deleted before the cell reruns.
    A cell raising a :class:`~datadistill.errors.DatadistillError` is recorded as failed (its
    message in the row's ``error``) and the grid goes on; other exceptions propagate. The tables are
    rewritten after every cell that runs and once at the end, so an interrupted grid leaves the
    finished cells tabulated.

    Args:
        config: the grid: :class:`CompareSettings`, a YAML file path or a mapping (format in
            :mod:`datadistill.experiments.compare`).
        out: output folder; overrides the config's ``out``.
        progress: called with ``(cell_name, status)``, status ``reused``, ``running``, then ``done``
            or ``failed``; ``skipped`` for a cell left unrun because ``run`` is False.
        run: False runs nothing: the finished cells are tabulated and plotted, the others are
            reported as not run yet (e.g. to look at a grid still running elsewhere, or one stopped
            part-way).
        run_options: called with each cell about to run; its keyword arguments are added to that
            cell's :func:`~datadistill.api.run_distill` call (e.g. ``callbacks`` and ``on_eval`` of a
            progress display).

    Returns:
        The rows (one per cell), the per-(label, IPC, init) summary and the output folder.

    Raises:
        ConfigError: an invalid grid (nothing runs), or no output folder given.
    """
    from datadistill import api

    plan = load_compare(config)
    out_value = out if out is not None else plan.out
    if out_value is None or not str(out_value):
        raise ConfigError("no output folder: give out: in the compare config or --out")
    out_dir = check_output_folder(out_value)
    main = world().is_main
    if main:
        atomic_write_text(out_dir / "compare.yaml", yaml.safe_dump(plan.source, sort_keys=False))
    check_shared_folder(out_dir, "compare output folder")  # each rank writes the cells it runs

    def notify(name: str, status: str) -> None:
        log.info("cell %s: %s", name, status)
        if progress is not None:
            progress(name, status)

    cells = UnitFolders(out_dir / "cells", marker="cell.json", settings_key="config", result="metrics.json")
    finished = [cells.finished(cell.name, cell.config_dict()) if main else None for cell in plan.cells]
    finished = broadcast_object(finished)  # rank 0's reading of the folder decides for every rank
    metrics_of = {cell.name: m for cell, m in zip(plan.cells, finished) if m is not None}
    rows: list[dict[str, Any]] = []
    todo = []
    for cell, metrics in zip(plan.cells, finished):
        if metrics is not None:
            rows.append(cell_row(cell, metrics, "reused"))
            notify(cell.name, "reused")
        elif not run:
            notify(cell.name, "skipped")
        else:
            todo.append(cell)

    def run_cell(j: int) -> tuple[dict[str, Any], dict[str, Any] | None]:  # on the rank that claimed it, alone
        cell = todo[j]
        notify(cell.name, "running")
        # no stale record while the folder changes; what an interrupted run of this cell left there (its
        # checkpoint/) is kept so that run_distill resumes from it, unless it ran with another config
        cell_dir = cells.begin(cell.name, cell.config_dict(), stale=STALE)
        try:
            api.run_distill(cell.config, cell_dir, **(run_options(cell) if run_options is not None else {}))
            metrics = json.loads((cell_dir / "metrics.json").read_text(encoding="utf-8"))
        except DatadistillError as exc:
            return cell_row(cell, None, "failed", str(exc)), None
        cells.mark_finished(cell.name, cell.config_dict(), cell=cell.name, label=cell.label)
        return cell_row(cell, metrics, "done"), metrics

    def cell_done(j: int, result: tuple[dict[str, Any], dict[str, Any] | None]) -> None:  # rank 0, as cells end
        rows.append(result[0])
        notify(result[0]["cell"], result[0]["status"])
        write_tables(plan, rows, out_dir)  # after every cell run, so an interrupted grid is tabulated

    for (row, metrics) in run_units(len(todo), run_cell, on_result=cell_done):
        if metrics is not None:
            metrics_of[row["cell"]] = metrics
    rows = broadcast_object(plan.ordered(rows))  # rank 0's rows (every cell's) on every rank
    if plan.scores is not None:
        rows = _with_scores(plan, rows, metrics_of, out_dir, run, notify)
    summary = summarize(plan, rows)
    if main:
        write_tables(plan, rows, out_dir)
        write_plots(plan, summary, out_dir)
    return CompareResult(out=out_dir, rows=rows, summary=summary)


def _with_scores(plan: Any, rows: list[dict[str, Any]], metrics_of: Mapping[str, Mapping[str, Any]], out_dir: Path,
                 compute: bool, notify: Progress) -> list[dict[str, Any]]:
    """``rows`` with the ranking scores of every finished cell (:func:`score_cell`), computed as units
    spread over the ranks: first each whole-data baseline the cells need (one unit per baseline
    folder, so no two ranks train the same), then each cell's scores. A cell whose scores fail is
    marked failed (``ranking scores: …``)."""
    by_name = {cell.name: cell for cell in plan.cells}
    scored = [i for i, r in enumerate(rows) if r["status"] in ("done", "reused")]
    if compute:
        folders: dict[str, str] = {}
        for i in scored:
            cell = by_name[rows[i]["cell"]]
            folders.setdefault(str(baseline_folder(cell, plan.scores, out_dir)), cell.name)
        needed = list(folders.values())

        def ensure_baseline(j: int) -> None:
            try:
                cell_baseline(by_name[needed[j]], out_dir / "cells" / needed[j], plan.scores, out_dir)
            except DatadistillError:  # each cell's scoring meets it again and records it in its row
                pass

        run_units(len(needed), ensure_baseline)

    def score(j: int) -> dict[str, Any]:
        cell, row = by_name[rows[scored[j]]["cell"]], rows[scored[j]]
        metrics = metrics_of[cell.name]
        try:
            return cell_row(cell, metrics, row["status"], scores=score_cell(
                cell, out_dir / "cells" / cell.name, plan.scores, out_dir, compute=compute))
        except DatadistillError as exc:
            return cell_row(cell, metrics, "failed", f"ranking scores: {exc}")

    out = list(rows)

    def scored_one(j: int, row: dict[str, Any]) -> None:  # rank 0
        out[scored[j]] = row
        if row["status"] == "failed":
            notify(row["cell"], "failed")
        write_tables(plan, out, out_dir)

    for j, row in enumerate(run_units(len(scored), score, on_result=scored_one)):
        out[scored[j]] = row
    return out

__all__ = ["CompareResult", "cell_row", "run_compare"]
