"""``datadistill compare``: run a grid of distillation runs (methods × IPC × init × seed) one after
another and tabulate them in the papers' layout.

The grid comes from a YAML file (or a mapping)::

    out: docs/compare/mnist        # optional; run_compare's ``out`` overrides it
    base:                          # DistillConfig fields shared by every cell (not method/ipc/init/seed)
      dataset: mnist
      iterations: 200
      max_seconds: 120
      num_eval: 2
      eval_epochs: 300
    methods:                       # a name, or a mapping: method, optional label, DistillConfig
      - random                     # overrides, optional init (one fixed init for this method) and
      - dm                         # optional by_ipc: {IPC: {overrides for that IPC only}}
      - {method: datm, label: datm, model: convnet_w32, method_args: {experts: runs/experts/mnist_w32}}
    ipc: [1, 10]
    init: [real]                   # default [real]; ignored by coreset methods (their init is their name)
    seeds: [0, 1]                  # default [0]

Every cell's :class:`~datadistill.config.DistillConfig` is defaults ← ``base`` ← the method entry ←
its ``by_ipc`` entry ← {method, ipc, init, seed} (``method_args`` are merged key by key), and every
cell is validated before the first one runs. Coreset methods (``random``, ``herding``, ``k_center``,
``el2n`` …) learn nothing: they get one cell per (IPC, seed) whatever ``init`` lists, with
``iterations`` 0 and no ``max_seconds`` (so changing the learning budget does not recompute them).

Each cell runs :func:`datadistill.api.run_distill` into ``OUT/cells/<label>_ipc<k>_<init>_seed<s>``
and is reused on a later run when that folder holds ``metrics.json`` and a ``cell.json`` whose
resolved config equals the current one. Cells run seed by seed (all of seed 0 first), so an
interrupted grid still covers every method. Outputs in ``OUT`` (written atomically, refreshed after
every cell; the plots at the end): ``results.csv`` / ``results.json`` (one row per cell),
``summary.csv`` / ``summary.json`` (per label, IPC and init, all seeds' evaluation networks pooled),
``results.md`` (accuracy and time tables), ``accuracy_vs_ipc.png``, ``accuracy_vs_time.png`` and
``compare.yaml`` (the grid as read).

Units: accuracies in percent, times in wall-clock seconds; std is the population std (as
:class:`~datadistill.evaluation.EvalResult`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import statistics
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from datadistill.config import DistillConfig, read_yaml_mapping
from datadistill.errors import ConfigError, DatadistillError, error_context
from datadistill.io import atomic_write_text

TOP_KEYS = ("out", "base", "methods", "ipc", "init", "seeds")
GRID_KEYS = ("method", "ipc", "init", "seed")
ENTRY_KEYS = ("method", "label", "init", "by_ipc")
CONFIG_KEYS = tuple(f.name for f in fields(DistillConfig) if f.name not in GRID_KEYS)
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

CSV_COLUMNS = ("cell", "label", "method", "dataset", "ipc", "init", "seed", "model", "eval_model", "num_eval",
               "eval_epochs", "iterations", "distill_seconds", "eval_seconds", "accuracy_mean", "accuracy_std",
               "accuracies", "init_accuracy_mean", "status", "error")
SUMMARY_COLUMNS = ("label", "method", "dataset", "ipc", "init", "eval_model", "eval_epochs", "n", "accuracy_mean",
                   "accuracy_std", "distill_seconds", "iterations", "seeds_done", "seeds_total",
                   "init_accuracy_mean", "init_accuracy_std")

Progress = Callable[[str, str], None]


# ------------------------------------------------------------------------------------------ grid


@dataclass(frozen=True)
class MethodEntry:
    """One entry of ``methods:``.

    Attributes:
        label: row name in the tables and cell-folder prefix (default: the method name).
        method: registered method name.
        overrides: DistillConfig fields for this method (``method_args`` included).
        by_ipc: per-IPC overrides, applied after ``overrides``.
        fixed_init: the one init of this method's cells (the method's own name for coreset methods,
            or the entry's ``init``); None = one cell per init of the grid.
    """

    label: str
    method: str
    overrides: dict[str, Any]
    by_ipc: dict[int, dict[str, Any]]
    fixed_init: str | None


@dataclass(frozen=True)
class Cell:
    """One run of the grid.

    Attributes:
        name: ``<label>_ipc<k>_<init>_seed<s>``, the folder under ``OUT/cells``.
        label: the method entry's label.
        column_init: the grid init whose table column shows this cell (None: every init column, for
            methods with a fixed init).
        config: the fully resolved run configuration.
    """

    name: str
    label: str
    column_init: str | None
    config: DistillConfig

    def config_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON values (what ``cell.json`` records)."""
        return json.loads(json.dumps(self.config.as_dict(), sort_keys=True))


