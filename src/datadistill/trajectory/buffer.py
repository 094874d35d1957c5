"""The on-disk layout of expert trajectories, and :class:`ExpertBuffer`, a folder of them loaded for
the trajectory-matching methods (MTT, DATM, PAD). :func:`datadistill.trajectory.experts.train_experts`
writes the folders (``datadistill experts --out DIR``)::

    DIR/experts.json                    settings, dataset, model, preprocessing (mean/std, ZCA eps and,
                                        with ZCA, ``zca_fitted_on: "pixels"``)
    DIR/expert_000/epoch_000.safetensors   parameters θ*_0 (+ buffers), metadata, RNG state
    DIR/expert_000/epoch_001.safetensors   θ*_1 …

An epoch file also holds the generator's state (:data:`RNG_KEY`) and SGD's momentum buffers
(:data:`MOMENTUM_PREFIX` + parameter name), from which training resumes; loading drops them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from datadistill.errors import ConfigError, TrajectoryFileError
from datadistill.io.tensor_file import read_tensor_file

MANIFEST = "experts.json"
FORMAT = "datadistill.expert_trajectories"
FORMAT_VERSION = 1
RNG_KEY = "__rng_state__"
MOMENTUM_PREFIX = "__momentum__."


def epoch_path(root: Path, expert: int, epoch: int) -> Path:
    """Expert ``expert``'s file of epoch ``epoch`` in the folder ``root``."""
    return root / f"expert_{expert:03d}" / f"epoch_{epoch:03d}.safetensors"


def finished_epochs(root: Path, expert: int, epochs: int) -> int:
    """The last epoch e such that epoch files 0 … e all exist (-1 if none)."""
    last = -1
    while last + 1 <= epochs and epoch_path(root, expert, last + 1).is_file():
        last += 1
    return last


def read_epoch(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An epoch file's tensors and metadata (safetensors: nothing is unpickled).

    Raises:
        TrajectoryFileError: a missing, corrupt or foreign file.
    """
    return read_tensor_file(path, FORMAT, FORMAT_VERSION, TrajectoryFileError, "expert epoch")


@dataclass
class ExpertBuffer:
    """The saved trajectories of a folder written by :func:`~datadistill.trajectory.experts.train_experts`, loaded into memory.

    Attributes:
        root: the folder.
        manifest: the ``experts.json`` content (dataset, model, settings, preprocessing).
        trajectories: ``trajectories[k][e]`` = expert k's parameters after epoch e, a dict
            name → tensor in ``named_parameters`` order (buffers excluded), float32 on the CPU.
        test_accuracy: ``test_accuracy[k][e]`` in percent (None for epoch 0).
    """

    root: Path
    manifest: dict[str, Any]
    trajectories: list[list[dict[str, torch.Tensor]]] = field(default_factory=list)
    test_accuracy: list[list[float | None]] = field(default_factory=list)

    @property
    def num_experts(self) -> int:
        return len(self.trajectories)

    @property
    def epochs(self) -> int:
        """Epochs of every trajectory (files 0 … epochs)."""
        return len(self.trajectories[0]) - 1

    @classmethod
    def load(cls, path: str | os.PathLike, parameter_names: list[str] | None = None) -> "ExpertBuffer":
        """Load every finished trajectory in ``path`` (no unpickling); experts still training or killed
        before their last epoch are left out.

        Args:
            parameter_names: keep only these tensors, in this order (the student's ``named_parameters``);
                None keeps every tensor except the RNG and optimiser state.

        Raises:
            TrajectoryFileError: no manifest, a foreign or corrupt file, no finished expert,
                or a trajectory missing a parameter the student has.
        """
        root = Path(path)
        if not (root / MANIFEST).is_file():
            raise TrajectoryFileError(f"{root} has no {MANIFEST}: train experts with `datadistill experts --out {root}`")
        try:
            manifest = json.loads((root / MANIFEST).read_text())
        except json.JSONDecodeError as exc:
            raise TrajectoryFileError(f"{root / MANIFEST} is not valid JSON ({exc})") from exc
        if manifest.get("format") != FORMAT:
            raise TrajectoryFileError(f"{root / MANIFEST}: format {manifest.get('format')!r} is not {FORMAT!r}")
        buf = cls(root, manifest)
        epochs = int(manifest["settings"]["epochs"])
        for k in range(int(manifest["settings"]["num_experts"])):
            last = finished_epochs(root, k, epochs)
            if last < epochs:  # unfinished (still training, or killed: resume with `datadistill experts`)
                continue
            traj, accs = [], []
            for e in range(last + 1):
                tensors, meta = read_epoch(epoch_path(root, k, e))
                if parameter_names is None:
                    params = {n: t for n, t in tensors.items() if n != RNG_KEY and not n.startswith(MOMENTUM_PREFIX)}
                else:
                    missing = [n for n in parameter_names if n not in tensors]
                    if missing:
                        raise TrajectoryFileError(f"{epoch_path(root, k, e)} lacks parameter {missing[0]!r}: "
                                                  f"the experts were trained with model {manifest.get('model')!r}")
                    params = {n: tensors[n].float() for n in parameter_names}
                traj.append(params)
                accs.append(meta.get("test_accuracy"))
            buf.trajectories.append(traj)
            buf.test_accuracy.append(accs)
        if not buf.trajectories:
            raise TrajectoryFileError(f"{root} holds no finished expert: finish them with `datadistill experts --out {root}`")
        return buf

    def check_compatible(self, dataset: str, model: str, zca_eps: float | None) -> None:
        """Raise ConfigError unless the experts were trained on ``dataset`` with ``model`` and the same
        preprocessing (a ZCA mismatch gives 10 % accuracy in the reference code, §7): the same ZCA
        eps and, with ZCA, a ZCA fitted on the pixels (a folder written before issue #21 fitted it on
        the normalised images: its experts saw other inputs and are refused)."""
        m = self.manifest
        if m.get("dataset") != dataset:
            raise ConfigError(f"experts in {self.root} were trained on {m.get('dataset')!r}, not {dataset!r}")
        if m.get("model") != model:
            raise ConfigError(f"experts in {self.root} are {m.get('model')!r} networks but the run uses model "
                              f"{model!r}: pass --model {m.get('model')}")
        theirs = (m.get("preprocessing") or {}).get("zca_eps")
        if theirs != zca_eps:
            raise ConfigError(f"experts in {self.root} used ZCA eps {theirs} but the run uses {zca_eps}: "
                              f"set zca_eps to {theirs} (null = no ZCA)")
        fitted_on = (m.get("preprocessing") or {}).get("zca_fitted_on", "normalised images")
        if zca_eps is not None and fitted_on != "pixels":
            raise ConfigError(f"experts in {self.root} were trained on images whitened by a ZCA fitted on "
                              f"{fitted_on} (datadistill before issue #21); the run fits it on the pixels, as "
                              f"MTT/DATM: retrain them with `datadistill experts --zca-eps {zca_eps}` into a new "
                              "folder")

__all__ = ["ExpertBuffer", "FORMAT", "FORMAT_VERSION", "MANIFEST", "epoch_path", "finished_epochs", "read_epoch"]
