"""The Python API behind the CLI: ``distill``, ``evaluate_file`` and ``run_distill`` (which writes the
output folder). Data flows one way: dataset → method → synthetic set → evaluation → files."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from datadistill._version import __version__
from datadistill.augment import DSA
from datadistill.config import DistillConfig
from datadistill.data import DatasetSpec, LabelledImages, RealSet, SplitDataset, load_dataset, load_dataset_of
from datadistill.evaluation import EvalResult, EvalSettings, evaluate_synthetic_set
from datadistill.fsutil import atomic_write_text, check_output_folder
from datadistill.io import SyntheticSet, load_synthetic_set, save_grid, save_synthetic_set, synthetic_set_metadata
from datadistill.methods import METHODS, Distiller, method_config  # noqa: F401  (method_config: api's old name)
from datadistill.models import MODELS
from datadistill.runtime import make_generator, seed_everything, select_device

log = logging.getLogger("datadistill")

StepCallback = Callable[[int, dict[str, float]], None]


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
        """The ``metrics.json`` content (accuracies in percent, times in seconds)."""
        cfg = self.config
        out: dict[str, Any] = {
            "method": cfg.method, "dataset": cfg.dataset, "ipc": cfg.ipc, "init": cfg.init, "model": cfg.model,
            "iterations": self.iterations_run,
            "iterations_requested": cfg.iterations, "max_seconds": cfg.max_seconds, "seed": cfg.seed, "distill_seconds": self.distill_seconds,
            "eval_seconds": self.eval_seconds, "num_eval": cfg.num_eval, "eval_epochs": cfg.eval_epochs,
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
                       train_accuracies=ev.train_accuracies)
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


def class_counts(data: SplitDataset) -> dict[str, list[int]]:
    """Real images per class in each split, ``{"train": [...], "test": [...]}``."""
    k = data.spec.num_classes
    return {name: torch.bincount(split.labels.cpu(), minlength=k)[:k].tolist()
            for name, split in (("train", data.train), ("test", data.test))}


def imbalance_line(spec: DatasetSpec, counts: Sequence[int]) -> str:
    """``"train images per class: HP 1545, SSA 630 (imbalance 2.45:1)"`` (the largest over the smallest class)."""
    shown = ", ".join(f"{n} {c}" for n, c in zip(spec.class_names[:10], counts[:10]))
    more = f", … ({len(counts)} classes)" if len(counts) > 10 else ""
    ratio = max(counts) / max(min(counts), 1)
    return f"train images per class: {shown}{more} (imbalance {ratio:.2f}:1)"


def spec_line(data: SplitDataset) -> str:
    spec = data.spec
    how = "streamed from files" if data.train.streamed else "in memory"
    return (f"{spec.name}: {len(data.train)} train / {len(data.test)} test images of "
            f"{spec.channels}×{spec.image_size[0]}×{spec.image_size[1]}, {spec.num_classes} classes, {how}; "
            f"mean {tuple(round(m, 4) for m in spec.mean)}, std {tuple(round(s, 4) for s in spec.std)}")


def dataset_info(name: str, data_root: str | None = None, **options) -> dict[str, Any]:
    """What ``datadistill data info`` prints: sizes, classes, images per class, imbalance, mean/std and
    the training set's float32 size in bytes (``options``: image_size, stream, num_workers)."""
    import math

    data = load_dataset(name, data_root, **options)
    counts = class_counts(data)
    spec = data.spec
    return {"dataset": spec.name, "channels": spec.channels, "image_size": list(spec.image_size),
            "class_names": list(spec.class_names), "class_counts": counts, "mean": list(spec.mean),
            "std": list(spec.std), "streamed": bool(data.train.streamed),
            "train_bytes": len(data.train) * math.prod(data.train.image_shape) * 4,
            "summary": spec_line(data), "imbalance": imbalance_line(spec, counts["train"])}


def eval_settings(config: DistillConfig, spec: DatasetSpec) -> EvalSettings:
    return EvalSettings(model=config.resolved_eval_model, num_eval=max(config.num_eval, 1),
                        epochs=config.eval_epochs, lr=config.eval_lr, batch_size=config.eval_batch,
                        dsa_strategy=config.dsa_strategy or spec.dsa_strategy)