@dataclass
class ComparePlan:
    """A validated grid: what :func:`load_compare` returns.

    Attributes:
        out: output folder from the config (None when not given).
        entries: the method entries, in config order.
        ipcs, inits, seeds: the grid's lists, in config order.
        cells: every cell, in run order (seed, IPC, method entry, init).
        source: the grid as read (written to ``OUT/compare.yaml``).
    """

    out: str | None
    entries: list[MethodEntry]
    ipcs: list[int]
    inits: list[str]
    seeds: list[int]
    cells: list[Cell]
    source: dict[str, Any] = field(default_factory=dict)

    def ordered(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` (with ``cell``) sorted in table order: method entry, IPC, init, seed."""
        labels = {e.label: k for k, e in enumerate(self.entries)}
        return sorted(rows, key=lambda r: (labels.get(r["label"], len(labels)), r["ipc"], r["init"], r["seed"]))


def _int_list(data: Mapping[str, Any], key: str, default: list[int] | None, minimum: int) -> list[int]:
    value = data.get(key, default)
    if value is None:
        raise ConfigError(f"{key} is missing: expected a list of integers ≥ {minimum}, e.g. {key}: [1, 10]")
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(f"{key} = [] is empty: expected a non-empty list of integers ≥ {minimum}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ConfigError(f"{key} = {value!r}: {v!r} is not an integer ≥ {minimum}")
    dup = [v for v, n in Counter(values).items() if n > 1]
    if dup:
        raise ConfigError(f"{key} = {value!r} lists {dup[0]!r} twice: expected distinct values")
    return list(values)


def _str_list(data: Mapping[str, Any], key: str, default: list[str]) -> list[str]:
    value = data.get(key, default)
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(f"{key} = [] is empty: expected a non-empty list of names")
    for v in values:
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{key} = {value!r}: {v!r} is not a name")
    dup = [v for v, n in Counter(values).items() if n > 1]
    if dup:
        raise ConfigError(f"{key} = {value!r} lists {dup[0]!r} twice: expected distinct values")
    return list(values)


def _overrides(values: Any, where: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check a mapping of DistillConfig overrides (plus the ``extra`` keys) and return a copy."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} = {values!r} is not a mapping of settings")
    for key in values:
        if key in GRID_KEYS and key not in extra:
            raise ConfigError(f"{where}.{key} = {values[key]!r} is not allowed here: method, ipc, init and seed "
                              "come from the grid's methods, ipc, init and seeds lists")
        if key not in CONFIG_KEYS and key not in extra:
            raise ConfigError(f"unknown key {key!r} in {where}: expected one of "
                              f"{', '.join(sorted((*CONFIG_KEYS, *extra)))}")
    if values.get("method_args") is not None and not isinstance(values["method_args"], Mapping):
        raise ConfigError(f"{where}.method_args = {values['method_args']!r} is not a mapping of settings")
    return dict(values)


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers override earlier ones; ``method_args`` are merged key by key."""
    out: dict[str, Any] = {"method_args": {}}
    for layer in layers:
        for key, value in layer.items():
            if key == "method_args":
                out["method_args"] = {**out["method_args"], **(value or {})}
            else:
                out[key] = value
    return out


def _entry(raw: Any, k: int) -> MethodEntry:
    from datadistill.methods import METHODS

    where = f"methods[{k}]"
    if isinstance(raw, str):
        raw = {"method": raw}
    if not isinstance(raw, Mapping) or "method" not in raw:
        raise ConfigError(f"{where} = {raw!r}: expected a method name or a mapping with a 'method' key")
    values = _overrides(raw, where, extra=ENTRY_KEYS)
    method = values.pop("method")
    if not isinstance(method, str):
        raise ConfigError(f"{where}.method = {method!r} is not a method name")
    with error_context(where):
        cls = METHODS.get(method)
    label = values.pop("label", method)
    if not isinstance(label, str) or not LABEL_PATTERN.match(label):
        raise ConfigError(f"{where}.label = {label!r} is invalid: expected letters, digits, '_', '.', '+' or '-' "
                          "(it names the cell folders)")
    init = values.pop("init", None)
    if init is not None and (not isinstance(init, str) or not init):
        raise ConfigError(f"{where}.init = {init!r} is invalid: expected one init name (this method's cells then "
                          "ignore the grid's init list)")
    own_init = cls.run_overrides().get("init")  # a coreset method's init is its own selection
    if own_init is not None:
        if init is not None and init != own_init:
            raise ConfigError(f"{where}.init = {init!r} is invalid: {cls.name} is a coreset method, its init is "
                              f"its own selection ({own_init!r})")
        init = own_init
    by_ipc_raw = values.pop("by_ipc", None) or {}
    if not isinstance(by_ipc_raw, Mapping):
        raise ConfigError(f"{where}.by_ipc = {by_ipc_raw!r} is not a mapping of IPC to settings")
    by_ipc: dict[int, dict[str, Any]] = {}
    for ipc, settings in by_ipc_raw.items():
        if isinstance(ipc, bool) or not isinstance(ipc, int) or ipc < 1:
            raise ConfigError(f"{where}.by_ipc key {ipc!r} is invalid: expected an IPC (integer ≥ 1)")
        by_ipc[ipc] = _overrides(settings, f"{where}.by_ipc.{ipc}")
    return MethodEntry(label=label, method=cls.name, overrides=values, by_ipc=by_ipc, fixed_init=init)


def _check_cell(cell: Cell) -> None:
    """Everything that can be checked without data: names, settings, method arguments, input files."""
    from datadistill.data import check_dataset_name
    from datadistill.methods import METHODS
    from datadistill.models import MODELS

    config = cell.config
    cls = METHODS.get(config.method)
    check_dataset_name(config.dataset)
    MODELS.get(config.model)
    MODELS.get(config.resolved_eval_model)
    cls.config_from_run(config)
    cls.check_init(config.init)
    experts = config.method_args.get("experts")
    if experts and not (Path(experts) / "experts.json").is_file():
        raise ConfigError(f"method_args.experts = {experts!r} holds no experts.json: train the experts first "
                          f"(datadistill experts --out {experts})")
    scores = config.method_args.get("scores_file")
    if scores and not Path(scores).is_file():
        raise ConfigError(f"method_args.scores_file = {scores!r} does not exist: compute it first "
                          f"(datadistill scores --out {scores})")


def load_compare(source: str | os.PathLike | Mapping[str, Any]) -> ComparePlan:
    """Read and validate a comparison grid (see the module docstring for the format).

    Args:
        source: a YAML file path, or the mapping it would hold.

    Returns:
        The plan: method entries, lists and every cell's resolved config.

    Raises:
        ConfigError: the first problem found (unknown key, empty list, non-integer IPC or seed,
            duplicate label, an invalid setting of any cell, a missing experts or scores file),
            naming the key, the bad value and what is accepted; UnknownNameError (a ConfigError)
            for an unregistered method, model or dataset name.
    """
    from datadistill.methods import METHODS

    if isinstance(source, Mapping):
        data = dict(source)
    else:
        data = read_yaml_mapping(source)
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in the compare config: expected {', '.join(TOP_KEYS)}")
    out = data.get("out")
    if out is not None and (not isinstance(out, (str, os.PathLike)) or not str(out)):
        raise ConfigError(f"out = {out!r} is not a folder path")
    base = _overrides(data.get("base") or {}, "base")
    raw_methods = data.get("methods")
    if not isinstance(raw_methods, list) or not raw_methods:
        raise ConfigError(f"methods = {raw_methods!r}: expected a non-empty list of method names or mappings "
                          f"(registered methods: {', '.join(METHODS.names())})")
    entries = [_entry(raw, k) for k, raw in enumerate(raw_methods)]
    seen: dict[str, int] = {}
    for k, e in enumerate(entries):
        if e.label in seen:
            raise ConfigError(f"methods[{k}] label {e.label!r} is already used by methods[{seen[e.label]}]: "
                              "give each entry a distinct label")
        seen[e.label] = k
    ipcs = _int_list(data, "ipc", None, 1)
    inits = _str_list(data, "init", ["real"])
    seeds = _int_list(data, "seeds", [0], 0)

    cells: list[Cell] = []
    for seed in seeds:
        for ipc in ipcs:
            for e in entries:
                for init in [e.fixed_init] if e.fixed_init else inits:
                    name = f"{e.label}_ipc{ipc}_{init}_seed{seed}"
                    with error_context(f"cell {name}"):
                        values = _merge(base, e.overrides, e.by_ipc.get(ipc, {}))
                        values.update(method=e.method, ipc=ipc, init=init, seed=seed)
                        values.update(METHODS.get(e.method).run_overrides())  # coresets: no learning budget
                        cell = Cell(name, e.label, None if e.fixed_init else init, DistillConfig(**values))
                        _check_cell(cell)
                    cells.append(cell)
    source = {"out": None if out is None else str(out), "base": base, "methods": raw_methods, "ipc": ipcs,
              "init": inits, "seeds": seeds}
    return ComparePlan(out=None if out is None else str(out), entries=entries, ipcs=ipcs, inits=inits,
                       seeds=seeds, cells=cells, source=source)


# ------------------------------------------------------------------------------------------- run


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


def cell_row(cell: Cell, metrics: Mapping[str, Any] | None, status: str, error: str | None = None) -> dict[str, Any]:
    """One results row: the cell's settings, and its ``metrics.json`` figures when it ran.

    Args:
        cell: the cell.
        metrics: its ``metrics.json`` content (None for a failed cell).
        status: ``done`` (run now), ``reused`` (earlier results) or ``failed``.
        error: the failure's message.

    Returns:
        A mapping with cell, label, method, dataset, ipc, init, seed, model, eval_model, num_eval,
        eval_epochs, iterations (reached), distill_seconds, eval_seconds, accuracy_mean,
        accuracy_std, accuracies (percent; None without evaluation), init_accuracy_mean and
        init_accuracies (only when the initial set was evaluated), status, error.
    """
    c = cell.config
    m = metrics or {}
    row: dict[str, Any] = {
        "cell": cell.name, "label": cell.label, "method": c.method, "dataset": c.dataset, "ipc": c.ipc,
        "init": c.init, "seed": c.seed, "model": c.model, "eval_model": c.resolved_eval_model,
        "num_eval": c.num_eval, "eval_epochs": c.eval_epochs, "iterations": m.get("iterations"),
        "distill_seconds": m.get("distill_seconds"), "eval_seconds": m.get("eval_seconds"),
        "accuracy_mean": m.get("accuracy_mean"), "accuracy_std": m.get("accuracy_std"),
        "accuracies": m.get("accuracies"),
    }
    if m.get("init_accuracy_mean") is not None:
        row.update(init_accuracy_mean=m["init_accuracy_mean"], init_accuracies=m.get("init_accuracies"))
    row.update(status=status, error=error)
    return row


def _reusable(cell: Cell, cell_dir: Path) -> dict[str, Any] | None:
    """The cell's metrics when ``cell_dir`` holds results of exactly this config, else None."""
    try:
        recorded = json.loads((cell_dir / "cell.json").read_text(encoding="utf-8"))
        metrics = json.loads((cell_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or recorded.get("config") != cell.config_dict() or not isinstance(metrics, dict):
        return None
    return metrics


def run_compare(config: str | os.PathLike | Mapping[str, Any], out: str | os.PathLike | None = None,
                progress: Progress | None = None, run: bool = True) -> CompareResult:
    """Run (or reuse) every cell of a comparison grid and write its tables and plots.

    Cells run one after another with :func:`datadistill.api.run_distill`. A cell whose folder holds
    ``metrics.json`` and a ``cell.json`` recording the same resolved config is reused, not rerun.
    A cell raising a :class:`~datadistill.errors.DatadistillError` is recorded as failed (its
    message in the row's ``error``) and the grid goes on; other exceptions propagate. The tables are
    rewritten after every cell that runs and once at the end, so an interrupted grid leaves the
    finished cells tabulated.

    Args:
        config: the grid: a YAML file path or a mapping (format in the module docstring).
        out: output folder; overrides the config's ``out``.
        progress: called with ``(cell_name, status)``, status ``reused``, ``running``, then ``done``
            or ``failed``; ``skipped`` for a cell left unrun because ``run`` is False.
        run: False runs nothing: the finished cells are tabulated and plotted, the others are
            reported as not run yet (e.g. to look at a grid still running elsewhere, or one stopped
            part-way).

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
    out_dir = Path(out_value)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output path {out_dir} exists and is not a folder")
    atomic_write_text(out_dir / "compare.yaml", yaml.safe_dump(plan.source, sort_keys=False))
    notify = progress or (lambda name, status: None)
    rows: list[dict[str, Any]] = []
    for cell in plan.cells:
        cell_dir = out_dir / "cells" / cell.name
        metrics = _reusable(cell, cell_dir)
        if metrics is not None:
            rows.append(cell_row(cell, metrics, "reused"))
            notify(cell.name, "reused")
        elif not run:
            notify(cell.name, "skipped")
        else:
            notify(cell.name, "running")
            (cell_dir / "cell.json").unlink(missing_ok=True)  # no stale record while the folder changes
            try:
                api.run_distill(cell.config, cell_dir)
                metrics = json.loads((cell_dir / "metrics.json").read_text(encoding="utf-8"))
            except DatadistillError as exc:
                rows.append(cell_row(cell, None, "failed", str(exc)))
                notify(cell.name, "failed")
            else:
                record = {"cell": cell.name, "label": cell.label, "config": cell.config_dict()}
                atomic_write_text(cell_dir / "cell.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
                rows.append(cell_row(cell, metrics, "done"))
                notify(cell.name, "done")
            write_tables(plan, rows, out_dir)  # after every cell run, so an interrupted grid is tabulated
    write_tables(plan, rows, out_dir)
    rows = plan.ordered(rows)
    summary = summarize(plan, rows)
    write_plots(plan, summary, out_dir)
    return CompareResult(out=out_dir, rows=rows, summary=summary)


# ---------------------------------------------------------------------------------------- tables


def summarize(plan: ComparePlan, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate cell rows per (label, IPC, init), pooling the evaluation networks of all seeds.

    Args:
        plan: the grid (gives the order and the number of seeds asked for).
        rows: cell rows (:func:`cell_row`), any order; failed rows count as not done.

    Returns:
        One row per group in table order: label, method, dataset, ipc, init, eval_model,
        eval_epochs, n (evaluation networks pooled = seeds done × num_eval), accuracy_mean and
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
            "eval_model": first["eval_model"], "eval_epochs": first["eval_epochs"], "n": len(accs),
            "accuracy_mean": statistics.fmean(accs) if accs else None,
            "accuracy_std": statistics.pstdev(accs) if accs else None,
            "distill_seconds": statistics.fmean(seconds) if seconds else None,
            "iterations": statistics.fmean(iterations) if iterations else None,
            "seeds_done": len(done), "seeds_total": len(plan.seeds),
            "init_accuracy_mean": statistics.fmean(init_accs) if init_accs else None,
            "init_accuracy_std": statistics.pstdev(init_accs) if init_accs else None,
        })
    return out


def _csv_value(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key in ("accuracies", "init_accuracies"):
        return ";".join(f"{a:.4f}" for a in value)
    if isinstance(value, float):
        if key == "iterations":
            return f"{value:.1f}"
        return f"{value:.2f}" if key.endswith("seconds") else f"{value:.4f}"
    return str(value)


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(k, row.get(k)) for k in columns])
    return buf.getvalue()


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
        return "—"
    if group["seeds_done"] == 0:
        return "failed"
    text = value(group)
    if text is None:
        return "—"
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
    epochs = _describe({lb: c.eval_epochs for lb, c in cfg.items()})
    num_eval = {lb: c.num_eval for lb, c in cfg.items()}
    n = _describe({lb: n_seeds * k for lb, k in num_eval.items()})
    from datadistill.methods import METHODS

    coresets = [e.label for e in plan.entries if not METHODS.get(e.method).learns]
    fixed = [e for e in plan.entries if e.fixed_init and e.label not in coresets]
    header = "| method | " + " | ".join(f"IPC {ipc}" + (f", {init}" if init else "") for ipc, init in columns) + " |"
    rule = "|---|" + "---|" * len(columns)

    def table(value: Callable[[dict[str, Any]], str | None]) -> list[str]:
        lines = [header, rule]
        for label in labels:
            lines.append(f"| {label} | " + " | ".join(_table_cell(lookup.get((label, ipc, init)), value)
                                                       for ipc, init in columns) + " |")
        return lines

    def accuracy(g: dict[str, Any]) -> str | None:
        if g["accuracy_mean"] is None:
            return None
        return f"{g['accuracy_mean']:.2f} ± {g['accuracy_std']:.2f}"

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
             f"{epochs} epochs on the distilled set. {init_note}.", ""]
    lines += table(accuracy)
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
    to ``out_dir`` (atomically) from the cell rows so far.

    ``results.csv`` joins the accuracies with ``;``; its ``init_accuracy_mean`` column is present only
    when some cell evaluated its initial set.
    """
    out = Path(out_dir)
    rows = plan.ordered(rows)
    summary = summarize(plan, rows)
    columns = CSV_COLUMNS if any("init_accuracy_mean" in r for r in rows) else tuple(
        c for c in CSV_COLUMNS if c != "init_accuracy_mean")
    sum_columns = SUMMARY_COLUMNS if any(g["init_accuracy_mean"] is not None for g in summary) else SUMMARY_COLUMNS[:-2]
    atomic_write_text(out / "results.csv", _csv(rows, columns))
    atomic_write_text(out / "results.json", json.dumps(rows, indent=2) + "\n")
    atomic_write_text(out / "summary.csv", _csv(summary, sum_columns))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "results.md", render_markdown(plan, summary))


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


__all__ = ["Cell", "CompareResult", "ComparePlan", "MethodEntry", "cell_row", "load_compare", "render_markdown",
           "run_compare", "summarize", "write_plots", "write_tables"]
