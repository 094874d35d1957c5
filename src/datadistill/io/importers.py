"""Import synthetic sets saved by the reference code of other toolkits into a :class:`SyntheticSet`.

Accepted files:

* **VICO-UoE DatasetCondensation** (DC, DSA, DM) and the official DataDAM code:
  ``res_{method}_{dataset}_{model}_{ipc}ipc.pt``, written with
  ``torch.save({'data': data_save, 'accs_all_exps': accs_all_exps}, path)``, where ``data_save`` holds one
  ``[image_syn, label_syn]`` pair per experiment: images (N, C, H, W) float32 normalised with the
  dataset's mean/std, labels (N,) int64. ``accs_all_exps`` (accuracies, often numpy scalars) is ignored.
* **MTT / DATM / PAD** run folders: ``images_best.pt`` (N, C, H, W) float32 normalised (or, when the
  run used ZCA, whitened pixels, never normalised), ``labels_best.pt`` ((N,) int64 hard labels in MTT,
  (N, K) float32 learned soft-label logits in DATM/PAD) and the optional ``lr_best.pt`` (the learned
  lr: a 0-d or 1-element tensor, or a Python number). DATM and PAD write these files into a ``Normal`` subfolder of the run
  folder, which is looked into as well. The per-iteration files ``images_<it>.pt``/``labels_<it>.pt``/
  ``lr_<it>.pt`` (and DATM's ``ema_images_<it>.pt``/``ema_labels_<it>.pt``/``ema_lr_<it>.pt``) are
  imported by naming the images file. ``images_zca_<it>.pt`` holds the images of iteration ``<it>``
  mapped back out of the ZCA space, i.e. pixels (the reference drops ``Normalize`` with ``--zca``); it
  pairs with ``labels_<it>.pt`` and is imported without ZCA, normalised with the dataset's mean/std.

Every file is read with ``torch.load(path, map_location="cpu", weights_only=True)``: only tensors,
containers, numbers and numeric numpy scalars/arrays are rebuilt; a file that needs any other Python
object is refused and nothing in it is executed.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from datadistill.data.base import DatasetSpec
from datadistill.errors import SyntheticSetFileError, error_context
from datadistill.io.import_sets import exported_form, import_exported
from datadistill.io.synthetic_set import SyntheticSet, synthetic_set_metadata
from datadistill.preprocess.zca import ZCA

ACCEPTED_FORMS = ("a VICO/DataDAM result file res_<method>_<dataset>_<model>_<ipc>ipc.pt",
                  "an MTT/DATM/PAD run folder holding images_best.pt and labels_best.pt (or a Normal "
                  "subfolder holding them)",
                  "an MTT/DATM/PAD images_<it>.pt, images_best.pt, images_zca_<it>.pt or ema_images_<it>.pt file",
                  "an image folder (one sub-folder of images per class, named by the class)",
                  "a Hugging Face dataset folder written by save_to_disk",
                  "an .npz file written by datadistill export")
# prefix "ema_" (DATM's EMA copies); suffix "best", an iteration, or "zca_<it>" (unwhitened images)
_IMAGES_NAME = re.compile(r"^(?P<prefix>(?:ema_)?)images_(?P<suffix>.+)\.pt$")
_RUN_SUBFOLDER = "Normal"  # DATM/PAD write images_best.pt etc. into <run>/Normal/
# words of torch's weights_only messages that refuse an object (others mean a corrupt pickle stream)
_OBJECT_WORDS = ("GLOBAL", "class", "Can only build", "reduce", "instantiate")
_UNSAFE_NUMPY_DTYPES = {"ObjectDType", "VoidDType", "StrDType", "BytesDType", "StringDType",
                        "DateTime64DType", "TimeDelta64DType"}


def import_reference(path: str | os.PathLike, spec: DatasetSpec, *, experiment: int = 0,
                     zca: ZCA | None = None) -> SyntheticSet:
    """Import a file or run folder of another toolkit, choosing the reader from its name.

    A ``.pt`` file whose name starts with ``res_`` is read by :func:`import_vico` (with ``experiment``);
    an ``images_*.pt`` file or a folder holding ``images_best.pt`` (or ``Normal/images_best.pt``) by
    :func:`import_mtt` (with ``zca``); a saved Hugging Face dataset folder, any other folder with
    sub-folders (an image folder) or an ``.npz`` file by
    :func:`datadistill.io.import_sets.import_exported` (with ``zca``).

    Raises:
        SyntheticSetFileError: the path does not exist, has none of the accepted forms (the message lists
            them), or the reader refuses it.
    """
    path = Path(path)
    if not path.exists():
        raise SyntheticSetFileError(f"{path} does not exist; expected {_forms()}")
    mtt_run = path.is_dir() and ((path / _RUN_SUBFOLDER).is_dir() or any(path.glob("*.pt")))
    if not mtt_run and exported_form(path) is not None:
        return import_exported(path, spec, zca=zca)
    if path.is_dir() or _IMAGES_NAME.match(path.name):
        return import_mtt(path, spec, zca=zca)
    if path.suffix == ".pt" and path.name.startswith("res_"):
        if zca is not None:
            raise SyntheticSetFileError(f"{path}: a VICO/DataDAM result file is never ZCA-whitened; "
                                        "import it without ZCA")
        return import_vico(path, spec, experiment=experiment)
    raise SyntheticSetFileError(f"{path} is not a file this importer reads; expected {_forms()}")


def import_vico(path: str | os.PathLike, spec: DatasetSpec, experiment: int = 0) -> SyntheticSet:
    """Import experiment ``experiment`` of a VICO-UoE DatasetCondensation (DC/DSA/DM) or DataDAM result file.

    Args:
        path: the ``res_*.pt`` file, a dict ``{'data': [[images, labels], ...], 'accs_all_exps': ...}``.
        spec: the dataset the set was distilled from (image shape, classes, mean/std).
        experiment: index of the ``[images, labels]`` pair in ``data`` (0 ≤ experiment < number of pairs).

    Returns:
        A set with hard labels, no learned lr, no ZCA, and metadata ``method="imported:vico"``,
        ``source_file`` and ``source_experiment``.

    Raises:
        SyntheticSetFileError: missing or unreadable file, a file needing Python objects beyond tensors
            and containers, the wrong structure, an experiment index out of range, images whose shape
            differs from ``spec``, labels that are not int (N,) class indices of ``spec``, non-finite
            values, or different numbers of images and labels.
    """
    path = Path(path)
    obj = _load_pt(path)
    if not isinstance(obj, dict) or "data" not in obj:
        found = f"a dict with keys {sorted(map(str, obj))}" if isinstance(obj, dict) else type(obj).__name__
        raise SyntheticSetFileError(f"{path}: expected a dict with key 'data' (a list of [images, labels] pairs, "
                                    f"as DC/DSA/DM/DataDAM save), found {found}")
    data = obj["data"]
    if not isinstance(data, (list, tuple)) or not data:
        raise SyntheticSetFileError(f"{path}: 'data' must be a non-empty list of [images, labels] pairs, "
                                    f"found {_describe(data)}")
    if isinstance(experiment, bool) or not isinstance(experiment, int) or not 0 <= experiment < len(data):
        raise SyntheticSetFileError(f"{path}: experiment {experiment!r} is out of range; the file holds "
                                    f"{len(data)} experiment(s), accepted 0..{len(data) - 1}")
    pair = data[experiment]
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        raise SyntheticSetFileError(f"{path}: data[{experiment}] must be an [images, labels] pair, "
                                    f"found {_describe(pair)}")
    images = _check_images(path, pair[0], spec, f"data[{experiment}][0] (images)")
    labels = _check_labels(path, pair[1], spec, len(images), f"data[{experiment}][1] (labels)", soft=False)
    meta = _metadata(spec, "imported:vico", labels, path)
    meta["source_experiment"] = experiment
    with error_context(str(path)):
        return SyntheticSet(images, labels, None, meta).validate()


def import_mtt(path: str | os.PathLike, spec: DatasetSpec, zca: ZCA | None = None) -> SyntheticSet:
    """Import a synthetic set saved by MTT, DATM or PAD.

    Args:
        path: a run folder (its ``images_best.pt``, ``labels_best.pt`` and optional ``lr_best.pt`` are read,
            from the folder or else from its ``Normal`` subfolder), or an ``images_<suffix>.pt`` file
            paired with ``labels_<suffix>.pt`` and the optional ``lr_<suffix>.pt`` of the same folder
            (or of its ``Normal`` subfolder).
        spec: the dataset the set was distilled from.
        zca: pass it when the run used ZCA (``--zca``): the ZCA of
            :func:`datadistill.preprocess.dataset.fit_zca` (fitted on the pixels of the real training
            set, as the reference code), with the eps of the run (0.1 in MTT/DATM/PAD); it is stored
            in the set. None when the run did not whiten.

    Returns:
        A set with hard labels (MTT) or soft-label logits (DATM/PAD), the learned lr when a lr file
        exists, and metadata ``method="imported:mtt"`` and ``source_file`` (the images file read).

    Raises:
        SyntheticSetFileError: missing or unreadable files, a file needing Python objects beyond tensors
            and containers, images whose shape differs from ``spec`` (or from ``zca``), labels that are
            neither int (N,) class indices nor float (N, K) with K classes, non-finite values, different
            numbers of images and labels, a learned lr that is not a finite number > 0, or a ZCA given
            with an ``images_zca_*.pt`` file (already unwhitened).
    """
    images_path, labels_path, lr_path, unwhitened = _mtt_files(Path(path))
    if unwhitened and zca is not None:
        raise SyntheticSetFileError(f"{images_path}: images_zca_* files hold images already mapped back out "
                                    "of the ZCA space; import it without ZCA, or import images_<it>.pt with ZCA")
    images = _check_images(images_path, _load_pt(images_path), spec, "images")
    labels = _check_labels(labels_path, _load_pt(labels_path), spec, len(images), "labels", soft=True,
                           images_path=images_path)
    lr = None if lr_path is None else _check_lr(lr_path, _load_pt(lr_path))
    if zca is not None and zca.shape != tuple(images.shape[1:]):
        raise SyntheticSetFileError(f"{images_path}: the ZCA was fitted on images of shape {zca.shape}, the "
                                    f"file holds images of shape {tuple(images.shape[1:])}")
    if unwhitened:  # pixels (ZCA inverse of a run without Normalize): normalised like every set here
        view = (1, -1, 1, 1)
        images = (images - torch.tensor(spec.mean).view(view)) / torch.tensor(spec.std).view(view)
    with error_context(str(images_path)):
        return SyntheticSet(images, labels, lr, _metadata(spec, "imported:mtt", labels, images_path), zca).validate()


def _forms() -> str:
    return "; ".join(ACCEPTED_FORMS)


def _mtt_files(path: Path) -> tuple[Path, Path, Path | None, bool]:
    """(images file, labels file, lr file or None, images already unwhitened) of an MTT-family path."""
    if not path.exists():
        raise SyntheticSetFileError(f"{path} does not exist; expected {_forms()}")
    if path.is_dir():
        folder = next((f for f in (path, path / _RUN_SUBFOLDER) if (f / "images_best.pt").is_file()), None)
        if folder is None:
            raise SyntheticSetFileError(f"{path}: no images_best.pt in the folder or in its {_RUN_SUBFOLDER} "
                                        f"subfolder; expected {_forms()}")
        images_path, prefix, suffix = folder / "images_best.pt", "", "best"
    else:
        match = _IMAGES_NAME.match(path.name)
        if match is None:
            raise SyntheticSetFileError(f"{path} is not an images_<it>.pt file; expected {_forms()}")
        images_path, prefix, suffix = path, match["prefix"], match["suffix"]
    unwhitened = suffix.startswith("zca_") and not prefix
    if unwhitened:
        suffix = suffix[len("zca_"):]
    folders = (images_path.parent, images_path.parent / _RUN_SUBFOLDER)

    def companion(kind: str) -> Path | None:
        return next((f / f"{prefix}{kind}_{suffix}.pt" for f in folders
                     if (f / f"{prefix}{kind}_{suffix}.pt").is_file()), None)

    labels_path = companion("labels")
    if labels_path is None:
        raise SyntheticSetFileError(f"{images_path}: its labels file {prefix}labels_{suffix}.pt is missing "
                                    f"(looked in {folders[0]} and {folders[1]})")
    return images_path, labels_path, companion("lr"), unwhitened


def _numpy_safe_globals() -> list:
    """numpy scalar/array reconstructors and numeric dtypes, which weights_only refuses by default.

    DC/DSA/DM store their accuracies as numpy float64 scalars in ``accs_all_exps``. Rebuilding a numeric
    numpy scalar or array from its bytes runs no user code; object, string and void dtypes stay refused.
    """
    try:
        import numpy as np
        try:
            from numpy._core import multiarray
        except ImportError:  # numpy 1.x
            from numpy.core import multiarray
    except ImportError:
        return []
    entries: list = [np.dtype, np.ndarray]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # pickled by numpy 1.x / 2.x
        entries += [(multiarray.scalar, f"{module}.scalar"), (multiarray._reconstruct, f"{module}._reconstruct")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        entries += [getattr(dtypes, name) for name in dir(dtypes)
                    if name.endswith("DType") and name not in _UNSAFE_NUMPY_DTYPES]
    return entries


def _load_pt(path: Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with every failure as one error line."""
    if not path.is_file():
        raise SyntheticSetFileError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    safe = getattr(torch.serialization, "safe_globals", None)
    context = safe(_numpy_safe_globals()) if safe is not None else contextlib.nullcontext()
    try:
        with context:
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        text = str(exc)
        first = " ".join(text.split())[:300]
        if isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in text:
            first = _refusal_reason(text)
            if any(word in first for word in _OBJECT_WORDS):
                raise SyntheticSetFileError(
                    f"{path}: refused by torch.load(weights_only=True): the file holds pickled Python objects "
                    f"other than tensors, lists, dicts and numbers, which are never loaded ({first})") from exc
        first = first or "the file is empty or truncated"
        raise SyntheticSetFileError(f"{path} is not a readable PyTorch file ({type(exc).__name__}: {first})") from exc


