"""The protocol of ``datadistill nas`` (see :mod:`datadistill.experiments.nas`): every candidate
trained on the synthetic set and by the real proxy, in worker processes, ranked on a validation
split carved from the real training set.

Resume: with an output folder, every finished training (a candidate's synthetic-side evaluation, its
real proxy) is recorded in ``nas_run.json`` (:class:`datadistill.record.RunRecord`, kept with the
results) as it finishes; a rerun into the same folder with the same settings trains only the rest
and writes the same results (each candidate seeds itself, :func:`candidate_seed`), wall-clock
seconds aside; a rerun with other settings is refused, naming the keys that differ."""

from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from datadistill.data import LabelledImages, RealSet, SplitDataset
from datadistill.errors import ConfigError, DatadistillError
from datadistill.evaluation import EvalSettings, evaluate_synthetic_set
from datadistill.experiments.nas.report import write_outputs
from datadistill.experiments.seeds import derived_seed
from datadistill.experiments.nas.settings import NASSettings, RealProxySettings
from datadistill.experiments.nas.space import Candidate, SearchSpace, load_search_space
from datadistill.experiments.nas.summary import TOP_K, summarise
from datadistill.fsutil import check_output_folder
from datadistill.io import SyntheticSet, load_synthetic_set
from datadistill.models import build_model, default_eval_lr
from datadistill.distributed import broadcast_object, world
from datadistill.record import RunRecord
from datadistill.runtime import make_generator, select_device
from datadistill.training import accuracy, fit_network

log = logging.getLogger("datadistill")

Progress = Callable[[str, int, int, dict[str, Any]], None]
RECORD_FILE = "nas_run.json"


def candidate_seed(seed: int, index: int) -> int:
    """The seed of candidate ``index`` in a search with seed ``seed``: the first 32-bit word of
    ``numpy.random.SeedSequence([seed, index])`` (independent of the order candidates run in;
    :func:`datadistill.experiments.seeds.derived_seed`, the whole word)."""
    return derived_seed(seed, index, bits=32)


def _timed(fn: Callable[..., dict[str, Any]], kwargs: dict[str, Any]) -> tuple[float, float, dict[str, Any]]:
    """Worker task wrapper: ``(start, end, fn(**kwargs))`` with wall-clock timestamps
    (``time.time()``, comparable across the worker processes of one machine)."""
    start = time.time()
    result = fn(**kwargs)
    return start, time.time(), result


def _synthetic_task(syn: SyntheticSet, val: LabelledImages, test: LabelledImages, settings: EvalSettings,
                    seed: int, device: str) -> dict[str, Any]:
    """Worker task: the evaluation protocol on ``syn`` for one candidate (``settings.model_args``),
    accuracies on ``val`` (ranking) and ``test`` (reporting). The caller's RNG state is kept."""
    dev = torch.device(device)
    test_accs: list[float] = []
    with torch.random.fork_rng(devices=[]):
        result = evaluate_synthetic_set(syn, val, settings, dev, seed=seed,
                                        on_model=lambda k, net: test_accs.append(accuracy(net, test, dev)))
    return {"synthetic_val_accuracy": result.mean, "synthetic_val_accuracies": result.accuracies,
            "synthetic_test_accuracy": statistics.fmean(test_accs), "synthetic_test_accuracies": test_accs,
            "synthetic_train_seconds": result.train_seconds, "synthetic_vectorised": result.vectorised,
            "synthetic_lr": result.lr}


def _real_task(family: str, model_args: dict[str, Any], shape: tuple[int, int, int], num_classes: int,
               train: LabelledImages, val: LabelledImages, test: LabelledImages, settings: RealProxySettings,
               seed: int, device: str) -> dict[str, Any]:
    """Worker task: the real proxy for one candidate. Initialisation under ``torch.manual_seed(seed)``
    (inside a forked RNG), shuffling from ``make_generator(seed)``; returns validation and test
    accuracy (%) and the training seconds (testing excluded)."""
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_model(family, shape[0], num_classes, shape[1:], **model_args).to(dev)
        state = fit_network(net, train, settings.recipe.resolved(lr=default_eval_lr(family)), make_generator(seed))
        return {"real_val_accuracy": accuracy(net, val, dev), "real_test_accuracy": accuracy(net, test, dev),
                "real_train_seconds": state.seconds}


