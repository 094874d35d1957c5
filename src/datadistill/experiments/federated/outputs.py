"""The comparison of a federated run and its files, rendered from the ``federated.json`` content (the
summary): the verdict (:func:`compare_runs`), ``federated.md``, ``federated.csv`` (FedAvg per round),
``federated.png`` (accuracy against cumulative bytes uploaded,
:func:`datadistill.io.plots.accuracy_vs_bytes_figure`) and ``fedd3_synthetic.safetensors``, written
together by :func:`write_outputs` (:func:`datadistill.experiments.outputs.write_bundle`: rendered
first, then each file atomically). The module registers the run's section of ``datadistill report``
(:data:`SECTION`).

Units: bytes (B; MB = 10⁶ B in the text), accuracies in percent, wall-clock seconds. The CSV writes
floats exactly (:func:`~datadistill.experiments.tables.exact_floats`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datadistill.experiments.outputs import write_bundle
from datadistill.experiments.tables import exact_floats, md_table
from datadistill.experiments.tables import render_csv as csv_table
from datadistill.io.report import register_report_section

VERDICT = "one-shot FedD3 uploads fewer bytes than FedAvg reaching the same accuracy"
REPORT_TITLE = "Federated learning, FedD3 against FedAvg (datadistill federated)"
SECTION = register_report_section("federated", REPORT_TITLE)  # its section of `datadistill report`
CSV_COLUMNS = ("round", "clients", "accuracy", "bytes_uploaded", "cumulative_bytes_uploaded", "bytes_downloaded",
               "cumulative_bytes_downloaded", "round_seconds", "cumulative_seconds")
SYNTHETIC_FILE = "fedd3_synthetic.safetensors"
FILES = (SYNTHETIC_FILE, "federated.png", "federated.csv", "federated.md", "federated.json")


def compare_runs(fedd3: Mapping[str, Any], fedavg: Mapping[str, Any]) -> dict[str, Any]:
    """The comparison: FedAvg's first round reaching FedD3's accuracy, its cumulative bytes then,
    and the verdict ``VERDICT`` (True / False, or None when FedAvg never reached the accuracy within
    its rounds although those rounds cost fewer bytes than FedD3's upload: undetermined)."""
    target = float(fedd3["accuracy_mean"])
    rows = fedavg["rows"]
    reached = next((r for r in rows if r["accuracy"] >= target), None)
    total = rows[-1]["cumulative_bytes_uploaded"]
    d3 = int(fedd3["bytes_total"])
    if reached is not None:
        value = d3 < reached["cumulative_bytes_uploaded"]
        why = (f"FedD3 uploaded {d3:,} B for {target:.2f} %; FedAvg reached ≥ {target:.2f} % after round "
               f"{reached['round']} ({reached['accuracy']:.2f} %) with {reached['cumulative_bytes_uploaded']:,} B")
    elif d3 < total:
        value = True
        why = (f"FedD3 uploaded {d3:,} B for {target:.2f} %; FedAvg never reached {target:.2f} % within "
               f"{len(rows)} rounds (best {max(r['accuracy'] for r in rows):.2f} %) although it uploaded {total:,} B")
    else:
        value = None
        why = (f"undetermined: FedAvg never reached {target:.2f} % within {len(rows)} rounds, which cost only "
               f"{total:,} B against FedD3's {d3:,} B; more rounds would decide")
    return {"statement": VERDICT, "value": value, "reason": why, "target_accuracy": target,
            "fedavg_round_reaching": reached["round"] if reached else None,
            "fedavg_bytes_to_reach": reached["cumulative_bytes_uploaded"] if reached else None,
            "fedd3_bytes_total": d3, "fedavg_bytes_total": total}


def _mb(b: int | None) -> str:
    return "—" if b is None else f"{b:,} B ({b / 1e6:.3g} MB)"



def render_markdown(summary: Mapping[str, Any]) -> str:
    """``federated.md``: the setting, the comparison table, the verdict and FedAvg per round."""
    cfg, d3, avg, cmp = summary["config"], summary["fedd3"], summary["fedavg"], summary["comparison"]
    rows = avg["rows"]
    per_client = d3["bytes_per_client"]
    reach = ("never within {} rounds".format(len(rows)) if cmp["fedavg_bytes_to_reach"] is None else
             f"{_mb(cmp['fedavg_bytes_to_reach'])}, round {cmp['fedavg_round_reaching']}")
    verdict = {True: "true", False: "false", None: "undetermined"}[cmp["value"]]
    comparison = [
        ["test accuracy (%)", f"{d3['accuracy_mean']:.2f}",
         f"{rows[-1]['accuracy']:.2f} after round {len(rows)} (best {max(r['accuracy'] for r in rows):.2f})"],
        ["rounds", "1", len(rows)],
        ["bytes uploaded per client",
         f"{min(per_client):,}–{max(per_client):,} B (mean {sum(per_client) / len(per_client):,.0f})",
         f"{avg['bytes_per_client_round']:,} B per round"],
        ["total bytes uploaded", _mb(d3["bytes_total"]), _mb(rows[-1]["cumulative_bytes_uploaded"])],
        ["bytes to reach FedD3's accuracy", "—", reach],
        ["safetensors files (cross-check)", _mb(d3["safetensors_bytes_total"]), "—"],
        ["wall time (s)", f"{d3['wall_seconds']:.1f} (distillation {d3['distill_wall_seconds']:.1f}, server "
                          f"{d3['server_seconds']:.1f})", f"{avg['wall_seconds']:.1f}"],
    ]
    per_round = [[r["round"], len(r["clients"]), f"{r['accuracy']:.2f}", f"{r['bytes_uploaded']:,}",
                  f"{r['cumulative_bytes_uploaded']:,}", f"{r['round_seconds']:.1f}"] for r in rows]
    lines = [
        f"# FedD3 vs FedAvg: {summary['dataset']['name']}, {cfg['clients']} clients, partition {cfg['partition']}",
        "",
        f"Model {cfg['model']}. FedD3: every client distils its images once with {cfg['client_method']} "
        f"(IPC {cfg['client_ipc']}, {cfg['client_iterations']} iterations) and uploads the set; the server trains "
        f"{cfg['server_num_eval']} network(s) on the union ({d3['synthetic_images']} images) for "
        f"{cfg['server_epochs']} epochs (lr {cfg['server_lr']:g}, batch {cfg['server_batch']}, momentum "
        f"{cfg['server_momentum']:g}). FedAvg: {len(rows)} rounds, {cfg['local_epochs']} local epoch(s), client "
        f"fraction {cfg['client_fraction']:g}, SGD lr {cfg['local_lr']:g}, batch {cfg['local_batch']} "
        "(McMahan et al.). Bytes are the exact tensor payloads the clients upload.",
        "",
        *md_table(["", "FedD3 (one-shot)", "FedAvg"], comparison),
        "",
        f"**Verdict** — \"{cmp['statement']}\": **{verdict}**. {cmp['reason']}.",
        "",
        "## FedAvg per round",
        "",
        *md_table(["round", "clients", "accuracy (%)", "uploaded (B)", "cumulative uploaded (B)", "seconds"],
                  per_round, align="r"),
    ]
    return "\n".join(lines) + "\n"


def render_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """``federated.csv``: one line per FedAvg round (columns :data:`CSV_COLUMNS`; ``clients`` = the
    selected client ids joined by ``;``; floats as ``repr``)."""
    return csv_table(rows, CSV_COLUMNS, exact_floats)


def comparison_figure(summary: Mapping[str, Any]):
    """Test accuracy against cumulative bytes uploaded (log x): FedAvg after each round, FedD3's single
    point (:func:`datadistill.io.plots.accuracy_vs_bytes_figure`)."""
    from datadistill.io.plots import accuracy_vs_bytes_figure

    d3, rows, cfg = summary["fedd3"], summary["fedavg"]["rows"], summary["config"]
    return accuracy_vs_bytes_figure(rows, d3["bytes_total"], d3["accuracy_mean"],
                                    title=f"{summary['dataset']['name']}, {cfg['clients']} clients, {cfg['partition']}",
                                    rounds_label=f"FedAvg ({len(rows)} rounds)", one_shot_label="FedD3 (one shot)")


def write_outputs(summary: Mapping[str, Any], union, out: str | os.PathLike) -> list[Path]:
    """Write :data:`FILES` to ``out`` (created if needed): the FedD3 ``union`` (a
    :class:`~datadistill.io.SyntheticSet`) as ``fedd3_synthetic.safetensors``, the figure, the CSV,
    the markdown and ``summary`` as ``federated.json``; every file rendered first, then each written
    atomically. Returns the paths.

    Raises:
        ConfigError: ``out`` exists and is not a folder.
    """
    from datadistill.io import save_synthetic_set

    return write_bundle(out, {SYNTHETIC_FILE: lambda path: save_synthetic_set(union, path),
                              "federated.png": comparison_figure(summary),
                              "federated.csv": render_csv(summary["fedavg"]["rows"]),
                              "federated.md": render_markdown(summary), "federated.json": summary})


__all__ = ["CSV_COLUMNS", "FILES", "REPORT_TITLE", "SYNTHETIC_FILE", "VERDICT", "compare_runs", "comparison_figure",
           "render_csv", "render_markdown", "SECTION", "write_outputs"]
