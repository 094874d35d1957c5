"""The DD-Ranking scores of a saved set (``evaluate --scores``, ``compare`` with ``scores:``): the
whole-data baseline that gives Acc(real, hard) — read, or trained once and kept — the teacher whose
logits are the soft labels, and the scores themselves
(:func:`datadistill.evaluation.ranking_protocol.score_synthetic_set`).

A baseline folder is what ``datadistill baseline --out DIR`` writes: ``baseline.json`` (accuracy in
percent, converted to a fraction here) and ``model.safetensors`` (the trained network, the default
teacher). Model files are read with safetensors: nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datadistill.data import SplitDataset
from datadistill.errors import ConfigError, error_context
from datadistill.evaluation import EvalSettings
from datadistill.evaluation.ranking_data import Teacher
from datadistill.evaluation.ranking_protocol import (RankingPlan, RankingResult, RankingSettings, RankingStep,
                                                     check_ranking_data, plan_ranking, score_synthetic_set)
from datadistill.fsutil import check_output_folder
from datadistill.io import SyntheticSet

log = logging.getLogger("datadistill")

BASELINE_JSON = "baseline.json"
BASELINE_MODEL = "model.safetensors"
"""The baseline network ``datadistill baseline`` saves beside ``baseline.json`` (the default teacher)."""


def baseline_json(path: str | os.PathLike) -> Path:
    """``path/baseline.json`` for a folder (or a path that does not exist yet), else ``path`` itself."""
    p = Path(path)
    return p if p.suffix == ".json" else p / BASELINE_JSON


def read_baseline(path: str | os.PathLike) -> dict[str, Any]:
    """A ``baseline.json`` (or its folder) written by ``datadistill baseline``, as a dict; ``folder``
    is added (where ``model.safetensors`` would be).

    Raises:
        ConfigError: a missing file, invalid JSON, or not a baseline (keys missing).
    """
    p = baseline_json(path)
    if not p.is_file():
        raise ConfigError(f"baseline file {p} does not exist: expected a baseline.json written by `datadistill baseline`")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"baseline file {p} is not valid JSON ({exc})") from None
    need = ("dataset", "model", "accuracy", "train_seconds", "train_flops")
    if not isinstance(data, dict) or any(k not in data for k in need):
        raise ConfigError(f"baseline file {p} is not a datadistill baseline: expected the keys {', '.join(need)}")
    return {**data, "folder": str(p.parent)}


def split_baselines(paths: Sequence[str | os.PathLike], scores: bool) -> tuple[list[dict[str, Any]], Path | None]:
    """The baselines read from ``paths``, and (with ``scores``) the one folder given that holds none
    yet, where the scores' baseline is trained and kept (checked writable now).

    Raises:
        ConfigError: an unreadable baseline; a missing one without ``scores``; two missing folders.
    """
    read, new = [], None
    for path in paths:
        if scores and not baseline_json(path).exists():
            if new is not None:
                raise ConfigError(f"--baseline {path} and {new} hold no baseline.json: give one new folder at most "
                                  "(the scores' whole-data baseline is trained there)")
            new = check_output_folder(path, "baseline folder")
            continue
        read.append(read_baseline(path))
    return read, new


def scores_baseline(baselines: Sequence[dict[str, Any]], model: str, dataset: str | None) -> dict[str, Any] | None:
    """The baseline of ``model`` (and ``dataset``) among ``baselines``, or None."""
    for base in baselines:
        if base.get("model") == model and (dataset is None or base.get("dataset") == dataset):
            return base
    return None


def train_scores_baseline(dataset: str, folder: Path, model: str, *, data_root: str | None, device: str,
                          image_size: int | None = None) -> dict[str, Any]:
    """Train the whole-data baseline of ``model`` (``datadistill baseline``'s defaults) into ``folder``
    and return its ``baseline.json`` content (with ``folder``), on every rank.

    Under torchrun it is trained once, as one unit (:func:`datadistill.units.run_units`: the rank that
    claims it trains, the others wait without a time limit), into ``folder``, which every rank must
    see, as they read it then.

    Raises:
        ConfigError: under torchrun, a ``folder`` some rank does not see (before any training).
    """
    from datadistill.api.runs import run_baseline
    from datadistill.units import check_shared_folder, run_units

    check_shared_folder(folder, "baseline folder")

    def train(_: int) -> None:
        log.info("training the whole-data baseline of %s on %s into %s (for the scores)", model, dataset, folder)
        run_baseline(dataset, folder, device=device, data_root=data_root, image_size=image_size, model=model)

    run_units(1, train)
    return read_baseline(folder)


def load_teacher(path: str | os.PathLike, syn: SyntheticSet) -> Teacher:
    """The network of a model file (``datadistill baseline``'s ``model.safetensors``, or one saved by
    ``evaluate --save-models``), checked against the set: same dataset, channels, image size, classes.

    Raises:
        ModelFileError: a missing, corrupt or foreign file. ConfigError: a network of another dataset
            or shape.
    """
    from datadistill.io.model_file import load_model
    from datadistill.training import num_classes

    with error_context("teacher"):
        net, meta, zca = load_model(path)
    want = {"dataset": syn.metadata.get("dataset"), "channels": int(syn.images.shape[1]),
            "image_size": [int(s) for s in syn.images.shape[2:]], "num_classes": num_classes(syn.labels, syn.metadata)}
    for key, value in want.items():
        if value is not None and meta.get(key) != value:
            raise ConfigError(f"teacher {path} has {key} = {meta.get(key)!r}, the synthetic set {value!r}: expected "
                              "a network trained on the set's dataset")
    return Teacher(net, zca, meta, str(path))


def teacher_path(teacher: str | os.PathLike | None, baseline: dict[str, Any] | None) -> Path | None:
    """``teacher``, else the scores' baseline's ``model.safetensors`` when it exists, else None."""
    if teacher is not None:
        return Path(teacher)
    if baseline is not None and baseline.get("folder"):
        candidate = Path(baseline["folder"]) / BASELINE_MODEL
        return candidate if candidate.is_file() else None
    return None


def plan_scores(syn: SyntheticSet, settings: EvalSettings, ranking: RankingSettings, *, has_teacher: bool,
                data: SplitDataset | None = None, seed: int = 0) -> RankingPlan:
    """What the scores will train (:func:`plan_ranking`), checked before any network is trained:
    with ``data``, also the shapes and the validation split (:func:`check_ranking_data`)."""
    plan = plan_ranking(syn, settings, ranking, has_teacher)
    if data is not None:
        check_ranking_data(syn, data.train, data.test, ranking, seed)
    return plan


def describe_plan(plan: RankingPlan, ranking: RankingSettings, settings: EvalSettings, extra: int = 0,
                  baseline: bool = False) -> str:
    """One line: the number of network trainings and what they are (printed before the work)."""
    searched = [n for n, src in plan.lr_source.items() if src == "grid"]
    parts = [f"{plan.selection_trainings} to choose the lr ({len(searched)} protocols × {len(ranking.lr_grid)} lrs × "
             f"{ranking.select_networks} network{'s' if ranking.select_networks > 1 else ''} × "
             f"{ranking.select_epochs or settings.epochs} epochs)",
             f"{plan.final_trainings} reported ({len(plan.trainings)} protocols × K = {settings.num_eval} runs × "
             f"{settings.epochs} epochs)"]
    if extra:
        parts.append(f"{extra} of the usual evaluation")
    line = f"scores ({', '.join(plan.modes)} labels): {plan.total + extra} network trainings: " + ", ".join(parts)
    return line + ("; and first the whole-data baseline" if baseline else "")


def run_ranking(syn: SyntheticSet, data: SplitDataset, settings: EvalSettings, ranking: RankingSettings, *,
                baseline: dict[str, Any], teacher: str | os.PathLike | Teacher | None, device, seed: int = 0,
                progress: Callable[[RankingStep], None] | None = None) -> RankingResult:
    """Score ``syn`` against the real set ``data`` (:func:`score_synthetic_set`); Acc(real, hard) is
    the baseline's test accuracy (percent in ``baseline.json``) as a fraction. ``teacher``: a model
    file (read here, :func:`load_teacher`) or a :class:`Teacher` already read.

    Raises:
        ConfigError: a baseline of another model or dataset, a teacher that does not fit, bad settings.
    """
    dataset = syn.metadata.get("dataset")
    if baseline.get("model") != settings.model or (dataset and baseline.get("dataset") != dataset):
        raise ConfigError(f"the baseline is {baseline.get('model')!r} on {baseline.get('dataset')!r}; the scores need "
                          f"{settings.model!r} on {dataset!r} (HLR compares the same architecture)")
    net = load_teacher(teacher, syn) if teacher is not None and not isinstance(teacher, Teacher) else teacher
    result = score_synthetic_set(syn, data.train, data.test, settings, ranking, device,
                                 real_hard_accuracy=float(baseline["accuracy"]) / 100.0, teacher=net, seed=seed,
                                 progress=progress)
    result.settings["baseline"] = {k: baseline.get(k) for k in ("dataset", "model", "epochs", "accuracy", "folder")}
    return result


__all__ = ["BASELINE_JSON", "BASELINE_MODEL", "baseline_json", "describe_plan", "load_teacher", "plan_scores",
           "read_baseline", "run_ranking", "scores_baseline", "split_baselines", "teacher_path",
           "train_scores_baseline"]
