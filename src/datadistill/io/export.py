"""Export a synthetic set to formats other code reads (``datadistill export FILE --format F OUT``).

* ``imagefolder``: a folder ``OUT/<class>/<index>.png`` with one sub-folder per class of the dataset,
  named by the class name (``/``, ``\\`` and NUL become ``_``; ``.`` and ``..`` become ``_``), empty
  for a class without images, and one 8-bit PNG per image (grey for 1 channel, RGB for 3), named by
  its index in the set (6 digits or more). The pixels are :meth:`SyntheticSet.pixels` (ZCA and
  normalisation undone, clamped to [0, 1]) rounded to the nearest of the 256 levels ``k / 255``:
  an image read back is within half a grey level (0.5 / 255) of the set's pixels. ``OUT/datadistill.json``
  holds the metadata. Hard labels only: a set with soft labels is refused (a folder gives one class
  per image; ``npz`` and ``hf`` keep soft labels). ``torchvision.datasets.ImageFolder(OUT)`` reads
  it, with its own class order (sorted folder names), not necessarily the dataset's.
* ``npz``: one uncompressed NumPy file ``OUT`` (its name must end in ``.npz``): ``images`` (N, C, H, W)
  float32 as stored (normalised with the metadata's mean/std; with a ZCA, whitened instead:
  ``(pixels - zca_mean) @ zca_transform`` on the flattened pixels ``x * std + mean`` when the metadata's
  ``zca`` has a ``normalisation``, on the normalised images when it has none, the files of before
  issue #21), ``labels`` (N,) int64 or (N, K) float32 as stored, ``metadata`` (a 0-d unicode array: the
  metadata JSON), ``learned_lr`` (0-d float64) when the set has one, and ``zca_mean`` (1, D),
  ``zca_transform``, ``zca_inverse`` (D, D) float32 when it holds a ZCA. ``numpy.load(OUT)`` reads
  it with no pickle; importing it back gives the set bit for bit.
* ``hf``: a Hugging Face ``datasets.Dataset`` written with ``save_to_disk`` into the folder ``OUT``
  (needs the optional ``datasets`` package: ``pip install datadistill[hf]``). Columns: ``image``
  ``Array3D`` float32 (C, H, W), normalised with the metadata's mean/std and *not* whitened (the ZCA
  is undone: a dataset has no place for its D×D matrices; ``--zca-eps`` on import whitens again);
  ``label`` a ``ClassLabel`` named by the dataset's class names (the argmax for soft labels);
  ``soft_label`` (K,) float32 as stored, for soft labels only. ``info.description`` holds the
  metadata JSON. Float32 is kept (no 8-bit rounding): a set without ZCA comes back bit for bit.

Every format carries the metadata of the file plus ``label_kind``, ``learned_lr`` and ``export``
(``format``, ``images``: what the stored numbers are, ``package_version``, and ``zca_undone``:
the ZCA's metadata, ``{"eps": …, "normalisation": …}``, when the ZCA was undone). The output is
written into a temporary sibling of ``OUT`` and renamed into place: an interrupted export leaves
nothing at ``OUT``. An existing ``OUT`` is refused, except an empty folder for the folder formats.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datadistill.errors import ConfigError, SyntheticSetFileError
from datadistill.fsutil import atomic_write, atomic_write_text, check_writable_file, check_writable_folder
from datadistill.io.synthetic_set import SyntheticSet

EXPORT_FORMATS = ("imagefolder", "npz", "hf")
METADATA_FILE = "datadistill.json"  # the metadata of an exported image folder
HF_INSTALL = "pip install datadistill[hf]"
IMAGES = {"imagefolder": "8-bit PNG pixels: pixel = value / 255, ZCA and normalisation undone, clamped to [0, 1]",
          "npz": "as stored: float32 (pixel - mean) / std per channel; with zca_* arrays, ZCA-whitened instead "
                 "((pixels - zca_mean) @ zca_transform, on pixels when metadata zca has a normalisation)",
          "hf": "float32 (pixel - mean) / std per channel, never ZCA-whitened"}
_UNSAFE = re.compile(r"[/\\\x00]")


def require_datasets():
    """The ``datasets`` module, or one clear error saying which extra installs it."""
    try:
        import datasets
    except ImportError:
        raise ConfigError("the Hugging Face format needs the 'datasets' package, which is not installed: "
                          f"{HF_INSTALL}") from None
    return datasets


@contextlib.contextmanager
def quiet_datasets(datasets) -> Iterator[None]:
    """``datasets``' progress bars off for the duration (a clean terminal), then as they were."""
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def class_folder_names(class_names: list[str]) -> list[str]:
    """The sub-folder name of each class in an exported image folder (the class name, made a valid
    file name). Raises SyntheticSetFileError when two classes would share a folder."""
    names = [_UNSAFE.sub("_", str(n)) for n in class_names]
    names = ["_" * max(len(n), 1) if n in ("", ".", "..") else n for n in names]
    if len(set(names)) != len(names):
        raise SyntheticSetFileError(f"class names {list(class_names)} give the same folder name twice "
                                    f"({names}); they cannot be exported as an image folder")
    return names


