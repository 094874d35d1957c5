"""Figures of a run as PNG files: the distillation loss, learning curves, accuracy against IPC and
against distillation time (``compare``), accuracy against learning step (``continual``) and against
bytes uploaded (``federated``). Each figure takes plain rows of numbers, not an experiment's files.

Drawn on :class:`matplotlib.figure.Figure` objects directly (no pyplot, no global state), so they work
under any backend and from threads. Every ``plot_*`` function writes its PNG atomically and returns the
path; the ``*_figure`` functions return the figure itself and :func:`png_bytes` renders one (the HTML
report embeds the PNGs without writing them to disk).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from datadistill.errors import ConfigError
from datadistill.fsutil import atomic_write_bytes

DPI = 100
SERIES_COLOURS = {"synthetic": "tab:blue", "whole_data": "tab:orange"}
_CYCLE = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
          "tab:gray", "tab:olive", "tab:cyan"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]


def series_colours(n: int) -> list:
    """``n`` distinct colours: the tab10 cycle up to 10 series, tab20 up to 20, else ``n`` samples of
    the continuous turbo map (a 12-method comparison would repeat tab10's colours)."""
    if n <= len(_CYCLE):
        return _CYCLE[:n]
    if n <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(n)]
    return [matplotlib.colormaps["turbo"](i / (n - 1)) for i in range(n)]