def distill(config: DistillConfig, callbacks: Sequence[StepCallback] = (), dataset: SplitDataset | None = None,
            evaluate: bool = True, snapshot_iterations: Sequence[int] = ()) -> DistillResult:
    """Learn a synthetic set as ``config`` says, then evaluate it (unless ``num_eval`` is 0).

    Args:
        config: the run configuration.
        callbacks: called with ``(iteration, metrics)`` after every step (progress bars, logging).
        dataset: an already loaded dataset (else loaded from ``config.data_root``).
        evaluate: False skips evaluation whatever ``num_eval`` says.
        snapshot_iterations: iterations after which a copy of the set is kept in ``result.snapshots``
            (0 = the initial set).

    Raises:
        ConfigError / UnknownNameError: an invalid setting (unknown dataset, method or model, IPC
            out of range, bad method argument).
        DatasetNotFoundError: the dataset is not on disk.
        NonFiniteLossError: the loss diverged.
    """
    cls = METHODS.get(config.method)
    run = cls.resolve_run_config(config)  # what the method fixes (a coreset: its init, 0 iterations)
    if run.init != config.init:  # the set's metadata records the run's init and the requested budget
        config = dataclasses.replace(config, init=run.init)
    MODELS.get(config.model)
    MODELS.get(config.resolved_eval_model)
    method_cfg = cls.config_from_run(config)
    device = select_device(config.device)
    from datadistill.preprocess import ZCA

    data = dataset or load_dataset_for(config)
    from datadistill.preprocess.dataset import check_zca_possible

    check_zca_possible(data, config.zca_eps)
    zca = ZCA.fit(data.train.images, eps=config.zca_eps) if config.zca_eps is not None else None
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
    distiller.initialise(config.init)

    def current(it: int) -> SyntheticSet:
        images, labels, lr = distiller.output()
        return SyntheticSet(images.cpu().clone(), labels.cpu().clone(), lr,
                            metadata=_metadata(config, spec, method_cfg, it), zca=zca)

    initial = current(0)
    iterations = run.iterations
    loop_start = time.perf_counter()

    def out_of_time() -> bool:
        return config.max_seconds is not None and time.perf_counter() - loop_start >= config.max_seconds

    history: list[tuple[int, float]] = []
    wanted = set(snapshot_iterations)
    snapshots = {0: initial} if 0 in wanted else {}
    selection: list[tuple[int, float]] = []
    best: list[tuple[float, SyntheticSet]] = []  # (validation accuracy, set) of the best candidate
    select_settings = dataclasses.replace(eval_settings(config, spec), num_eval=config.select_num_eval,
                                          epochs=config.select_epochs)

    skipped = [0]

    def record(it: int, metrics: dict[str, float]) -> None:
        history.append((it, metrics["loss"]))
        skipped[0] += int(metrics.get("skipped", 0))
        if it in wanted:
            snapshots[it] = current(it)
        if validation is not None and (it % config.select_every == 0 or it == config.iterations or out_of_time()):
            candidate = current(it)
            with torch.random.fork_rng():  # selection must not change the distillation's random stream
                score = evaluate_synthetic_set(candidate, validation, select_settings, device, seed=config.seed).mean
            log.info("iteration %d: validation accuracy %.2f%%", it, score)
            if not best or score > best[0][0]:
                best[:] = [(score, candidate)]
            selection.append((it, score))

    distiller.fit(iterations, [record, *callbacks], max_seconds=config.max_seconds)
    distill_seconds = time.perf_counter() - start
    syn = best[0][1] if best else current(distiller.iteration)
    result = DistillResult(config, syn, initial, history, distill_seconds, snapshots=snapshots, selection=selection,
                           iterations_run=distiller.iteration, skipped_iterations=skipped[0], class_counts=counts)
    if evaluate and config.num_eval > 0:
        settings = eval_settings(config, spec)
        t0 = time.perf_counter()
        result.evaluation = evaluate_synthetic_set(syn, data.test, settings, device, seed=config.seed,
                                                   progress=lambda k, a: log.info("eval model %d: %.2f%%", k, a))
        if config.eval_init:
            result.init_evaluation = evaluate_synthetic_set(initial, data.test, settings, device, seed=config.seed)
        result.eval_seconds = time.perf_counter() - t0
    return result


def evaluate_file(path: str | os.PathLike, settings: EvalSettings | None = None, *, data_root: str | None = None,
                  device: str = "auto", seed: int = 0, **overrides) -> EvalResult:
    """Evaluate a saved synthetic set on its dataset's real test set.

    ``overrides`` (model, num_eval, epochs, lr, batch_size, dsa_strategy) replace the defaults of
    :class:`EvalSettings`; the DSA strategy defaults to the dataset's.

    Raises:
        SyntheticSetFileError: missing, corrupt or foreign file.
        DatasetNotFoundError / UnknownNameError: the set's dataset is not available.
        ConfigError: the set does not fit the dataset (channels, image size).
    """
    syn = load_synthetic_set(path)
    data = load_dataset_of(syn.metadata, data_root)
    if settings is None:
        if overrides.get("dsa_strategy") is None:
            overrides["dsa_strategy"] = data.spec.dsa_strategy
        settings = EvalSettings(**{k: v for k, v in overrides.items() if v is not None})
    MODELS.get(settings.model)
    return evaluate_synthetic_set(syn, data.test, settings, select_device(device), seed=seed)