def _refusal_reason(text: str) -> str:
    """The line of torch's multi-line weights_only error that names the refused object, without its advice."""
    boilerplate = ("Weights only load failed", "(1)", "(2)", "Check the documentation", "Please file an issue")
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith(boilerplate)]
    reason = next((line for line in lines if "GLOBAL" in line), lines[0] if lines else "")
    reason = reason.removeprefix("WeightsUnpickler error: ")
    return reason.split(" Please use", 1)[0]  # drop torch's advice to allowlist the object


def _describe(obj: Any) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a {obj.dtype} tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of length {len(obj)}"
    return f"a {type(obj).__name__}"


def _check_images(path: Path, obj: Any, spec: DatasetSpec, what: str) -> torch.Tensor:
    want = (spec.channels, *spec.image_size)
    if not isinstance(obj, torch.Tensor) or not obj.is_floating_point() or obj.dim() != 4:
        raise SyntheticSetFileError(f"{path}: {what} must be a float tensor (N, C, H, W), found {_describe(obj)}")
    if tuple(obj.shape[1:]) != want:
        raise SyntheticSetFileError(f"{path}: {what} of shape {tuple(obj.shape)} do not match dataset "
                                    f"{spec.name!r}, whose images are (N, {', '.join(map(str, want))})")
    if obj.shape[0] == 0:
        raise SyntheticSetFileError(f"{path}: {what} hold no image")
    images = obj.detach().to(torch.float32).contiguous().clone()
    bad = int((~torch.isfinite(images)).sum())
    if bad:
        raise SyntheticSetFileError(f"{path}: {what} hold {bad} non-finite value(s) (NaN or infinity)")
    return images