@dataclass
class NASResult:
    """What :func:`run_nas` returns (and ``nas.json`` holds).

    Attributes:
        space: the search space as read.
        settings: the synthetic protocol, the real proxy, split sizes, seed, workers, device.
        rows: one per candidate in grid order: ``index``, ``name``, ``model_args``, the grid keys,
            ``params``, ``seed``, ``synthetic_val_accuracy`` (mean over the networks) and
            ``synthetic_val_accuracies``, ``synthetic_test_accuracy`` (+ ``…accuracies``),
            ``synthetic_train_seconds``, ``real_val_accuracy``, ``real_test_accuracy``,
            ``real_train_seconds``, ``synthetic_rank``, ``real_rank`` (1 = best validation accuracy).
        summary: :func:`summarise` of the validation accuracies, with ``synthetic_best_name`` and
            ``real_best_name``.
        times: ``synthetic_train_seconds`` / ``real_train_seconds`` (sums over candidates of
            training alone, testing excluded), ``synthetic_wall_seconds`` / ``real_wall_seconds``
            (each search from its first candidate starting to its last finishing, in whichever
            worker: worker start-up excluded), ``total_wall_seconds`` (both searches and the
            workers' start-up), and the ratios real ÷ synthetic of the sums and of the walls.
        synthetic: where the set came from (file, dataset, method, IPC, images).
    """

    space: SearchSpace
    settings: dict[str, Any]
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    times: dict[str, Any]
    synthetic: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        from datadistill._version import __version__

        return {"format": "datadistill.nas", "package_version": __version__, "synthetic": self.synthetic,
                "space": self.space.as_dict(), "settings": self.settings, "candidates": self.rows,
                "summary": self.summary, "times": self.times}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _wall(timed: Sequence[tuple[float, float, Any]], members: Iterable[int], reused: Iterable[int]) -> float:
    """Wall seconds of one search: from its first task starting to its last finishing in this run,
    plus the own durations of the tasks reused from an interrupted run (not the pause between)."""
    old = set(reused)
    now = [timed[i] for i in members if i not in old]
    span = max(t[1] for t in now) - min(t[0] for t in now) if now else 0.0
    return span + sum(timed[i][1] - timed[i][0] for i in members if i in old)


#: NAS settings a resumed folder may differ in (where the data is read from, worker processes)
RESUME_INDEPENDENT = ("workers", "data_root")


def resume_record(out: str | os.PathLike | None, config: NASSettings, space: SearchSpace, syn: SyntheticSet,
                  dataset: str, device: torch.device, sizes: tuple[int, int, int]) -> RunRecord | None:
    """The run record ``out/nas_run.json`` (None without ``out``): the settings (flat
    :class:`NASSettings` keys, ``space.<key>`` for the space, the synthetic set's content hash, the
    dataset and its split sizes, the device type) and one unit per finished training,
    ``synthetic/<index>`` and ``real/<index>`` → ``{"start_time", "end_time", "result"}`` (the
    task's wall-clock start and end, ``time.time()``, and its results). A rerun into the
    same folder with the same settings (:data:`RESUME_INDEPENDENT` aside) trains only the candidates
    not finished there; with other settings it is refused, listing the keys that differ."""
    if out is None:
        return None
    from datadistill.evaluation.parts import set_digest

    settings = {**config.as_dict(), "device": device.type, **{f"space.{k}": v for k, v in space.as_dict().items()},
                "synthetic_sha256": set_digest(syn), "dataset": dataset, "real_train_images": sizes[0],
                "val_images": sizes[1], "test_images": sizes[2]}
    return RunRecord(Path(out) / RECORD_FILE, settings, ignore=RESUME_INDEPENDENT, what="a NAS run")