def run_distill(config: DistillConfig, out_dir: str | os.PathLike, callbacks: Sequence[StepCallback] = ()) -> DistillResult:
    """:func:`distill`, then write ``out_dir``: ``synthetic.safetensors``, ``init.png``, ``synthetic.png``,
    ``metrics.json``, ``config.yaml`` (resolved) and ``distill.log``.

    Every file is written atomically and only after the run succeeded, so a failed run leaves any
    earlier results in ``out_dir`` untouched and adds nothing.
    """
    out = check_output_folder(out_dir)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda rec: records.append(logging.Formatter("%(asctime)s %(levelname)s %(message)s").format(rec))
    handler.setLevel(logging.INFO)
    previous_level = log.level
    log.setLevel(min(previous_level or logging.INFO, logging.INFO))
    log.addHandler(handler)
    try:
        log.info("datadistill %s: %s", __version__, json.dumps(config.as_dict(), sort_keys=True))
        result = distill(config, callbacks)
        for it, loss in result.loss_history[:: max(1, len(result.loss_history) // 50)]:
            log.info("iteration %d loss %.6g", it, loss)
        log.info("distilled in %.1f s", result.distill_seconds)
        if result.evaluation:
            log.info("accuracy %.2f ± %.2f %% over %d models (%.1f s)", result.evaluation.mean,
                     result.evaluation.std, len(result.evaluation.accuracies), result.eval_seconds)
    finally:
        log.removeHandler(handler)
        log.setLevel(previous_level)
    out.mkdir(parents=True, exist_ok=True)
    syn, init = result.synthetic_set, result.initial_set
    save_synthetic_set(syn, out / "synthetic.safetensors")
    save_grid(init.images, init.hard_labels, syn.metadata["mean"], syn.metadata["std"], out / "init.png", zca=init.zca)
    save_grid(syn.images, syn.hard_labels, syn.metadata["mean"], syn.metadata["std"], out / "synthetic.png", zca=syn.zca)
    atomic_write_text(out / "metrics.json", json.dumps(result.metrics(), indent=2) + "\n")
    atomic_write_text(out / "config.yaml", yaml.safe_dump(syn.metadata["config"], sort_keys=True))
    atomic_write_text(out / "distill.log", "\n".join(records) + "\n")
    return result


def _settings_from(cls, values: dict[str, Any], what: str):
    """``cls(**values)`` with unknown keys and wrong types reported as ConfigError."""
    from datadistill.settings import settings_from

    return settings_from(cls, values, what=what)


def run_experts(values: dict[str, Any], out_dir: str | os.PathLike, *, device: str = "auto",
                data_root: str | None = None, progress=None) -> Path:
    """Train and save expert trajectories (``datadistill experts``).

    Args:
        values: ``dataset`` plus :class:`~datadistill.trajectory.ExpertSettings` fields; ``curriculum``
            is a mapping of :class:`~datadistill.trajectory.Curriculum` fields (with ``scores_file``).
        out_dir: the trajectory folder (resumed when it already holds some epochs).

    Raises:
        ConfigError: an unknown or invalid setting, a scores file that does not fit the training set.
        ScoresFileError: unreadable scores file.
    """
    from datadistill.errors import ConfigError
    from datadistill.preprocess.dataset import whiten_dataset
    from datadistill.selection.difficulty import load_scores
    from datadistill.trajectory import Curriculum, ExpertSettings, train_experts

    values = dict(values)
    dataset = values.pop("dataset", "mnist")
    data_options = {k: values.pop(k) for k in ("image_size", "stream", "num_workers") if k in values}
    curriculum = values.pop("curriculum", None)
    if curriculum is not None:
        if not isinstance(curriculum, dict) or "scores_file" not in curriculum:
            raise ConfigError(f"curriculum must be a mapping with a scores_file, got {curriculum!r}")
        values["curriculum"] = _settings_from(Curriculum, curriculum, "curriculum")
    settings = _settings_from(ExpertSettings, values, "expert")
    data, _ = whiten_dataset(load_dataset(dataset, data_root, **data_options), settings.zca_eps)
    order = None
    if settings.curriculum is not None:
        scores = load_scores(settings.curriculum.scores_file)
        if len(scores.values) != len(data.train):
            raise ConfigError(f"{settings.curriculum.scores_file} scores {len(scores.values)} images but the "
                              f"{dataset} training set has {len(data.train)}")
        order = scores.order_by_class(data.spec.num_classes)
    seed_everything(settings.seed)
    return train_experts(data, out_dir, settings, select_device(device), order, progress)


def run_scores(dataset: str, score: str, out: str | os.PathLike, *, model: str = "convnet", num_networks: int = 3,
               epochs: int = 2, seed: int = 0, zca_eps: float | None = None, device: str = "auto",
               data_root: str | None = None, image_size: int | None = None, stream: str = "auto",
               num_workers: int = 2):
    """Compute per-sample difficulty scores of ``dataset``'s training set and save them to ``out``
    (``datadistill scores``); returns the :class:`~datadistill.selection.difficulty.DifficultyScores`.

    Raises:
        ConfigError / UnknownNameError: unknown score, model or dataset, invalid settings.
    """
    from datadistill.preprocess.dataset import whiten_dataset
    from datadistill.selection.difficulty import ScoreSettings, compute_scores, save_scores

    settings = ScoreSettings(model=model, num_networks=num_networks, epochs=epochs, seed=seed)
    data, _ = whiten_dataset(load_dataset(dataset, data_root, image_size=image_size, stream=stream,
                                          num_workers=num_workers), zca_eps)
    result = compute_scores(score, data.train, data.spec, settings, select_device(device))
    result.metadata["zca_eps"] = zca_eps
    save_scores(result, out)
    return result


def run_baseline(dataset: str, out_dir: str | os.PathLike, *, device: str = "auto", data_root: str | None = None,
                 progress=None, image_size: int | None = None, stream: str = "auto", num_workers: int = 2,
                 **settings):
    """Train one network on the whole real training set (``datadistill baseline``) and write
    ``out_dir/baseline.json`` (accuracy %, training seconds, FLOPs, per-epoch curve).

    ``settings`` are :class:`~datadistill.evaluation.baseline.BaselineSettings` fields (None values ignored).

    Returns:
        The :class:`~datadistill.evaluation.baseline.BaselineResult`.

    Raises:
        ConfigError / UnknownNameError / DatasetNotFoundError: bad setting, model or dataset.
    """
    from datadistill.evaluation.baseline import BaselineSettings, train_whole_data

    values = _settings_from(BaselineSettings, {k: v for k, v in settings.items() if v is not None}, "baseline")
    MODELS.get(values.model)
    out = check_output_folder(out_dir)
    data = load_dataset(dataset, data_root, image_size=image_size, stream=stream, num_workers=num_workers)
    result = train_whole_data(data, values, select_device(device), progress)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "baseline.json", json.dumps({**result.as_dict(), "package_version": __version__},
                                                        indent=2) + "\n")
    return result


def _read_baseline(path: str | os.PathLike) -> dict[str, Any]:
    from datadistill.errors import ConfigError

    p = Path(path)
    if p.is_dir():
        p = p / "baseline.json"
    if not p.is_file():
        raise ConfigError(f"baseline file {p} does not exist: expected a baseline.json written by `datadistill baseline`")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"baseline file {p} is not valid JSON ({exc})") from None
    need = ("dataset", "model", "accuracy", "train_seconds", "train_flops")
    if not isinstance(data, dict) or any(k not in data for k in need):
        raise ConfigError(f"baseline file {p} is not a datadistill baseline: expected the keys {', '.join(need)}")
    return data