def png_bytes(fig: Figure) -> bytes:
    """The PNG encoding of ``fig``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _write(fig: Figure, path: str | os.PathLike) -> Path:
    return atomic_write_bytes(path, png_bytes(fig))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# --------------------------------------------------------------------------------------------- loss


def loss_curve_figure(loss_history: Sequence[Sequence[float]], title: str = "") -> Figure:
    """Iteration against loss; the y axis is logarithmic when every finite loss is positive.

    Raises:
        ConfigError: ``loss_history`` is empty or an entry is not an (iteration, loss) pair.
    """
    if not loss_history:
        raise ConfigError("loss history is empty: nothing to plot")
    its, losses = [], []
    for k, entry in enumerate(loss_history):
        if len(entry) != 2:
            raise ConfigError(f"loss history entry {k} is {entry!r}, expected an (iteration, loss) pair")
        its.append(float(entry[0]))
        losses.append(float(entry[1]) if entry[1] is not None else math.nan)
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(its, losses, color="tab:blue", lw=1.2, marker="o" if len(its) == 1 else None)
    finite = [v for v in losses if math.isfinite(v)]
    if finite and all(v > 0 for v in finite):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.grid(True, which="major", alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


def plot_loss_curve(loss_history: Sequence[Sequence[float]], path: str | os.PathLike, title: str = "") -> Path:
    """Write the loss curve of ``loss_history`` ((iteration, loss) pairs) to ``path`` (PNG)."""
    return _write(loss_curve_figure(loss_history, title), path)


# --------------------------------------------------------------------------------- learning curves


def _series(name: str, series: Any) -> tuple[list[float], list[dict[str, list[float]]]]:
    """(epochs, runs) of one curves.json series, checked."""
    if not isinstance(series, Mapping):
        raise ConfigError(f"learning curves series {name!r} is {type(series).__name__}, expected an object")
    epochs = series.get("epochs")
    runs = series.get("runs")
    if not epochs:
        raise ConfigError(f"learning curves series {name!r} has no epochs")
    if not runs:
        raise ConfigError(f"learning curves series {name!r} has no runs")
    for k, run in enumerate(runs):
        if not isinstance(run, Mapping) or not run.get("test_accuracy"):
            raise ConfigError(f"learning curves series {name!r} run {k} has no test_accuracy")
        for key in ("test_accuracy", "train_accuracy", "seconds"):
            if run.get(key) is not None and len(run[key]) != len(epochs):
                raise ConfigError(f"learning curves series {name!r} run {k}: {key} has {len(run[key])} values "
                                  f"for {len(epochs)} epochs")
    return [float(e) for e in epochs], list(runs)


def _band(ax, x: Sequence[float], runs: Sequence[Sequence[float]], colour: str, style: str, label: str) -> None:
    """Mean over ``runs`` as a line, min–max as a shaded band."""
    columns = list(zip(*runs))
    mean = [sum(c) / len(c) for c in columns]
    ax.plot(x, mean, color=colour, ls=style, lw=1.5, label=label, marker="o" if len(x) == 1 else None)
    if len(runs) > 1:
        ax.fill_between(x, [min(c) for c in columns], [max(c) for c in columns], color=colour,
                        alpha=0.2 if style == "-" else 0.1, lw=0)


def learning_curves_figure(curves: Mapping[str, Any]) -> Figure:
    """Test (solid) and train (dashed) accuracy against epoch, mean over runs with a min–max band, one
    colour per series; a second panel against training wall seconds when the runs record ``seconds``
    (cumulative seconds at the end of each listed epoch; the mean over runs is the x value).

    Args:
        curves: the content of ``curves.json``: ``{"synthetic": {"model", "epochs", "runs": [{"train_accuracy",
            "test_accuracy", "seconds"}]}, "whole_data": same or null}`` (accuracies in percent).

    Raises:
        ConfigError: no series, or a series without epochs or runs, or runs not matching the epochs.
    """
    if not isinstance(curves, Mapping):
        raise ConfigError(f"learning curves are {type(curves).__name__}, expected an object of series")
    # "models" (curves.json of `evaluate`) maps every architecture to its series; the first one is
    # "synthetic" already, so only the top-level series are drawn
    present = {name: s for name, s in curves.items() if s is not None and name != "models"}
    if not present:
        raise ConfigError("learning curves are empty: no series (synthetic, whole_data) to plot")
    checked = {name: _series(name, s) for name, s in present.items()}
    with_seconds = {name: v for name, v in checked.items() if all(r.get("seconds") for r in v[1])}
    fig = Figure(figsize=(11.0 if with_seconds else 6.4, 4.2), layout="constrained")
    axes = fig.subplots(1, 2 if with_seconds else 1, squeeze=False)[0]
    for i, (name, (epochs, runs)) in enumerate(checked.items()):
        colour = SERIES_COLOURS.get(name, _CYCLE[i % len(_CYCLE)])
        model = present[name].get("model")
        label = name.replace("_", " ") + (f" ({model})" if model else "")
        panels = [(axes[0], epochs)]
        if name in with_seconds:
            seconds = [sum(c) / len(c) for c in zip(*(r["seconds"] for r in runs))]
            panels.append((axes[1], seconds))
        for ax, x in panels:
            _band(ax, x, [r["test_accuracy"] for r in runs], colour, "-", f"{label}: test")
            train = [r["train_accuracy"] for r in runs if r.get("train_accuracy")]
            if len(train) == len(runs):
                _band(ax, x, train, colour, "--", f"{label}: train")
    axes[0].set_xlabel("epoch")
    axes[0].set_title("accuracy against epoch")
    if with_seconds:
        ax = axes[1]
        xs = [v for name in with_seconds for r in checked[name][1] for v in r["seconds"]]
        if all(v > 0 for v in xs) and max(xs) / min(xs) >= 50:
            ax.set_xscale("log")
        ax.set_xlabel("training wall time (s)")
        ax.set_title("accuracy against training time")
    for ax in axes:
        ax.set_ylabel("accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def plot_learning_curves(curves: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write :func:`learning_curves_figure` of ``curves`` (``curves.json``) to ``path`` (PNG)."""
    return _write(learning_curves_figure(curves), path)


# ------------------------------------------------------------------------------ accuracy summaries


def _rows(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], what: str) -> list[Mapping[str, Any]]:
    if not rows:
        raise ConfigError(f"{what}: the list of rows is empty, nothing to plot")
    for k, row in enumerate(rows):
        missing = [key for key in keys if row.get(key) is None]
        if missing:
            raise ConfigError(f"{what}: row {k} has no {missing[0]!r} (needs {', '.join(keys)})")
    return list(rows)