def class_names_of(syn: SyntheticSet) -> list[str]:
    """The set's class names (metadata ``class_names``; else ``"0"``, ``"1"``, … for its K classes)."""
    names = syn.metadata.get("class_names")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    k = syn.metadata.get("num_classes") or (syn.labels.shape[1] if syn.labels.dim() == 2
                                            else int(syn.labels.max()) + 1)
    return [str(i) for i in range(int(k))]


def export_metadata(syn: SyntheticSet, fmt: str) -> dict[str, Any]:
    """The metadata written with an export in format ``fmt`` (JSON values only)."""
    from datadistill._version import __version__

    meta = {k: v for k, v in syn.metadata.items() if k != "zca"}
    meta.update(label_kind=syn.label_kind, learned_lr=syn.learned_lr)
    export: dict[str, Any] = {"format": fmt, "images": IMAGES[fmt], "package_version": __version__}
    if syn.zca is not None:
        if fmt == "npz":
            meta["zca"] = syn.zca.metadata()
        else:
            export["zca_undone"] = syn.zca.metadata()
    meta["export"] = export
    return meta


def check_export(syn: SyntheticSet | None, out: str | os.PathLike, fmt: str) -> Path:
    """Refuse, before any work, what an export of ``syn`` (None: not read yet) to ``out`` in ``fmt``
    cannot do: an unknown format, an existing ``out`` (but an empty folder for the folder formats),
    an npz name without ``.npz``, a location that cannot be written, the ``datasets`` package missing
    (``hf``), soft labels or a channel count other than 1 and 3 (``imagefolder``).

    Raises:
        ConfigError: the format, the output location or the missing package.
        SyntheticSetFileError: the set cannot be written in this format.
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; accepted: {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    if fmt == "npz":
        if out.suffix != ".npz":
            raise ConfigError(f"npz output {out} must be a file name ending in .npz")
        if out.exists() or out.is_symlink():
            raise ConfigError(f"output {out} already exists; choose a new name or remove it")
        check_writable_file(out, "npz output")
    else:
        if out.is_dir() and any(out.iterdir()):
            raise ConfigError(f"output folder {out} exists and is not empty; choose a new name or remove it")
        if out.exists() and not out.is_dir():
            raise ConfigError(f"output {out} exists and is not a folder; choose a new name or remove it")
        check_writable_folder(out, "output folder")
    if fmt == "hf":
        require_datasets()
    if fmt == "imagefolder" and syn is not None:
        if syn.labels.dim() != 1:
            raise SyntheticSetFileError(f"the set has soft labels ({syn.label_kind}); an image folder holds one "
                                        "class per image and would lose them: export it with --format npz or hf, "
                                        "which keep soft labels")
        if syn.images.shape[1] not in (1, 3):
            raise SyntheticSetFileError(f"images of {syn.images.shape[1]} channels cannot be PNG files "
                                        "(1 or 3 channels); export it with --format npz or hf")
        class_folder_names(class_names_of(syn))
    return out


def export_synthetic_set(syn: SyntheticSet, out: str | os.PathLike, fmt: str) -> Path:
    """Write ``syn`` to ``out`` in format ``fmt`` (``imagefolder``, ``npz`` or ``hf``; see the module
    docstring for the layouts), atomically. Returns ``out`` as a ``Path``.

    Raises:
        ConfigError / SyntheticSetFileError: what :func:`check_export` refuses (checked first).
    """
    out = check_export(syn, out, fmt)
    meta = export_metadata(syn, fmt)
    if fmt == "npz":
        return atomic_write(out, lambda tmp: _write_npz(syn, meta, tmp))
    if fmt == "imagefolder":
        return _write_folder(out, lambda tmp: _write_imagefolder(syn, meta, tmp))
    return _write_folder(out, lambda tmp: _write_hf(syn, meta, tmp))


def _write_folder(out: Path, write: Callable[[Path], None]) -> Path:
    """``write`` into a new temporary sibling folder of ``out``, then rename it to ``out`` (an empty
    ``out`` is replaced); on any error the temporary folder is removed and ``out`` is untouched."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private
        write(tmp)
        if out.is_dir():
            out.rmdir()  # empty (checked); a folder that filled up meanwhile raises here
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_npz(syn: SyntheticSet, meta: dict[str, Any], path: Path) -> None:
    arrays = {"images": syn.images.detach().to("cpu", torch.float32).numpy(),
              "labels": syn.labels.detach().cpu().numpy(), "metadata": np.array(json.dumps(meta))}
    if syn.learned_lr is not None:
        arrays["learned_lr"] = np.array(syn.learned_lr, dtype=np.float64)
    if syn.zca is not None:
        arrays.update({k: v.numpy() for k, v in syn.zca.tensors().items()})
    with open(path, "wb") as fh:  # a file object: numpy adds no suffix
        np.savez(fh, **arrays)