def run_evaluate(path: str | os.PathLike, models: Sequence[str] = ("convnet",), *, out: str | os.PathLike | None = None,
                 baselines: Sequence[str | os.PathLike] = (), save_models: str | os.PathLike | None = None,
                 data_root: str | None = None, device: str = "auto", seed: int = 0, progress=None, **overrides):
    """Evaluate a saved synthetic set on one or more architectures (``datadistill evaluate``).

    Args:
        path: a ``.safetensors`` synthetic set.
        models: registered model names.
        out: folder for ``evaluation.json`` (and ``curves.json``, ``curves.png`` when ``curve_every``
            is set); None writes nothing.
        baselines: ``baseline.json`` files (or their folders) of ``datadistill baseline``.
        save_models: folder for the trained networks, ``<model>_<k>.safetensors`` (``datadistill test-model``).
        overrides: :class:`~datadistill.evaluation.EvalSettings` fields (None = default; the DSA
            strategy defaults to the dataset's).

    Returns:
        The :class:`~datadistill.evaluation.suite.CrossArchResult`.

    Raises:
        SyntheticSetFileError, DatasetNotFoundError, UnknownNameError, ConfigError: bad file, dataset,
            model, setting or baseline. Nothing is written then.
    """
    from datadistill.evaluation.suite import evaluate_architectures

    syn = load_synthetic_set(path)
    base = [_read_baseline(b) for b in baselines]
    for target in (out, save_models):
        if target is not None:
            check_output_folder(target)
    for name in models:
        MODELS.get(name)
    data = load_dataset_of(syn.metadata, data_root)
    if overrides.get("dsa_strategy") is None:
        overrides["dsa_strategy"] = data.spec.dsa_strategy
    settings = EvalSettings(**{"model": models[0] if models else "convnet",
                               **{k: v for k, v in overrides.items() if v is not None}})
    on_model = None
    if save_models is not None:
        from datadistill.io.model_file import save_model

        spec, folder = data.spec, Path(save_models)

        def on_model(model: str, k: int, net) -> None:
            folder.mkdir(parents=True, exist_ok=True)
            save_model(net, folder / f"{model}_{k}.safetensors", model=model, channels=spec.channels,
                       num_classes=spec.num_classes, image_size=spec.image_size, dataset=spec.name, mean=spec.mean,
                       std=spec.std, zca=syn.zca,
                       extra={"synthetic_set": str(path), "seed": seed + k, "epochs": settings.epochs})

    result = evaluate_architectures(syn, data.test, models, settings, select_device(device), seed=seed,
                                    baselines=base, progress=progress, on_model=on_model)
    result.metadata["file"] = str(path)
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "evaluation.json", json.dumps(result.as_dict(), indent=2) + "\n")
        curves = result.curves()
        if curves is not None:
            from datadistill.io.plots import plot_learning_curves

            atomic_write_text(folder / "curves.json", json.dumps(curves, indent=2) + "\n")
            plot_learning_curves(curves, folder / "curves.png")
    return result


