"""The distillation pipeline: ``distill`` (dataset → method → synthetic set → evaluation),
``evaluate_file`` and ``run_distill`` (which writes the output folder).

Under torchrun every rank runs the same pipeline (:func:`join_world` joins the process group): a
class-sharded method splits its classes over the ranks (:mod:`datadistill.methods.sharding`), every
rank holds the whole synthetic set after each step, and rank 0 alone writes the output folder and the
checkpoint (:mod:`datadistill.api.checkpointing`); a refusal on rank 0 (an output folder, a tracker)
ends every rank with its message (:func:`datadistill.distributed.on_main`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import yaml

from datadistill import distributed
from datadistill._version import __version__
from datadistill.api.datasets import class_counts, imbalance_line, spec_line
from datadistill.api.checkpointing import CHECKPOINT_DIR, RunCheckpoint, RunProgress, resolve_run
from datadistill.api.tracking import RunTracking, SetCallback
from datadistill.augment import DSA
from datadistill.config import DistillConfig
from datadistill.data import DatasetSpec, LabelledImages, RealSet, SplitDataset, load_dataset, load_dataset_of
from datadistill.evaluation import EvalParts, EvalProgress, EvalResult, EvalSettings, evaluate_synthetic_set
from datadistill.evaluation.paper import eval_settings_for, paper_method, run_eval_settings
from datadistill.evaluation.parts import PARTS_FOLDER
from datadistill.fsutil import atomic_write_text, check_output_folder
from datadistill.io import SyntheticSet, load_synthetic_set, save_grid, save_synthetic_set, synthetic_set_metadata
from datadistill.io.tracking import check_trackers
from datadistill.methods import Distiller
from datadistill.models import MODELS
from datadistill.runtime import make_generator, seed_everything, select_device

log = logging.getLogger("datadistill")
runlog = logging.getLogger("datadistill.run")  # the run's own record: distill.log only, never the terminal

StepCallback = Callable[[int, dict[str, float]], None]
EvalCallback = Callable[[str, EvalProgress], None]  # ("synthetic set" | "initial set", progress)


@dataclass
class DistillResult:
    """What :func:`distill` returns.

    Attributes:
        synthetic_set: the learned set (images normalised, hard labels, metadata).
        initial_set: the set before the first step.
        loss_history: (iteration, loss) pairs, every iteration.
        distill_seconds: wall time of the optimisation loop (initialisation included).
        evaluation: evaluation of the learned set (None when ``num_eval`` is 0).
        init_evaluation: evaluation of the initial set (when ``eval_init``).
        eval_seconds: wall time of all evaluations.
        snapshots: the set at each iteration asked for with ``snapshot_iterations``.
        selection: (iteration, validation accuracy %) of each candidate when ``select_every`` > 0;
            ``synthetic_set`` is then the best candidate (its metadata says which iteration).
        iterations_run: steps actually taken (fewer than asked when ``max_seconds`` ran out; 0 for
            the coreset methods, which select instead of learning).
        skipped_iterations: steps that changed nothing (MTT family: non-finite loss rolled back, or
            DATM's loss threshold exceeded).
        class_counts: real images per class, ``{"train": [...], "test": [...]}`` (class imbalance).
    """

    config: DistillConfig
    synthetic_set: SyntheticSet
    initial_set: SyntheticSet
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    distill_seconds: float = 0.0
    evaluation: EvalResult | None = None
    init_evaluation: EvalResult | None = None
    eval_seconds: float = 0.0
    snapshots: dict[int, SyntheticSet] = field(default_factory=dict)
    selection: list[tuple[int, float]] = field(default_factory=list)
    iterations_run: int = 0
    skipped_iterations: int = 0
    class_counts: dict[str, list[int]] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """``metrics.json`` (percent, seconds); ``num_eval`` and ``eval_*``: what the evaluation used."""
        cfg = self.config
        out: dict[str, Any] = {
            "method": cfg.method, "dataset": cfg.dataset, "ipc": cfg.ipc, "init": cfg.init, "model": cfg.model,
            "iterations": self.iterations_run,
            "iterations_requested": cfg.iterations, "max_seconds": cfg.max_seconds, "seed": cfg.seed, "distill_seconds": self.distill_seconds,
            "eval_seconds": self.eval_seconds, "num_eval": cfg.num_eval, "eval_epochs": cfg.eval_epochs,
            "eval_protocol": cfg.eval_protocol,
            "eval_model": cfg.resolved_eval_model, "final_loss": self.loss_history[-1][1] if self.loss_history else None,
            "loss_history": self.loss_history, "package_version": __version__,
            "skipped_iterations": self.skipped_iterations, "learned_lr": self.synthetic_set.learned_lr,
            "label_kind": self.synthetic_set.label_kind, "zca_eps": cfg.zca_eps,
        }
        if self.class_counts:
            out["class_counts"] = self.class_counts
        if self.evaluation:
            ev = self.evaluation
            out.update(accuracy_mean=ev.mean, accuracy_std=ev.std, accuracies=ev.accuracies,
                       train_accuracies=ev.train_accuracies, eval_protocol=ev.protocol, num_eval=len(ev.accuracies),
                       eval_epochs=ev.epochs, eval_batch=ev.batch_size, eval_lr=ev.lr, eval_augmentation=ev.augmentation)
            if ev.per_class_accuracies:
                bal = ev.as_dict()
                out.update({k: bal[k] for k in ("balanced_accuracy_mean", "balanced_accuracy_std",
                                                "balanced_accuracies", "per_class_accuracy_mean")})
        if self.selection:
            out.update(selection=self.selection, selected_iteration=self.synthetic_set.metadata["iterations"])
        if self.init_evaluation:
            ie = self.init_evaluation
            out.update(init_accuracy_mean=ie.mean, init_accuracy_std=ie.std, init_accuracies=ie.accuracies)
        return out


def _metadata(config: DistillConfig, spec: DatasetSpec, method_cfg, iterations: int) -> dict[str, Any]:
    return synthetic_set_metadata(spec, method=config.method, ipc=config.ipc, init=config.init, model=config.model,
                                  seed=config.seed, iterations=iterations,
                                  config={**config.as_dict(), "method_args": dataclasses.asdict(method_cfg)},
                                  package_version=__version__)


def load_dataset_for(config: DistillConfig) -> SplitDataset:
    """The dataset of a run, read with its ``image_size``, ``stream`` and ``num_workers`` settings."""
    return load_dataset(config.dataset, config.data_root, image_size=config.image_size, stream=config.stream,
                        num_workers=config.num_workers)


def eval_settings(config: DistillConfig, spec: DatasetSpec) -> EvalSettings:
    """A run's evaluation (:func:`datadistill.evaluation.paper.run_eval_settings`)."""
    return run_eval_settings(config, spec.name, config.dsa_strategy or spec.dsa_strategy)


def join_world(config: DistillConfig) -> torch.device:
    """The run's device (CUDA: this process's ``LOCAL_RANK`` GPU under torchrun), after joining the
    process group when launched by torchrun (:func:`datadistill.distributed.init`; a no-op in one
    process, and when already joined)."""
    device = distributed.local_device(select_device(config.device))
    distributed.init(device)
    return device


def distill(config: DistillConfig, callbacks: Sequence[StepCallback] = (), dataset: SplitDataset | None = None,
            evaluate: bool = True, snapshot_iterations: Sequence[int] = (),
            eval_parts: str | os.PathLike | None = None, checkpoint: RunCheckpoint | None = None,
            set_callbacks: Sequence[SetCallback] = (), on_eval: EvalCallback | None = None) -> DistillResult:
    """Learn a synthetic set as ``config`` says, then evaluate it (unless ``num_eval`` is 0).

    Args:
        config: the run configuration.
        callbacks: called with ``(iteration, metrics)`` after every step (progress bars, logging).
        dataset: an already loaded dataset (else loaded from ``config.data_root``).
        evaluate: False skips evaluation whatever ``num_eval`` says.
        snapshot_iterations: iterations after which a copy of the set is kept in ``result.snapshots``
            (0 = the initial set; only those of this session when the run resumed).
        checkpoint: the run's checkpoint (:class:`~datadistill.api.checkpointing.RunCheckpoint`): the run
            resumes from it when there is one and writes it as it goes (None: neither).
        eval_parts: a folder where the evaluation records each finished network and reuses those
            recorded (:mod:`datadistill.evaluation.parts`: ``<model>.json``, ``init_<model>.json``
            for the initial set); None keeps nothing.
        set_callbacks: called with ``(iteration, metrics, current)`` once before the loop (empty
            metrics, the iteration it starts from) and after every step; ``current()`` returns the set
            then (a copy, made only when called). The experiment trackers (:mod:`datadistill.api.tracking`).
        on_eval: called ``(which set, EvalProgress)`` after every epoch of the evaluation and as each
            network finishes (progress displays; :class:`~datadistill.evaluation.EvalProgress`).

    Raises:
        ConfigError / UnknownNameError: an invalid setting (unknown dataset, method or model, IPC
            out of range, bad method argument).
        DatasetNotFoundError: the dataset is not on disk.
        NonFiniteLossError: the loss diverged.
        CheckpointError: the checkpoint cannot be read or written, or holds other settings.
        RunInterrupted: SIGINT / SIGTERM (with a checkpoint: :meth:`RunCheckpoint.guard`).
    """
    cls, run, config, method_cfg = resolve_run(config)
    MODELS.get(config.model)
    MODELS.get(config.resolved_eval_model)
    if config.eval_protocol == "paper" and evaluate and config.num_eval > 0:  # refuse a method without one now
        paper_method("paper", config.method)
    device = join_world(config)
    loaded = checkpoint.prepare() if checkpoint is not None else None
    data = dataset or load_dataset_for(config)
    from datadistill.preprocess.dataset import fit_zca

    zca = fit_zca(data, config.zca_eps) if config.zca_eps is not None else None  # on pixels, as MTT/DATM
    counts = class_counts(data)
    log.info("%s: %s", spec_line(data), imbalance_line(data.spec, counts["train"]))
    spec = data.spec
    dsa = DSA(config.dsa_strategy or spec.dsa_strategy)
    seed_everything(config.seed)
    generator = make_generator(config.seed)
    train, validation = data.train, None
    if config.select_every:
        train, validation = data.carve_validation(config.val_size, generator)
    if zca is not None:  # the methods see whitened images; evaluation whitens the test set with the same ZCA
        train = LabelledImages(zca.whiten(train.images), train.labels)
    real = RealSet(train, spec.num_classes)
    start = time.perf_counter()
    distiller: Distiller = cls(method_cfg, spec, real, ipc=config.ipc, model=config.model, dsa=dsa,
                               device=device, generator=generator, zca_eps=config.zca_eps)

    def make_set(images: torch.Tensor, labels: torch.Tensor, lr: float | None, it: int) -> SyntheticSet:
        return SyntheticSet(images.cpu().clone(), labels.cpu().clone(), lr,
                            metadata=_metadata(config, spec, method_cfg, it), zca=zca)

    def current(it: int) -> SyntheticSet:
        return make_set(*distiller.output(), it)

    if loaded is None:
        distiller.initialise(config.init)
        progress = RunProgress(initial=current(0))
    else:
        progress = RunProgress.restore(distiller, loaded.state, make_set)
    initial = progress.initial
    iterations = run.iterations
    loop_start = time.perf_counter()

    def loop_seconds() -> float:  # optimisation seconds of this run, earlier sessions included
        return progress.seconds + time.perf_counter() - loop_start

    def out_of_time() -> bool:
        return config.max_seconds is not None and loop_seconds() >= config.max_seconds

    history = progress.history
    wanted = set(snapshot_iterations)
    snapshots = {0: initial} if 0 in wanted else {}
    selection = progress.selection
    best = progress.best  # [(validation accuracy, set)] of the best candidate
    select_settings = dataclasses.replace(eval_settings(config, spec), num_eval=config.select_num_eval,
                                          epochs=config.select_epochs)

    skipped = progress.skipped

    def record(it: int, metrics: dict[str, float]) -> None:
        history.append((it, metrics["loss"]))
        skipped[0] += int(metrics.get("skipped", 0))
        if it in wanted:
            snapshots[it] = current(it)
        if validation is not None and (it % config.select_every == 0 or it == config.iterations
                                       or distributed.any_rank(out_of_time())[0]):  # the ranks agree
            candidate = current(it)
            with torch.random.fork_rng():  # selection must not change the distillation's random stream
                score = evaluate_synthetic_set(candidate, validation, select_settings, device, seed=config.seed).mean
            log.info("iteration %d: validation accuracy %.2f%%", it, score)
            if not best or score > best[0][0]:
                best[:] = [(score, candidate)]
            selection.append((it, score))

    steps: list[StepCallback] = [record]
    for watch in set_callbacks:  # before the checkpoint's, which ends the step that SIGINT/SIGTERM stops after
        watch(distiller.iteration, {}, lambda: current(distiller.iteration))
    steps += [lambda it, m, w=w: w(it, m, lambda: current(it)) for w in set_callbacks]
    if checkpoint is not None:
        checkpoint.bind(lambda done: progress.state(
            distiller, seconds=loop_seconds(), loop_done=done,
            distill_seconds=progress.distill_seconds + time.perf_counter() - start))
        steps.append(checkpoint.after_step)
    remaining = iterations - distiller.iteration
    budget = None if config.max_seconds is None else config.max_seconds - progress.seconds
    if remaining > 0 and not progress.loop_done and (budget is None or budget > 0):
        with checkpoint.loop() if checkpoint is not None else contextlib.nullcontext():
            distiller.fit(remaining, [*steps, *callbacks], max_seconds=budget)
    if checkpoint is not None:
        checkpoint.loop_finished(resumed_done=progress.loop_done)
    distill_seconds = progress.distill_seconds + time.perf_counter() - start
    syn = best[0][1] if best else current(distiller.iteration)
    result = DistillResult(config, syn, initial, history, distill_seconds, snapshots=snapshots, selection=selection,
                           iterations_run=distiller.iteration, skipped_iterations=skipped[0], class_counts=counts)
    if evaluate and config.num_eval > 0:
        settings = eval_settings(config, spec)
        parts = EvalParts(eval_parts) if eval_parts is not None else None
        t0 = time.perf_counter()

        def watch(subject: str):
            return None if on_eval is None else (lambda progress: on_eval(subject, progress))

        def tested(k: int, acc: float) -> None:
            log.info("evaluation network %d of %d: test accuracy %.2f %%", k + 1, settings.num_eval, acc)

        result.evaluation = evaluate_synthetic_set(syn, data.test, settings, device, seed=config.seed, progress=tested,
                                                   parts=parts, on_epoch=watch("synthetic set"))
        if config.eval_init:
            result.init_evaluation = evaluate_synthetic_set(initial, data.test, settings, device, seed=config.seed,
                                                            parts=parts.with_prefix("init_") if parts else None,
                                                            on_epoch=watch("initial set"))
        result.eval_seconds = time.perf_counter() - t0
    return result


def evaluate_file(path: str | os.PathLike, settings: EvalSettings | None = None, *, data_root: str | None = None,
                  device: str = "auto", seed: int = 0, protocol: str = "ours", **overrides) -> EvalResult:
    """Evaluate a saved synthetic set on its dataset's real test set.

    Without ``settings``: ``protocol``'s (:func:`datadistill.evaluation.paper.eval_settings_for`), with
    ``overrides`` (model, num_eval, epochs, lr, batch_size, dsa_strategy, …) replacing its values.

    Raises:
        SyntheticSetFileError: missing, corrupt or foreign file.
        DatasetNotFoundError / UnknownNameError: the set's dataset is not available.
        ConfigError: the set does not fit the dataset (channels, image size); a bad ``protocol``.
    """
    syn = load_synthetic_set(path)
    data = load_dataset_of(syn.metadata, data_root)
    if settings is None:
        model = overrides.pop("model", None) or "convnet"
        method = paper_method(protocol, syn.metadata.get("method")) if protocol != "ours" else None
        settings = eval_settings_for(protocol, method=method, dataset=data.spec.name, model=model,
                                     dsa_strategy=data.spec.dsa_strategy, overrides=overrides)
    MODELS.get(settings.model)
    return evaluate_synthetic_set(syn, data.test, settings, select_device(device), seed=seed)


def run_distill(config: DistillConfig, out_dir: str | os.PathLike, callbacks: Sequence[StepCallback] = (), *,
                restart: bool = False, notify: Callable[[str], None] | None = None,
                on_eval: EvalCallback | None = None) -> DistillResult:
    """:func:`distill`, then write ``out_dir``: ``synthetic.safetensors``, ``init.png``, ``synthetic.png``,
    ``metrics.json``, ``config.yaml`` (resolved) and ``distill.log``.

    Every file is written atomically and only after the run succeeded, so a failed run leaves any
    earlier results in ``out_dir`` untouched and adds nothing but its checkpoint.

    Checkpoints (:mod:`datadistill.api.checkpointing`): the run writes ``out_dir/checkpoint`` every
    ``config.checkpoint_every`` iterations and at most ``config.checkpoint_seconds`` apart, and resumes
    from it when rerun with the same settings (``restart`` discards it instead); it is removed once the
    final files are written, unless ``config.keep_checkpoint``. SIGINT / SIGTERM stop the run after its
    current step with a checkpoint (:class:`~datadistill.errors.RunInterrupted`). ``notify`` is also
    given the messages about resuming and stopping (they are logged in any case, to the
    ``datadistill.notice`` logger). ``on_eval`` is :func:`distill`'s (evaluation progress).

    The evaluation records each finished network in ``out_dir/evaluation_parts/`` (a rerun trains
    only the missing ones); the folder is removed once ``metrics.json`` is written.
    """
    join_world(config)
    out = distributed.on_main(lambda: check_output_folder(out_dir))
    distributed.on_main(lambda: check_trackers(config.log_to))  # a missing package is refused here, before any work
    main = distributed.world().is_main  # rank 0 alone logs to the trackers and writes the files
    tracking = RunTracking(config if main else dataclasses.replace(config, log_to=[]), out)
    checkpoint = RunCheckpoint.for_run(config, out / CHECKPOINT_DIR, restart=restart, notify=notify)
    with checkpoint.guard(), tracking:
        return _run_distill(config, out, callbacks, checkpoint, tracking, on_eval)


def _run_distill(config: DistillConfig, out, callbacks: Sequence[StepCallback], checkpoint: RunCheckpoint,
                 tracking: RunTracking, on_eval: EvalCallback | None) -> DistillResult:
    records: list[str] = []
    checkpoint.log_records = records  # distill.log holds the earlier sessions' lines too
    handler = logging.Handler()
    handler.emit = lambda rec: records.append(logging.Formatter("%(asctime)s %(levelname)s %(message)s").format(rec))
    handler.setLevel(logging.INFO)
    previous_level = log.level
    log.setLevel(min(previous_level or logging.INFO, logging.INFO))
    log.addHandler(handler)
    try:
        runlog.info("datadistill %s: %s", __version__, json.dumps(config.as_dict(), sort_keys=True))
        result = distill(config, callbacks, eval_parts=out / PARTS_FOLDER, checkpoint=checkpoint,
                         set_callbacks=tracking.set_callbacks, on_eval=on_eval)
        for it, loss in result.loss_history[:: max(1, len(result.loss_history) // 50)]:
            runlog.info("iteration %d loss %.6g", it, loss)
        runlog.info("distilled in %.1f s", result.distill_seconds)
        if result.evaluation:
            runlog.info("accuracy %.2f ± %.2f %% over %d models (%.1f s)", result.evaluation.mean,
                     result.evaluation.std, len(result.evaluation.accuracies), result.eval_seconds)
    finally:
        log.removeHandler(handler)
        log.setLevel(previous_level)
    def write_outputs() -> None:  # rank 0 (every rank holds the same result)
        out.mkdir(parents=True, exist_ok=True)
        syn, init = result.synthetic_set, result.initial_set
        save_synthetic_set(syn, out / "synthetic.safetensors")
        save_grid(init.images, init.hard_labels, syn.metadata["mean"], syn.metadata["std"], out / "init.png",
                  zca=init.zca)
        save_grid(syn.images, syn.hard_labels, syn.metadata["mean"], syn.metadata["std"], out / "synthetic.png",
                  zca=syn.zca)
        atomic_write_text(out / "metrics.json", json.dumps(result.metrics(), indent=2) + "\n")
        atomic_write_text(out / "config.yaml", yaml.safe_dump(syn.metadata["config"], sort_keys=True))
        atomic_write_text(out / "distill.log", "\n".join(records) + "\n")
        EvalParts(out / PARTS_FOLDER).remove()  # the evaluation is in metrics.json now
        checkpoint.remove(keep_newest=config.keep_checkpoint)
        tracking.finish(result)  # the evaluation, the final grid and the files to the trackers (log_to)

    distributed.on_main(write_outputs)  # the other ranks wait for the files, or end with rank 0's error
    return result