def prepare_splits(data: SplitDataset, syn: SyntheticSet, val_size: int, real_subset: int | None,
                    seed: int) -> tuple[SyntheticSet, LabelledImages, LabelledImages, LabelledImages]:
    """(syn in the space it trains in, real-proxy training images, validation, test), whitened with
    ``syn.zca`` when the set carries one."""
    n = len(data.train)
    if not 1 <= val_size < n:
        raise ConfigError(f"val_size = {val_size} is invalid: the real training set has {n} images, expected "
                          f"1 … {n - 1} (validation images carved from it)")
    generator = make_generator(seed)
    train, val = data.carve_validation(val_size, generator)
    k = data.spec.num_classes
    if real_subset is not None:
        counts = torch.bincount(train.labels.cpu(), minlength=k)[:k]
        if int(counts.min()) < real_subset:
            raise ConfigError(f"real_subset = {real_subset} is invalid: after carving {val_size} validation images "
                              f"the smallest class has {int(counts.min())} training images; expected 1 … "
                              f"{int(counts.min())} (images per class) or unset")
        by_class = RealSet(train, k).indices_by_class
        picked = torch.cat([ids[torch.randperm(len(ids), generator=generator)[:real_subset]] for ids in by_class])
        train = train.subset(picked.sort().values)
    test = data.test
    if syn.zca is not None:
        if data.train.streamed or test.streamed:
            raise ConfigError("the synthetic set is ZCA-whitened: its dataset must be held in memory (stream off)")
        train, val, test = (LabelledImages(syn.zca.whiten(s.images), s.labels) for s in (train, val, test))
    # the set's images already live in the whitened space and val/test are whitened here: no second pass
    syn = dataclasses.replace(syn, zca=None, metadata={**syn.metadata, "num_classes": k})
    return syn, train, val, test


def check_candidates(candidates: Sequence[Candidate], shape: tuple[int, int, int], num_classes: int) -> list[int]:
    """Build every candidate on the meta device (no memory, no RNG); parameter counts.

    Raises:
        ConfigError: a candidate that does not fit the images (e.g. too deep for their size), naming it.
    """
    params = []
    for c in candidates:
        try:
            with torch.device("meta"):
                net = build_model(c.family, shape[0], num_classes, shape[1:], **c.args)
        except DatadistillError as exc:
            raise type(exc)(f"candidate {c.name}: {exc}") from None
        params.append(sum(p.numel() for p in net.parameters()))
    return params


