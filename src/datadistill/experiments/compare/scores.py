"""The DD-Ranking scores of a comparison grid's cells (``scores:`` in a compare config): each finished
cell's ``synthetic.safetensors`` scored under the cell's evaluation protocol
(:func:`datadistill.api.ranking.run_ranking`), kept in the cell's ``ranking_scores.json`` with the
settings it was computed with, and reused while they stay the same (turning ``scores`` on, or
changing its settings, reruns no distillation).

The whole-data baseline of each evaluation model: ``scores.baseline`` (a baseline folder, or a new
folder where it is trained), else ``OUT/baselines/<eval model>``, trained once and kept for every cell.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datadistill.experiments.compare.settings import SCORE_PATHS, Cell
from datadistill.fsutil import atomic_write_text
from datadistill.record import plain

log = logging.getLogger("datadistill")
SCORES_FILE = "ranking_scores.json"
BASELINES_FOLDER = "baselines"
ROW_KEYS = ("hlr", "ior", "lrs", "ars")


def baseline_folder(cell: Cell, scores: Mapping[str, Any], out_dir: Path) -> Path:
    """Where the whole-data baseline of a cell's scores is (or is trained): ``scores.baseline``, else
    ``OUT/baselines/<eval model>``."""
    given = scores.get("baseline")
    return Path(given) if given else out_dir / BASELINES_FOLDER / cell.config.resolved_eval_model


def cell_baseline(cell: Cell, cell_dir: Path, scores: Mapping[str, Any], out_dir: Path) -> dict[str, Any]:
    """The baseline a finished cell's scores use (trained now when missing), at its set's dataset and
    image size."""
    from datadistill.io import load_synthetic_set

    syn = load_synthetic_set(cell_dir / "synthetic.safetensors")
    return _baseline(cell, scores, out_dir, syn.metadata["dataset"], int(syn.images.shape[2]))


def _baseline(cell: Cell, scores: Mapping[str, Any], out_dir: Path, dataset: str, side: int) -> dict[str, Any]:
    from datadistill.api import ranking as rk

    model = cell.config.resolved_eval_model
    folder = baseline_folder(cell, scores, out_dir)
    if rk.baseline_json(folder).is_file():
        return rk.read_baseline(folder)
    return rk.train_scores_baseline(dataset, folder, model, data_root=cell.config.data_root, device=cell.config.device,
                                    image_size=side)


def score_cell(cell: Cell, cell_dir: Path, scores: Mapping[str, Any], out_dir: Path,
               compute: bool = True) -> dict[str, Any] | None:
    """The ``ranking_scores`` of a finished cell: read from ``cell_dir/ranking_scores.json`` when it was
    computed with the same settings, else computed now and written there.

    Args:
        compute: False (``compare --no-run``): only read them; None when they are missing or stale.

    Returns:
        :meth:`~datadistill.evaluation.ranking_protocol.RankingResult.as_dict`, or None.

    Raises:
        DatadistillError: an unreadable set, dataset, baseline or teacher, or bad settings.
    """
    from datadistill import api
    from datadistill.api import ranking as rk
    from datadistill.data import load_dataset_of
    from datadistill.evaluation.ranking_protocol import RankingSettings
    from datadistill.io import load_synthetic_set
    from datadistill.runtime import select_device

    config = cell.config
    if not compute:
        stored = _stored(cell_dir / SCORES_FILE)
        return stored.get("result") if stored else None
    syn = load_synthetic_set(cell_dir / "synthetic.safetensors")
    data = load_dataset_of(syn.metadata, config.data_root)
    settings = api.eval_settings(config, data.spec)
    ranking = RankingSettings(**{k: v for k, v in scores.items() if k not in SCORE_PATHS})
    baseline = _baseline(cell, scores, out_dir, syn.metadata["dataset"], data.spec.image_size[0])
    teacher = rk.teacher_path(scores.get("teacher"), baseline)
    key = plain({"ranking": ranking.as_dict(), "protocol": settings.as_dict(), "seed": config.seed,
                 "baseline": {k: baseline.get(k) for k in ("folder", "model", "accuracy", "epochs")},
                 "teacher": None if teacher is None else str(teacher)})
    path = cell_dir / SCORES_FILE
    stored = _stored(path)
    if stored and stored.get("key") == key:
        return stored["result"]
    log.info("cell %s: computing the ranking scores", cell.name)
    result = rk.run_ranking(syn, data, settings, ranking, baseline=baseline, teacher=teacher,
                            device=select_device(config.device), seed=config.seed).as_dict()
    atomic_write_text(path, json.dumps({"key": key, "result": result}, indent=2) + "\n")
    return result


def _stored(path: Path) -> dict[str, Any] | None:
    """A cell's ``ranking_scores.json`` (``key``, ``result``), or None when missing or unreadable."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return stored if isinstance(stored, dict) and isinstance(stored.get("result"), dict) else None


def score_fields(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """A results row's score columns from a cell's ``ranking_scores``, in its primary label mode (the
    set's own labels): ``score_labels``, ``<s>_mean``, ``<s>_std`` and the per-run ``<s>_runs`` for
    HLR, IOR, LRS and ARS (fractions; lists for pooling seeds)."""
    if not result:
        return {}
    mode = result.get("primary_mode") or result["modes"][0]
    s = result["scores"][mode]
    out: dict[str, Any] = {"score_labels": mode}
    for k in ROW_KEYS:
        out.update({f"{k}_mean": s[f"{k}_mean"], f"{k}_std": s[f"{k}_std"], f"{k}_runs": s[k]})
    return out


__all__ = ["BASELINES_FOLDER", "ROW_KEYS", "SCORES_FILE", "baseline_folder", "cell_baseline", "score_cell",
           "score_fields"]