def _labels(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(r["label"]) for r in rows))


def _std(row: Mapping[str, Any]) -> float:
    std = row.get("accuracy_std")
    return float(std) if _finite(std) else 0.0


def accuracy_vs_ipc_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """One line with error bars (± std) per label, accuracy against IPC (log x with > 2 distinct IPCs).

    Raises:
        ConfigError: no rows, or a row without label, ipc or accuracy_mean.
    """
    rows = _rows(rows, ("label", "ipc", "accuracy_mean"), "accuracy against IPC")
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    labels = _labels(rows)
    for label, colour in zip(labels, series_colours(len(labels))):
        mine = sorted((r for r in rows if str(r["label"]) == label), key=lambda r: r["ipc"])
        ax.errorbar([r["ipc"] for r in mine], [r["accuracy_mean"] for r in mine], yerr=[_std(r) for r in mine],
                    color=colour, marker="o", capsize=3, lw=1.5, label=label)
    ipcs = sorted({r["ipc"] for r in rows})
    if len(ipcs) > 2:
        ax.set_xscale("log")
    ax.set_xticks(ipcs, [str(v) for v in ipcs])
    ax.minorticks_off()
    ax.set_xlabel("images per class (IPC)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_accuracy_vs_ipc(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write :func:`accuracy_vs_ipc_figure` of ``rows`` (``label``, ``ipc``, ``accuracy_mean``,
    ``accuracy_std``) to ``path`` (PNG)."""
    return _write(accuracy_vs_ipc_figure(rows), path)


def accuracy_vs_time_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Accuracy (± std error bars) against distillation seconds (log x): one colour per label, one
    marker per IPC. Zero seconds (nothing learned) use a symmetric-log axis instead.

    Raises:
        ConfigError: no rows, or a row without label, ipc, accuracy_mean or distill_seconds.
    """
    rows = _rows(rows, ("label", "ipc", "accuracy_mean", "distill_seconds"), "accuracy against time")
    labels = _labels(rows)
    ipcs = sorted({r["ipc"] for r in rows})
    colour = dict(zip(labels, series_colours(len(labels))))
    marker = {ipc: _MARKERS[i % len(_MARKERS)] for i, ipc in enumerate(ipcs)}
    fig = Figure(figsize=(7.6, 4.4), layout="constrained")  # legends to the right of the axes
    ax = fig.add_subplot()
    for r in rows:
        ax.errorbar([r["distill_seconds"]], [r["accuracy_mean"]], yerr=[_std(r)], color=colour[str(r["label"])],
                    marker=marker[r["ipc"]], ms=7, capsize=3, ls="none")
    seconds = [float(r["distill_seconds"]) for r in rows]
    if all(s > 0 for s in seconds):
        ax.set_xscale("log")
    else:
        positive = [s for s in seconds if s > 0]
        ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
    ax.set_xlabel("distillation time (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    # figure legends outside the axes (constrained layout makes room): none hides a point
    fig.legend(handles=[Line2D([], [], color=colour[lb], marker="o", ls="none", label=lb) for lb in labels],
               title="method", fontsize="small", loc="outside right upper")
    fig.legend(handles=[Line2D([], [], color="black", marker=marker[v], ls="none", label=str(v)) for v in ipcs],
               title="IPC", fontsize="small", loc="outside right lower")
    return fig


def plot_accuracy_vs_time(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write :func:`accuracy_vs_time_figure` of ``rows`` (``label``, ``ipc``, ``accuracy_mean``,
    ``accuracy_std``, ``distill_seconds``) to ``path`` (PNG)."""
    return _write(accuracy_vs_time_figure(rows), path)


# ------------------------------------------------------------------------------------ applications


def accuracy_vs_step_figure(series: Mapping[str, Sequence[Mapping[str, Any]]], steps: int, classes_per_step: int,
                            title: str, legend_title: str = "memory") -> Figure:
    """Accuracy against learning step, a line per series (mean) with a ± std band; x ticks
    ``step (classes seen)`` for steps 1 … ``steps``.

    Args:
        series: name → rows with ``step`` (1-based), ``accuracy_mean`` and ``accuracy_std`` (%), in
            step order. Colours follow the mapping's order; a series without rows keeps its colour
            and draws nothing.
        steps: the number of steps (x ticks).
        classes_per_step: classes added per step (tick ``t`` reads ``t`` and ``(t · classes_per_step)``).
        title: the axes title; legend_title: the legend's title.

    Returns:
        The figure (attached to an Agg canvas; no pyplot).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ticks = list(range(1, steps + 1))
    for name, colour in zip(series, series_colours(len(series))):
        rows = series[name]
        if not rows:
            continue
        x = [r["step"] for r in rows]
        mean = [r["accuracy_mean"] for r in rows]
        std = [r["accuracy_std"] for r in rows]
        ax.plot(x, mean, color=colour, marker="o", lw=1.5, label=name)
        ax.fill_between(x, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)], color=colour,
                        alpha=0.2, lw=0)
    ax.set_xticks(ticks, [f"{t}\n({t * classes_per_step})" for t in ticks])
    ax.set_xlabel("step (classes seen)")
    ax.set_ylabel("test accuracy on seen classes (%)")
    ax.set_title(title, fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", title=legend_title)
    return fig


def accuracy_vs_bytes_figure(rounds: Sequence[Mapping[str, Any]], one_shot_bytes: float, one_shot_accuracy: float,
                             *, title: str, rounds_label: str, one_shot_label: str) -> Figure:
    """Test accuracy (%) against cumulative bytes uploaded (log x, labelled in MB at 1, 2 and 5 × 10^k
    bytes): a line through the ``rounds`` (rows with ``cumulative_bytes_uploaded`` and ``accuracy``,
    in round order) and one star at (``one_shot_bytes``, ``one_shot_accuracy``) with a dotted
    horizontal line at its accuracy. Returns the figure (no pyplot)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(6.8, 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([r["cumulative_bytes_uploaded"] for r in rounds], [r["accuracy"] for r in rounds], "o-",
            color="tab:orange", ms=4, label=rounds_label)
    ax.plot([one_shot_bytes], [one_shot_accuracy], "*", color="tab:blue", ms=14, label=one_shot_label)
    ax.axhline(one_shot_accuracy, color="tab:blue", ls=":", lw=1)
    ax.set_xscale("log")
    # labels at 1, 2 and 5 × 10^k bytes, written in MB (matplotlib's default minor labels overlap)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("cumulative bytes uploaded by the clients (MB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title)
    return fig


def synthetic_vs_real_figure(synthetic: Sequence[float], real: Sequence[float], names: Sequence[str],
                             synthetic_best: int, real_best: int, title: str) -> Figure:
    """A proxy's ranking against the real one (``datadistill nas``): candidate i at
    (``synthetic[i]``, ``real[i]``), validation accuracies in percent; the synthetic-best candidate
    marked with a star, the real best with a ring."""
    fig = Figure(figsize=(6.4, 5.0), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(synthetic, real, s=22, color="tab:blue", alpha=0.7, label="candidate")
    sb, rb = synthetic_best, real_best
    ax.scatter([synthetic[sb]], [real[sb]], s=160, marker="*", color="tab:orange", zorder=3,
               label=f"synthetic-best: {names[sb]}")
    ax.scatter([synthetic[rb]], [real[rb]], s=140, facecolors="none", edgecolors="tab:red", linewidths=1.8, zorder=4,
               label=f"real best: {names[rb]}")
    ax.set_xlabel("validation accuracy after training on the synthetic set (%)")
    ax.set_ylabel("validation accuracy after the real proxy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return fig