def run_nas(synthetic: str | os.PathLike | SyntheticSet, space: str | os.PathLike | Mapping[str, Any] | SearchSpace,
            out: str | os.PathLike | None = None, settings: NASSettings | Mapping[str, Any] | None = None, *,
            dataset: SplitDataset | None = None, progress: Progress | None = None, **overrides: Any) -> NASResult:
    """Rank the architectures of ``space`` by training on the synthetic set and on real data
    (``datadistill nas``), compare the rankings and write the report to ``out``.

    Args:
        synthetic: a synthetic-set file (``.safetensors``, read with
            :func:`~datadistill.io.load_synthetic_set`) or a loaded :class:`SyntheticSet`.
        space: a search-space YAML file, a mapping, or a :class:`SearchSpace` (module docstring).
        out: folder for ``nas.json``, ``nas.csv``, ``nas.md`` and ``nas.png``, and the run record
            ``nas_run.json`` (updated as each candidate's training finishes; a rerun resumes from
            it, :func:`resume_record`); None writes nothing.
        settings: the :class:`NASSettings` (or a mapping of its fields): the synthetic side's
            protocol, the real proxy, validation size, seed, workers, device, data root.
        dataset: the real dataset, already loaded (tests; else the set's own dataset is read from
            ``settings.data_root`` at the set's image size and normalisation). Images (N, C, H, W)
            float32 normalised, labels (N,) int64.
        overrides: :class:`NASSettings` fields applied on top of ``settings`` (None values ignored),
            e.g. ``run_nas(file, space, out, epochs=50, workers=0)``.
        progress: called ``(phase, done, total, row)`` as each candidate finishes, ``phase`` being
            ``"synthetic"`` or ``"real"`` and ``row`` that phase's results for the candidate (the
            candidates reused from ``out``'s record first, with ``row["reused"]`` True).

    Returns:
        The :class:`NASResult`.

    Raises:
        ConfigError / UnknownNameError: an invalid space or setting, a candidate that does not fit
            the images, a set that does not match the dataset, ``out`` an existing file, ``out``
            holding a NAS run of other settings (the keys that differ listed).
        SyntheticSetFileError: unreadable synthetic-set file. DatasetNotFoundError: its dataset is
            not on disk. Nothing is written in any of these cases (all checks run before training).
    """
    from datadistill.data import load_dataset_of
    from datadistill.experiments.workers import run_tasks

    config = NASSettings.build(settings, overrides)
    if out is not None:
        check_output_folder(out)
    the_space = load_search_space(space)
    real = config.real_proxy()
    config.eval_settings(the_space.family)  # its checks, before any data is read
    seed, workers, val_size = config.seed, config.workers, config.val_size
    dev = select_device(config.device)
    syn = synthetic if isinstance(synthetic, SyntheticSet) else load_synthetic_set(synthetic)
    if dataset is None:
        dataset = load_dataset_of(syn.metadata, config.data_root,
                                  **({"stream": "off"} if syn.zca is not None else {}))
    spec = dataset.spec
    eval_settings = config.eval_settings(the_space.family, spec.dsa_strategy)
    shape = tuple(dataset.train.image_shape)
    if tuple(syn.images.shape[1:]) != shape:
        raise ConfigError(f"synthetic images {tuple(syn.images.shape[1:])} do not match the {spec.name} images "
                          f"{shape} (channels, height, width)")
    if syn.labels.dim() == 2 and syn.labels.shape[1] != spec.num_classes:
        raise ConfigError(f"the synthetic set's soft labels have {syn.labels.shape[1]} classes but {spec.name} has "
                          f"{spec.num_classes}")
    top_label = int(syn.hard_labels.max()) if len(syn) else -1
    if top_label >= spec.num_classes:
        raise ConfigError(f"the synthetic set has label {top_label} but {spec.name} has {spec.num_classes} classes "
                          f"(expected labels 0 … {spec.num_classes - 1})")
    candidates = the_space.candidates()
    params = check_candidates(candidates, shape, spec.num_classes)
    syn_in, train, val, test = prepare_splits(dataset, syn, val_size, real.subset, seed)
    seeds = [candidate_seed(seed, c.index) for c in candidates]
    device_name = str(dev)
    log.info("nas: %d %s candidates (grid %d), %d synthetic images, %d real-proxy / %d validation / %d test images",
             len(candidates), the_space.family, the_space.grid_size, len(syn), len(train), len(val), len(test))

    n = len(candidates)
    counted = {"synthetic": 0, "real": 0}

    def report(i: int, timed: tuple[float, float, dict[str, Any]]) -> None:
        phase = "synthetic" if i < n else "real"
        counted[phase] += 1
        c = candidates[i % n]
        log.info("%s %d/%d: %s validation accuracy %.2f %%", phase, counted[phase], n, c.name,
                 timed[2].get(f"{phase}_val_accuracy", float("nan")))
        if progress is not None:
            progress(phase, counted[phase], n, {"index": c.index, "name": c.name, **timed[2],
                                                "reused": units[i] in done})

    syn_tasks = [(_timed, {"fn": _synthetic_task, "kwargs": {
        "syn": syn_in, "val": val, "test": test, "seed": s, "device": device_name,
        "settings": dataclasses.replace(eval_settings, model_args=c.args)}}) for c, s in zip(candidates, seeds)]
    real_tasks = [(_timed, {"fn": _real_task, "kwargs": {
        "family": c.family, "model_args": c.args, "shape": shape, "num_classes": spec.num_classes, "train": train,
        "val": val, "test": test, "settings": real, "seed": s, "device": device_name}})
        for c, s in zip(candidates, seeds)]
    units = [f"synthetic/{c.index}" for c in candidates] + [f"real/{c.index}" for c in candidates]
    record = resume_record(out, config, the_space, syn, spec.name, dev, (len(train), len(val), len(test)))
    done = broadcast_object(record.resume() if record is not None else {})  # rank 0's reading, for every rank
    timed: list[Any] = [None] * (2 * n)
    reused = [i for i, unit in enumerate(units) if unit in done]
    if reused:
        logging.getLogger("datadistill.notice").info("nas: resuming %s: %d of %d candidate trainings already "
                                                     "finished", out, len(reused), 2 * n)
    for i in reused:
        timed[i] = (done[units[i]]["start_time"], done[units[i]]["end_time"], done[units[i]]["result"])
        report(i, timed[i])
    todo = [i for i in range(2 * n) if units[i] not in done]

    def finished(j: int, result: tuple[float, float, dict[str, Any]]) -> None:
        i = todo[j]
        timed[i] = result
        if record is not None:
            record.mark_finished(units[i], {"start_time": result[0], "end_time": result[1], "result": result[2]})
        report(i, result)

    start = time.perf_counter()
    # one pool for both searches (workers start once); the synthetic tasks are submitted first
    # (under torchrun the ranks share the candidates; ``finished`` runs on rank 0, every rank gets them all)
    ran = run_tasks([(syn_tasks + real_tasks)[i] for i in todo], workers=workers, progress=finished)
    for j, i in enumerate(todo):
        timed[i] = ran[j]
    total_wall = time.perf_counter() - start
    syn_rows, real_rows = [t[2] for t in timed[:n]], [t[2] for t in timed[n:]]
    syn_wall = _wall(timed, range(n), reused)
    real_wall = _wall(timed, range(n, 2 * n), reused)

    summary = summarise([r["synthetic_val_accuracy"] for r in syn_rows], [r["real_val_accuracy"] for r in real_rows])
    from scipy.stats import rankdata

    syn_rank = rankdata([-r["synthetic_val_accuracy"] for r in syn_rows], method="min")
    real_rank = rankdata([-r["real_val_accuracy"] for r in real_rows], method="min")
    rows = []
    for j, c in enumerate(candidates):
        rows.append({"index": c.index, "name": c.name, "model_args": dict(c.args), **c.args, "params": params[j],
                     "seed": seeds[j], **syn_rows[j], **real_rows[j], "synthetic_rank": int(syn_rank[j]),
                     "real_rank": int(real_rank[j])})
    summary["synthetic_best_name"] = rows[summary["synthetic_best"]]["name"]
    summary["real_best_name"] = rows[summary["real_best"]]["name"]
    syn_train = sum(r["synthetic_train_seconds"] for r in syn_rows)
    real_train = sum(r["real_train_seconds"] for r in real_rows)
    times = {"synthetic_train_seconds": syn_train, "real_train_seconds": real_train,
             "synthetic_wall_seconds": syn_wall, "real_wall_seconds": real_wall, "total_wall_seconds": total_wall,
             "train_seconds_ratio": _ratio(real_train, syn_train), "wall_seconds_ratio": _ratio(real_wall, syn_wall)}
    eval_dict = {k: v for k, v in eval_settings.as_dict().items() if k != "model_args"}
    recorded = {"synthetic_protocol": eval_dict, "real_proxy": real.as_dict(), "val_size": val_size,
                "real_train_images": len(train), "val_images": len(val), "test_images": len(test), "seed": seed,
                "workers": workers, "device": device_name, "dataset": spec.name, "top_k": list(TOP_K)}
    source = {"file": None if isinstance(synthetic, SyntheticSet) else str(synthetic),
              **{k: syn.metadata.get(k) for k in ("dataset", "method", "ipc")}, "images": len(syn),
              "learned_lr": syn.learned_lr, "zca": syn.zca is not None}
    result = NASResult(the_space, recorded, rows, summary, times, source)
    if out is not None and world().is_main:
        write_outputs(result, out)
    return result


__all__ = ["NASResult", "RECORD_FILE", "RESUME_INDEPENDENT", "candidate_seed", "check_candidates", "prepare_splits",
           "resume_record", "run_nas"]