def _check_labels(path: Path, obj: Any, spec: DatasetSpec, n: int, what: str, soft: bool,
                  images_path: Path | None = None) -> torch.Tensor:
    k = spec.num_classes
    accepted = f"int (N,) class indices in 0..{k - 1}" + (f" or float (N, {k}) soft labels" if soft else "")
    if not isinstance(obj, torch.Tensor):
        raise SyntheticSetFileError(f"{path}: {what} must be {accepted}, found {_describe(obj)}")
    labels = obj.detach()
    if labels.dim() == 1 and not labels.is_floating_point() and not labels.is_complex() and labels.dtype != torch.bool:
        labels = labels.to(torch.int64).contiguous().clone()
        outside = labels[(labels < 0) | (labels >= k)]
        if outside.numel():
            raise SyntheticSetFileError(f"{path}: {what} hold class {int(outside[0])} out of range; dataset "
                                        f"{spec.name!r} has {k} classes, accepted 0..{k - 1}")
    elif soft and labels.dim() == 2 and labels.is_floating_point() and labels.shape[1] == k:
        labels = labels.to(torch.float32).contiguous().clone()
        bad = int((~torch.isfinite(labels)).sum())
        if bad:
            raise SyntheticSetFileError(f"{path}: {what} hold {bad} non-finite value(s) (NaN or infinity)")
    else:
        raise SyntheticSetFileError(f"{path}: {what} must be {accepted}, found {_describe(obj)}")
    if labels.shape[0] != n:
        source = f" in {images_path}" if images_path is not None else ""
        raise SyntheticSetFileError(f"{path}: {labels.shape[0]} labels for {n} images{source}")
    return labels