def evaluate_saved_model(path: str | os.PathLike, *, data_root: str | None = None, device: str = "auto") -> dict[str, Any]:
    """Test a network saved by ``datadistill evaluate --save-models`` on its dataset's real test set
    (``datadistill test-model``), whitening the test images with the ZCA stored with it.

    Returns:
        ``{"model", "dataset", "accuracy" (percent), "per_class_accuracy" {class name: percent}, "test_images"}``.

    Raises:
        ModelFileError: missing, corrupt or foreign file. DatasetNotFoundError: its dataset is not on disk.
    """
    from datadistill.io.model_file import load_model

    from datadistill.evaluation.protocol import class_correct, per_class_percent

    net, meta, zca = load_model(path)
    data = load_dataset_of(meta, data_root, stream="off" if zca is not None else "auto")
    dev = select_device(device)
    test = data.test if zca is None else LabelledImages(zca.whiten(data.test.images), data.test.labels)
    correct, count = class_correct(net.to(dev), test, dev, data.spec.num_classes)
    rates = per_class_percent(correct, count)
    present = [r for r in rates if r is not None]
    return {"model": meta["model"], "dataset": meta["dataset"],
            "accuracy": 100.0 * int(correct.sum()) / max(len(test), 1),
            "balanced_accuracy": sum(present) / len(present) if present else None,
            "per_class_accuracy": dict(zip(data.spec.class_names, rates)), "test_images": len(test), "file": str(path)}


def run_import(path: str | os.PathLike, dataset: str, out: str | os.PathLike, *, experiment: int = 0,
               zca_eps: float | None = None, data_root: str | None = None) -> SyntheticSet:
    """Convert a synthetic set saved by the reference code (VICO's ``res_*.pt``; MTT/DATM/PAD's
    ``images_best.pt`` + ``labels_best.pt`` + ``lr_best.pt``) into a datadistill file (``datadistill import``).

    Files are read with ``torch.load(weights_only=True)``: nothing is unpickled.

    Args:
        dataset: the dataset the set was distilled from (its spec checks the shapes; with
            ``zca_eps``, its training set fits the ZCA the reference run whitened with).
        experiment: which experiment of a VICO file.
        zca_eps: the run used ZCA with this eps (MTT: 0.1 on CIFAR); the ZCA is refitted on the
            real training set (kornia, as the reference code) and stored with the set.

    Raises:
        SyntheticSetFileError: unreadable or malformed file. DatasetNotFoundError / UnknownNameError.
    """
    from datadistill.io.importers import import_reference
    from datadistill.preprocess import ZCA

    data = load_dataset(dataset, data_root)
    zca = ZCA.fit(data.train.images, eps=zca_eps) if zca_eps is not None else None
    syn = import_reference(path, data.spec, experiment=experiment, zca=zca)
    save_synthetic_set(syn, out)
    return syn
