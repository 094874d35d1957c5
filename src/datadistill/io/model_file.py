"""The model file: a trained evaluation network in one ``.safetensors`` file (no pickle).

Tensors:
    ``state.<name>``: every entry of the network's ``state_dict()`` — parameters and persistent buffers
        (e.g. BatchNorm running mean/var and ``num_batches_tracked``), dtypes as in the network.
    ``zca_mean`` (1, D), ``zca_transform`` (D, D), ``zca_inverse`` (D, D) (optional, together), float32:
        the ZCA whitening the network was trained in; inputs must be normalised, then whitened with it.

Metadata (safetensors header ``__metadata__``, key ``datadistill``, a JSON object): ``format``
(``"datadistill.model"``), ``format_version`` (1), ``model`` (a registered model name), ``channels``,
``num_classes``, ``image_size`` ([H, W]), ``dataset``, ``mean``, ``std``, ``package_version``,
``extra`` (a JSON object: train accuracy, seed, synthetic-set file, ...), and ``zca`` = ``{"eps": float}``
when (and only when) the ZCA tensors are stored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from datadistill.errors import ConfigError, DatadistillError, ModelFileError
from datadistill.io.tensor_file import read_tensor_file, write_tensor_file
from datadistill.preprocess.zca import TENSOR_KEYS as ZCA_KEYS
from datadistill.preprocess.zca import ZCA

FORMAT = "datadistill.model"
FORMAT_VERSION = 1
STATE_PREFIX = "state."
_REQUIRED_META = ("model", "channels", "num_classes", "image_size", "dataset", "mean", "std")


def save_model(net: nn.Module, path: str | os.PathLike, *, model: str, channels: int, num_classes: int,
               image_size, dataset: str, mean, std, zca: ZCA | None = None, extra: dict | None = None) -> Path:
    """Write ``net``'s state dict (parameters and buffers) and how to rebuild it to ``path``, atomically.

    Args:
        net: the trained network, built by ``build_model(model, channels, num_classes, image_size)``.
        model: its registered model name.
        channels, num_classes, image_size: the arguments it was built with ((H, W) for image_size).
        dataset, mean, std: the dataset it was trained for and its per-channel normalisation.
        zca: the ZCA whitening its inputs live in, when it was trained on whitened images.
        extra: further JSON-able facts to keep (train accuracy, seed, synthetic-set file, ...).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        UnknownNameError: ``model`` is not registered.
        ConfigError: the state dict does not fit ``model`` built with these arguments (so the file could not
            be loaded), ``mean``/``std`` do not have ``channels`` entries, ``zca`` was fitted on another
            image shape, or ``extra`` is not a JSON-able dict.
    """
    from datadistill._version import __version__
    from datadistill.models import build_model

    image_size = [int(s) for s in image_size]
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(image_size) != 2 or len(mean) != channels or len(std) != channels:
        raise ConfigError(f"cannot save the model: image_size must be (H, W) and mean/std have {channels} "
                          f"entries, got image_size={image_size} mean={mean} std={std}")
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    with torch.random.fork_rng(devices=[]):  # building draws initial weights: keep the caller's stream
        reference = build_model(model, channels, num_classes, tuple(image_size)).state_dict()
    problem = _state_mismatch(state, reference)
    if problem:
        raise ConfigError(f"cannot save the model: its state dict does not fit {model!r} with channels={channels}, "
                          f"num_classes={num_classes}, image_size={image_size} ({problem})")
    extra = {} if extra is None else extra
    try:
        if not isinstance(extra, dict):
            raise TypeError(f"a {type(extra).__name__}, not a dict")
        json.dumps(extra, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot save the model: extra must be a JSON-able dict ({exc})") from exc
    tensors = {STATE_PREFIX + k: v for k, v in state.items()}
    meta: dict[str, Any] = {"model": model, "channels": int(channels), "num_classes": int(num_classes),
                            "image_size": image_size, "dataset": dataset, "mean": mean, "std": std,
                            "package_version": __version__, "extra": extra}
    if zca is not None:
        if zca.shape != (int(channels), *image_size):
            raise ConfigError(f"cannot save the model: the ZCA was fitted on images of shape {zca.shape}, the "
                              f"model takes ({channels}, {image_size[0]}, {image_size[1]})")
        tensors.update(zca.tensors())
        meta["zca"] = zca.metadata()
    return write_tensor_file(path, tensors, meta, FORMAT, FORMAT_VERSION)


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any], ZCA | None]:
    """Read a file written by :func:`save_model` (no unpickling) and rebuild the network.

    Returns:
        (the network on the CPU in ``eval()`` mode with the saved parameters and buffers, the metadata,
        the ZCA its inputs must be whitened with or None). The global random state is left unchanged.

    Raises:
        ModelFileError: the file is missing, not a safetensors file, corrupt, not a datadistill model file,
            has missing or invalid metadata, names a model that is not registered, or holds a state dict
            that does not fit the model (missing, unexpected or mis-shaped entries).
    """
    from datadistill.models import build_model

    tensors, meta = read_tensor_file(path, FORMAT, FORMAT_VERSION, ModelFileError, "model")
    missing = [k for k in _REQUIRED_META if k not in meta]
    if missing:
        raise ModelFileError(f"{path}: metadata {missing[0]!r} is missing")
    channels, num_classes, image_size = meta["channels"], meta["num_classes"], meta["image_size"]
    if not (_positive_int(channels) and _positive_int(num_classes) and isinstance(image_size, list)
            and len(image_size) == 2 and all(_positive_int(s) for s in image_size)):
        raise ModelFileError(f"{path}: metadata channels={channels!r} num_classes={num_classes!r} "
                             f"image_size={image_size!r}; expected positive integers and [H, W]")
    if not isinstance(meta["model"], str):
        raise ModelFileError(f"{path}: metadata model={meta['model']!r} is not a model name")
    try:
        with torch.random.fork_rng(devices=[]):
            net = build_model(meta["model"], channels, num_classes, tuple(image_size))
    except DatadistillError as exc:  # UnknownNameError lists the registered names
        raise ModelFileError(f"{path}: cannot rebuild the saved model: {exc}") from exc
    state = {k[len(STATE_PREFIX):]: v for k, v in tensors.items() if k.startswith(STATE_PREFIX)}
    unknown = sorted(k for k in tensors if not k.startswith(STATE_PREFIX) and k not in ZCA_KEYS)
    if unknown:
        raise ModelFileError(f"{path}: unexpected tensor {unknown[0]!r} (neither '{STATE_PREFIX}*' nor a ZCA tensor)")
    problem = _state_mismatch(state, net.state_dict())
    if problem:
        raise ModelFileError(f"{path}: the saved state dict does not fit model {meta['model']!r} ({problem})")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: the saved state dict does not fit model {meta['model']!r} "
                             f"({' '.join(str(exc).split())})") from exc
    zca = None
    if meta.get("zca") is not None:
        try:
            zca = ZCA.from_metadata(tensors, meta["zca"], (channels, *image_size))
        except DatadistillError as exc:
            raise ModelFileError(f"{path}: {exc}") from exc
    elif any(k in tensors for k in ZCA_KEYS):
        raise ModelFileError(f"{path}: ZCA tensors are stored but metadata 'zca' is not set")
    return net.eval(), meta, zca


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _state_mismatch(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> str | None:
    """A one-line description of the first difference in keys, shapes or dtypes, or None when they fit."""
    missing = sorted(set(reference) - set(state))
    if missing:
        return f"missing entry {missing[0]!r}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
    unexpected = sorted(set(state) - set(reference))
    if unexpected:
        return f"unexpected entry {unexpected[0]!r}" + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1
                                                         else "")
    for key, ref in reference.items():
        got = state[key]
        if tuple(got.shape) != tuple(ref.shape):
            return f"entry {key!r} has shape {tuple(got.shape)}, the model expects {tuple(ref.shape)}"
        if got.dtype != ref.dtype:
            return f"entry {key!r} has dtype {got.dtype}, the model expects {ref.dtype}"
    return None


__all__ = ["FORMAT", "FORMAT_VERSION", "load_model", "save_model"]