def _check_lr(path: Path, obj: Any) -> float:
    if isinstance(obj, torch.Tensor) and obj.numel() == 1 and not obj.is_complex() and obj.dtype != torch.bool:
        lr = float(obj.detach().reshape(()))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        lr = float(obj)
    else:
        raise SyntheticSetFileError(f"{path}: the learned lr must be a 0-d or 1-element tensor or a number, "
                                    f"found {_describe(obj)}")
    if not (math.isfinite(lr) and lr > 0):
        raise SyntheticSetFileError(f"{path}: the learned lr is {lr!r}; accepted: a finite number > 0")
    return lr


def _metadata(spec: DatasetSpec, method: str, labels: torch.Tensor, source: Path) -> dict[str, Any]:
    """The keys :func:`datadistill.api.distill` writes, for an imported set, plus ``source_file``."""
    from datadistill._version import __version__

    k = spec.num_classes
    hard = labels if labels.dim() == 1 else labels.argmax(dim=1)
    counts = torch.bincount(hard, minlength=k)
    balanced = bool((counts == counts[0]).all()) and int(counts[0]) > 0
    return synthetic_set_metadata(spec, method=method, ipc=int(counts[0]) if balanced else None, init=None,
                                  model=None, seed=None, iterations=None, config={}, package_version=__version__,
                                  source_file=str(source))


__all__ = ["ACCEPTED_FORMS", "import_mtt", "import_reference", "import_vico"]
