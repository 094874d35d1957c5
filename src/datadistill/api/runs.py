"""The other commands' entry points: expert trajectories, difficulty scores, the whole-data
baseline, evaluation of a saved set (cross-architecture, against baselines), a saved evaluation
network, and import of other toolkits' files. Each reads its inputs, runs, and writes its outputs
atomically."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datadistill._version import __version__
from datadistill.data import LabelledImages, load_dataset, load_dataset_of
from datadistill.distributed import world
from datadistill.evaluation import EvalSettings
from datadistill.evaluation.paper import PAPER_PROTOCOLS, PROTOCOL_KEYS, eval_settings_for, paper_method
from datadistill.fsutil import atomic_write_text, check_output_folder, check_writable_file
from datadistill.io import SyntheticSet, load_synthetic_set, save_synthetic_set
from datadistill.models import MODELS
from datadistill.runtime import seed_everything, select_device
from datadistill.settings import settings_from

log = logging.getLogger("datadistill")


def run_experts(values: dict[str, Any], out_dir: str | os.PathLike, *, device: str = "auto",
                data_root: str | None = None, progress=None, on_start=None) -> Path:
    """Train and save expert trajectories (``datadistill experts``).

    Args:
        values: ``dataset`` plus :class:`~datadistill.trajectory.ExpertSettings` fields; ``curriculum``
            is a mapping of :class:`~datadistill.trajectory.Curriculum` fields (with ``scores_file``).
        out_dir: the trajectory folder (resumed when it already holds some epochs).
        progress, on_start: as :func:`~datadistill.trajectory.train_experts`'s (``(expert, epoch, test
            accuracy %)`` after each epoch; ``(experts, epochs)`` before the first).

    Raises:
        ConfigError: an unknown or invalid setting, a scores file that does not fit the training set,
            an output folder that cannot be written (checked first).
        ScoresFileError: unreadable scores file.
    """
    from datadistill.errors import ConfigError
    from datadistill.preprocess.dataset import whiten_dataset
    from datadistill.selection.difficulty import load_scores
    from datadistill.trajectory import Curriculum, ExpertSettings, train_experts

    check_output_folder(out_dir, "expert folder")  # before the data is read and any expert trained
    values = dict(values)
    dataset = values.pop("dataset", "mnist")
    data_options = {k: values.pop(k) for k in ("image_size", "stream", "num_workers") if k in values}
    curriculum = values.pop("curriculum", None)
    if curriculum is not None:
        if not isinstance(curriculum, dict) or "scores_file" not in curriculum:
            raise ConfigError(f"curriculum must be a mapping with a scores_file, got {curriculum!r}")
        values["curriculum"] = settings_from(Curriculum, curriculum, what="curriculum")
    settings = settings_from(ExpertSettings, values, what="expert")
    data, _ = whiten_dataset(load_dataset(dataset, data_root, **data_options), settings.zca_eps)
    order = None
    if settings.curriculum is not None:
        scores = load_scores(settings.curriculum.scores_file)
        if len(scores.values) != len(data.train):
            raise ConfigError(f"{settings.curriculum.scores_file} scores {len(scores.values)} images but the "
                              f"{dataset} training set has {len(data.train)}")
        order = scores.order_by_class(data.spec.num_classes)
    seed_everything(settings.seed)
    return train_experts(data, out_dir, settings, select_device(device), order, progress, on_start=on_start)


def run_scores(dataset: str, score: str, out: str | os.PathLike, *, model: str = "convnet", num_networks: int = 3,
               epochs: int = 2, seed: int = 0, zca_eps: float | None = None, device: str = "auto",
               data_root: str | None = None, image_size: int | None = None, stream: str = "auto",
               num_workers: int = 2, progress=None, on_epoch=None):
    """Compute per-sample difficulty scores of ``dataset``'s training set and save them to ``out``
    (``datadistill scores``); returns the :class:`~datadistill.selection.difficulty.DifficultyScores`.
    ``progress`` and ``on_epoch`` are :func:`~datadistill.selection.difficulty.compute_scores`'s.

    Raises:
        ConfigError / UnknownNameError: unknown score, model or dataset, invalid settings, an ``out``
            that cannot be written (checked first).
    """
    from datadistill.preprocess.dataset import whiten_dataset
    from datadistill.selection.difficulty import ScoreSettings, compute_scores, save_scores

    check_writable_file(out, "scores file")
    settings = ScoreSettings(model=model, num_networks=num_networks, epochs=epochs, seed=seed)
    data, _ = whiten_dataset(load_dataset(dataset, data_root, image_size=image_size, stream=stream,
                                          num_workers=num_workers), zca_eps)
    result = compute_scores(score, data.train, data.spec, settings, select_device(device), progress,
                            on_epoch=on_epoch)
    result.metadata["zca_eps"] = zca_eps
    if world().is_main:  # every rank has the scores (spread over the ranks under torchrun); rank 0 writes
        save_scores(result, out)
    return result


def run_baseline(dataset: str, out_dir: str | os.PathLike, *, device: str = "auto", data_root: str | None = None,
                 progress=None, image_size: int | None = None, stream: str = "auto", num_workers: int = 2,
                 **settings):
    """Train one network on the whole real training set (``datadistill baseline``) and write
    ``out_dir/baseline.json`` (accuracy %, training seconds, FLOPs, per-epoch curve) and the network,
    ``out_dir/model.safetensors`` (``datadistill test-model`` tests it; the teacher of ``evaluate
    --scores``).

    ``settings`` are :class:`~datadistill.evaluation.baseline.BaselineSettings` fields (None values ignored).

    Returns:
        The :class:`~datadistill.evaluation.baseline.BaselineResult`.

    Raises:
        ConfigError / UnknownNameError / DatasetNotFoundError: bad setting, model or dataset.
    """
    from datadistill.api.ranking import BASELINE_MODEL
    from datadistill.evaluation.baseline import BaselineSettings, train_whole_data
    from datadistill.io.model_file import save_model

    values = settings_from(BaselineSettings, {k: v for k, v in settings.items() if v is not None}, what="baseline")
    MODELS.get(values.model)
    out = check_output_folder(out_dir)
    data = load_dataset(dataset, data_root, image_size=image_size, stream=stream, num_workers=num_workers)
    trained = []
    result = train_whole_data(data, values, select_device(device), progress, on_model=trained.append)
    out.mkdir(parents=True, exist_ok=True)
    spec = data.spec
    save_model(trained[0], out / BASELINE_MODEL, model=values.model, channels=spec.channels,
               num_classes=spec.num_classes, image_size=spec.image_size, dataset=spec.name, mean=spec.mean,
               std=spec.std, extra={"baseline": True, "seed": values.seed, "epochs": result.epochs,
                                    "accuracy": result.accuracy})
    atomic_write_text(out / "baseline.json", json.dumps({**result.as_dict(), "package_version": __version__},
                                                        indent=2) + "\n")
    return result


def _read_baseline(path: str | os.PathLike) -> dict[str, Any]:
    from datadistill.api.ranking import read_baseline

    return {k: v for k, v in read_baseline(path).items() if k != "folder"}


def run_evaluate(path: str | os.PathLike, models: Sequence[str] = ("convnet",), *, out: str | os.PathLike | None = None,
                 baselines: Sequence[str | os.PathLike] = (), save_models: str | os.PathLike | None = None,
                 data_root: str | None = None, device: str = "auto", seed: int = 0, progress=None, on_epoch=None,
                 log_to: Sequence[str] = (), scores=None, teacher: str | os.PathLike | None = None, on_plan=None,
                 on_score=None, protocol: str = "ours", **overrides):
    """Evaluate a saved synthetic set on one or more architectures (``datadistill evaluate``).

    Args:
        path: a ``.safetensors`` synthetic set.
        models: registered model names.
        out: folder for ``evaluation.json`` (and ``curves.json``, ``curves.png`` when ``curve_every``
            is set); None writes nothing. Each network's result is recorded in
            ``out/evaluation_parts/<model>.json`` as it finishes, so that a rerun of an interrupted
            evaluation trains only the missing networks (:mod:`datadistill.evaluation.parts`); the
            folder is removed once ``evaluation.json`` is written.
        baselines: ``baseline.json`` files (or their folders) of ``datadistill baseline``.
        save_models: folder for the trained networks, ``<model>_<k>.safetensors`` (``datadistill test-model``).
        progress: called ``(model, k, test accuracy %)`` after each network; on_epoch: given an
            :class:`~datadistill.evaluation.EvalProgress` after every epoch (progress displays).
        log_to: experiment trackers (``tensorboard``, ``mlflow``, ``wandb``, ``csv``) the results, the
            settings, the set's grid and the files of ``out`` are logged to, under ``out``
            (:func:`datadistill.api.tracking.track_evaluation`).
        scores: a :class:`~datadistill.evaluation.ranking_protocol.RankingSettings`: also compute the
            DD-Ranking scores (HLR, IOR, LRS, ARS) on the first model (:mod:`datadistill.api.ranking`),
            written under ``ranking_scores`` in the result. Acc(real, hard) comes from the baseline of
            that model among ``baselines``; a ``baselines`` folder that holds no ``baseline.json`` yet
            is where it is trained (once) and kept. None: no scores.
        teacher: the scores' teacher network file (soft-label mode); default: the baseline's
            ``model.safetensors`` when it exists.
        on_plan: called with one line saying how many networks the scores train, before any work.
        on_score: called with a :class:`~datadistill.evaluation.ranking_protocol.RankingStep` after
            each network of the scores.
        protocol: ``ours`` (the same for every method), ``paper`` (the set's method's own) or
            ``paper:<method>`` (:mod:`datadistill.evaluation.paper`); recorded in ``evaluation.json``
            (``protocol``; ``protocol_overrides``: the protocol's settings given in ``overrides``;
            ``protocol_source``: a paper protocol's official files).
        overrides: :class:`~datadistill.evaluation.EvalSettings` fields replacing the protocol's
            (None = the protocol's; the DSA strategy of ``ours`` and of the DSA-based paper
            protocols is the dataset's).

    Returns:
        The :class:`~datadistill.evaluation.suite.CrossArchResult`.

    Raises:
        SyntheticSetFileError, DatasetNotFoundError, UnknownNameError, ConfigError: bad file, dataset,
            model, setting or baseline. Nothing is written then.
    """
    from datadistill.evaluation.parts import PARTS_FOLDER, EvalParts
    from datadistill.evaluation.suite import evaluate_architectures

    from datadistill.api.tracking import track_evaluation
    from datadistill.io.tracking import check_trackers

    check_trackers(log_to)  # before any work: a tracker's missing package, trackers without a folder
    from datadistill.errors import ConfigError

    if log_to and out is None:
        raise ConfigError("the trackers write under the output folder: give --out DIR with --log-to")
    from datadistill.api import ranking as rk

    syn = load_synthetic_set(path)
    method = paper_method(protocol, syn.metadata.get("method")) if protocol != "ours" else None
    base, new_baseline = rk.split_baselines(baselines, scores is not None)
    for target in (out, save_models):
        if target is not None:
            check_output_folder(target)
    for name in models:
        MODELS.get(name)
    data = load_dataset_of(syn.metadata, data_root)
    given = {k: v for k, v in overrides.items() if v is not None}

    def settings_for(model: str) -> EvalSettings:
        return eval_settings_for(protocol, method=method, dataset=data.spec.name, model=model,
                                 dsa_strategy=data.spec.dsa_strategy, overrides=given)

    settings = settings_for(models[0] if models else "convnet")
    if scores is not None:  # before any network is trained: the baseline, the teacher, the plan
        score_base = rk.scores_baseline(base, settings.model, syn.metadata.get("dataset"))
        if score_base is None and new_baseline is None:
            raise ConfigError(f"--scores needs a whole-data baseline of {settings.model} (Acc(real, hard)): give "
                              "--baseline DIR, a folder of `datadistill baseline --model "
                              f"{settings.model}`, or a new folder where it is trained and kept")
        teacher_file = rk.teacher_path(teacher, score_base)
        # a baseline trained now saves its network: the teacher
        plan = rk.plan_scores(syn, settings, scores, has_teacher=teacher_file is not None or score_base is None,
                              data=data, seed=seed)
        teacher_file = rk.load_teacher(teacher_file, syn) if teacher_file is not None else None  # checked now
        if on_plan is not None:
            on_plan(rk.describe_plan(plan, scores, settings, extra=settings.num_eval * len(set(models)),
                                     baseline=score_base is None))
        if score_base is None:
            score_base = rk.train_scores_baseline(syn.metadata["dataset"], new_baseline, settings.model,
                                                  data_root=data_root, device=device,
                                                  image_size=data.spec.image_size[0])
            base.append(score_base)
            teacher_file = rk.load_teacher(rk.teacher_path(teacher, score_base), syn)
    base = [{k: v for k, v in b.items() if k != "folder"} for b in base]
    on_model, keep = None, None
    if save_models is not None:
        from datadistill.io.model_file import save_model

        spec, folder = data.spec, Path(save_models)

        def on_model(model: str, k: int, net) -> None:
            folder.mkdir(parents=True, exist_ok=True)
            save_model(net, folder / f"{model}_{k}.safetensors", model=model, channels=spec.channels,
                       num_classes=spec.num_classes, image_size=spec.image_size, dataset=spec.name, mean=spec.mean,
                       std=spec.std, zca=syn.zca,
                       extra={"synthetic_set": str(path), "seed": seed + k, "epochs": settings_for(model).epochs})

        def keep(model: str, k: int) -> bool:  # a network is reused only with its saved file
            return (Path(save_models) / f"{model}_{k}.safetensors").is_file()

    parts = EvalParts(Path(out) / PARTS_FOLDER, keep=keep) if out is not None else None

    def report(model: str, k: int, acc: float) -> None:
        log.info("%s network %d of %d: test accuracy %.2f %%", model, k + 1, settings.num_eval, acc)
        if progress is not None:
            progress(model, k, acc)

    result = evaluate_architectures(syn, data.test, models, settings, select_device(device), seed=seed,
                                    baselines=base, progress=report, on_model=on_model, parts=parts,
                                    on_epoch=on_epoch, settings_for=settings_for)
    result.metadata.update(file=str(path), protocol_overrides=sorted(k for k in given if k in PROTOCOL_KEYS),
                           protocol_source=PAPER_PROTOCOLS[method].source if method else None)
    if scores is not None:
        ranked = rk.run_ranking(syn, data, settings, scores, baseline=score_base, teacher=teacher_file,
                                device=select_device(device), seed=seed, progress=on_score)
        result.metadata["ranking_scores"] = ranked.as_dict()
    if out is not None and world().is_main:  # every rank has the result; rank 0 writes
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "evaluation.json", json.dumps(result.as_dict(), indent=2) + "\n")
        curves = result.curves()
        if curves is not None:
            from datadistill.io.plots import plot_learning_curves

            atomic_write_text(folder / "curves.json", json.dumps(curves, indent=2) + "\n")
            plot_learning_curves(curves, folder / "curves.png")
        parts.remove()  # the results are in evaluation.json now
        track_evaluation(log_to, folder, {"file": str(path), "models": list(models), "seed": seed, "device": device,
                                          **settings.as_dict()}, result.as_dict(), syn,
                         [folder / name for name in ("evaluation.json", "curves.json", "curves.png")])
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
    """Convert a synthetic set into a datadistill file (``datadistill import``): one saved by the
    reference code (VICO's ``res_*.pt``; MTT/DATM/PAD's ``images_best.pt`` + ``labels_best.pt`` +
    ``lr_best.pt``), an image folder (one sub-folder per class), a Hugging Face dataset saved with
    ``save_to_disk``, or an ``.npz`` written by ``datadistill export`` (:mod:`datadistill.io.import_sets`).

    ``.pt`` files are read with ``torch.load(weights_only=True)`` and ``.npz`` files with
    ``allow_pickle=False``: nothing is unpickled.

    Args:
        dataset: the dataset the set was distilled from (its spec checks the shapes and class names and
            gives the mean/std that image files are normalised with; with ``zca_eps``, its training set
            fits the ZCA).
        experiment: which experiment of a VICO file.
        zca_eps: the run used ZCA with this eps (MTT: 0.1 on CIFAR); the ZCA is refitted on the
            pixels of the real training set (kornia, as the reference code) and stored with the set. MTT files hold
            whitened images; an image folder's or Hugging Face dataset's images are whitened with it.

    Raises:
        SyntheticSetFileError: unreadable or malformed file. DatasetNotFoundError / UnknownNameError.
        ConfigError: ``out`` cannot be written (checked first).
    """
    from datadistill.io.importers import import_reference
    from datadistill.preprocess.dataset import fit_zca

    check_writable_file(out, "output file")
    data = load_dataset(dataset, data_root)
    zca = fit_zca(data, zca_eps) if zca_eps is not None else None
    syn = import_reference(path, data.spec, experiment=experiment, zca=zca)
    save_synthetic_set(syn, out)
    return syn


def run_export(file: str | os.PathLike, fmt: str, out: str | os.PathLike) -> tuple[SyntheticSet, Path]:
    """Write the synthetic set of ``file`` as an image folder, an ``.npz`` file or a Hugging Face
    dataset (``datadistill export``; :mod:`datadistill.io.export` gives the layouts), atomically.

    Returns:
        (the set read, the path written).

    Raises:
        ConfigError: an unknown format, an existing ``out`` (an empty folder is accepted for the folder
            formats), an ``out`` that cannot be written, or ``datasets`` not installed for ``hf``
            (checked before the set is read).
        SyntheticSetFileError: unreadable ``file``; soft labels (or other than 1 or 3 channels) for
            ``imagefolder``.
    """
    from datadistill.io.export import check_export, export_synthetic_set

    check_export(None, out, fmt)
    syn = load_synthetic_set(file)
    return syn, export_synthetic_set(syn, out, fmt)
