"""Finished networks of an evaluation kept on disk, so that an interrupted evaluation resumes with the
networks it had not finished (``evaluate --out DIR``, and the evaluation inside ``distill --out DIR``).

Network k of the protocol is built and trained from seed ``seed + k`` alone (its initialisation,
shuffles and DSA draws; the models draw nothing from torch's global generator while training), so
its result does not depend on the other networks: it can be stored as it finishes and reused.

Layout: ``FOLDER/<prefix><model>.json``, one file per (synthetic set, architecture), a
:class:`datadistill.record.RunRecord` (format ``datadistill.evaluation_parts``) rewritten atomically
after every network. Its ``settings`` are the key of the evaluation: what determines the numbers —
the synthetic set's content (SHA-256 of its images, labels, learned lr and ZCA tensors), the test
set (size, image shape, SHA-256 of its labels), the protocol's settings, the resolved lr, the seed,
the number of classes, the device type, whether the K networks train together (vmap), the torch and
package versions. Its ``units`` are the finished networks, ``"k"`` → ``accuracy``,
``train_accuracy``, ``per_class`` (percent), ``curve`` (or None), ``train_seconds`` and
``seconds`` (the network's wall time, testing included). A file whose key differs (another set,
other settings) is not an error: its networks are simply not reused, and the file is replaced.

Vectorised evaluation (``torch.vmap``, :mod:`datadistill.training.vmap`) trains the K networks of an
architecture as one batch: its results are stored per network too, but the batch is the unit of
resumption — it is trained again unless every one of its networks is recorded (a network trained
in a batch of another size could differ by float rounding).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from datadistill._version import __version__
from datadistill.errors import ConfigError
from datadistill.record import RunRecord

log = logging.getLogger("datadistill")

PARTS_FORMAT = "datadistill.evaluation_parts"
PARTS_VERSION = 1
PARTS_FOLDER = "evaluation_parts"
"""The folder name under an output folder (``OUT/evaluation_parts``)."""


def _tensor_digest(h: Any, name: str, tensor: torch.Tensor | None) -> None:
    h.update(name.encode())
    if tensor is None:
        h.update(b"none")
        return
    t = tensor.detach().to("cpu").contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def set_digest(syn: Any) -> str:
    """SHA-256 (hex) of a synthetic set's content: images, labels, learned lr and ZCA tensors (the
    metadata is left out: it does not change what the networks train on)."""
    h = hashlib.sha256()
    _tensor_digest(h, "images", syn.images)
    _tensor_digest(h, "labels", syn.labels)
    h.update(repr(None if syn.learned_lr is None else float(syn.learned_lr)).encode())
    for name, tensor in sorted((syn.zca.tensors() if syn.zca is not None else {}).items()):
        _tensor_digest(h, name, tensor)
    return h.hexdigest()


def testset_digest(test: Any) -> dict[str, Any]:
    """What identifies a test set cheaply: its size, image shape and the SHA-256 of its labels."""
    h = hashlib.sha256()
    _tensor_digest(h, "labels", test.labels)
    return {"images": len(test), "image_shape": list(test.image_shape), "labels_sha256": h.hexdigest()}


PART_KEYS = ("accuracy", "train_accuracy", "per_class", "curve", "train_seconds", "seconds")


def _complete(result: Mapping[str, Any]) -> bool:
    return all(key in result for key in PART_KEYS)


class EvalParts:
    """Where an evaluation keeps its finished networks: ``folder/<prefix><model>.json`` (module docstring).

    Args:
        folder: the parts folder (e.g. ``OUT/evaluation_parts``); created on the first write.
        prefix: distinguishes evaluations of different sets in one folder (``"init_"`` for the
            initial set of a distillation).
        keep: ``(model, k) → bool``, whether a recorded network may be reused (e.g. its saved model
            file still exists); default: every recorded network.
    """

    def __init__(self, folder: str | os.PathLike, prefix: str = "",
                 keep: Callable[[str, int], bool] | None = None) -> None:
        self.folder = Path(folder)
        self.prefix = prefix
        self.keep = keep

    def with_prefix(self, prefix: str) -> EvalParts:
        """The same folder for another set's evaluation."""
        return EvalParts(self.folder, prefix, self.keep)

    def path(self, model: str) -> Path:
        return self.folder / f"{self.prefix}{model}.json"

    def open(self, model: str, key: Mapping[str, Any]) -> tuple[RunRecord, dict[int, dict[str, Any]]]:
        """The record of ``model``'s evaluation with ``key``, and its reusable networks (k → result).

        A missing, unreadable or foreign file, or one of another key, gives no networks (logged)."""
        record = RunRecord(self.path(model), key, format=PARTS_FORMAT, version=PARTS_VERSION,
                           what="an evaluation")
        try:
            content = record.load()
        except ConfigError as exc:  # a damaged parts file only costs its networks
            log.info("evaluation parts not reused: %s", exc)
            return record, {}
        if content is None:
            return record, {}
        if not isinstance(content.get("settings"), dict) or record.differences(content):
            log.info("evaluation parts %s are of another set or settings: not reused", record.path)
            return record, {}
        units = content.get("units")
        done = {}
        for unit, result in (units.items() if isinstance(units, dict) else ()):
            k = int(unit) if str(unit).isdigit() else -1
            if 0 <= k and isinstance(result, dict) and _complete(result) and (self.keep is None or self.keep(model, k)):
                done[k] = result
        record.units = {str(k): v for k, v in done.items()}
        return record, done

    @staticmethod
    def finish(record: RunRecord, k: int, result: Mapping[str, Any]) -> None:
        """Record network ``k`` as finished (the file is rewritten atomically)."""
        record.mark_finished(str(k), dict(result))

    def remove(self) -> None:
        """Delete the parts folder (once the final results are written)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def evaluation_key(syn: Any, test: Any, settings_dict: Mapping[str, Any], *, lr: float, seed: int, classes: int,
                   device: torch.device, vectorised: bool) -> dict[str, Any]:
    """The settings a parts file is keyed by (module docstring)."""
    return {"set_sha256": set_digest(syn), "test": testset_digest(test), "settings": dict(settings_dict), "lr": lr,
            "seed": seed, "classes": classes, "device": torch.device(device).type, "vectorised": vectorised,
            "torch": torch.__version__, "package_version": __version__}


__all__ = ["EvalParts", "PARTS_FOLDER", "PARTS_FORMAT", "evaluation_key", "set_digest", "testset_digest"]