def _write_imagefolder(syn: SyntheticSet, meta: dict[str, Any], folder: Path) -> None:
    from PIL import Image

    names = class_folder_names(class_names_of(syn))
    for name in names:
        (folder / name).mkdir()
    levels = (syn.pixels() * 255).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    width = max(6, len(str(len(syn) - 1)))
    for i, (image, label) in enumerate(zip(levels, syn.labels.tolist())):
        picture = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        picture.save(folder / names[label] / f"{i:0{width}d}.png")
    atomic_write_text(folder / METADATA_FILE, json.dumps(meta, indent=2) + "\n")


def _write_hf(syn: SyntheticSet, meta: dict[str, Any], folder: Path) -> None:
    datasets = require_datasets()
    names = class_names_of(syn)
    images = syn.unwhitened().numpy()
    columns: dict[str, Any] = {"image": images, "label": syn.hard_labels.cpu().numpy()}
    features = {"image": datasets.Array3D(shape=tuple(images.shape[1:]), dtype="float32"),
                "label": datasets.ClassLabel(names=names)}
    if syn.labels.dim() == 2:
        columns["soft_label"] = syn.labels.detach().to("cpu", torch.float32).numpy()
        features["soft_label"] = datasets.List(datasets.Value("float32"), length=int(syn.labels.shape[1]))
    info = datasets.DatasetInfo(description=json.dumps(meta), features=datasets.Features(features))
    with quiet_datasets(datasets):
        datasets.Dataset.from_dict(columns, info=info).save_to_disk(str(folder))


__all__ = ["EXPORT_FORMATS", "check_export", "class_folder_names", "export_metadata", "export_synthetic_set"]
