"""DATM: Towards Lossless Dataset Distillation via Difficulty-Aligned Trajectory Matching (Guo et al.,
ICLR 2024), and PAD: Prioritize Alignment in Dataset Distillation (Li et al., 2024).

DATM is MTT (:mod:`datadistill.methods.trajectory`) plus:

* difficulty alignment: the start epoch is sampled from [min_start_epoch, upper) where ``upper`` grows
  linearly from ``current_max_start_epoch`` to ``max_start_epoch`` by iteration ``expansion_end_iteration``;
* learned soft labels: per-image label logits initialised from the experts' logits on the initial
  images, trained with the images (SGD ``lr_y``, momentum ``momentum_y``); the student and the
  evaluation use the soft cross-entropy against their softmax. With init ``real`` (and the others)
  the logits are expert 0's at epoch ``soft_label_expert_epoch``; with init
  ``samples_predicted_correctly`` they are, per image, the mean of the logits of every expert that
  classifies it correctly at that epoch (official ``distill/DATM.py``, "only sum correct predicted
  logits": every trajectory of every buffer file, ``Label_Model_Timestamp`` = -1, the last epoch);
* init ``samples_predicted_correctly``: per class, the real images in a random order, the first
  ``ipc`` that expert 0 classifies correctly at ``soft_label_expert_epoch``; when expert 0 gets fewer
  right, expert 1's correct images are added in the same order, then expert 2's, … (DATM.py moves
  to the next expert when a pass over the class ends short);
* a loss threshold: iterations whose loss exceeds ``loss_threshold`` do not update.

Our extension, off by default (``ema_decay`` 0): an exponential moving average of everything learned
(images, soft-label logits, lr), which is then the set that is saved. The official DATM and PAD
distillation scripts never read the ``ema_decay`` of their YAML files. The EMA is of the three
together, updated after every accepted update with the same weights, so the saved labels and lr are
the same average of the iterates as the saved images: each saved label is the average of the labels
that were learned with the images averaged into it (saving the live labels and lr with averaged
images would pair them with images they were not fitted to).

PAD is DATM with experts trained on a difficulty curriculum (``datadistill experts --curriculum``)
and parameter masking (``mask_ratio``, ``mask_mode``, from :class:`MTTConfig`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import functional_call

from datadistill.config import check_fields
from datadistill.errors import ConfigError
from datadistill.methods.base import register_method
from datadistill.methods.trajectory import MTT, MTTConfig

SOFT_LABEL_INIT_EPOCH = -1  # the expert's last epoch


@dataclass
class DATMConfig(MTTConfig):
    """DATM settings (reference §4 and ``configs/CIFAR-10/ConvIN/IPC10.yaml``: CIFAR-10 IPC10 syn_steps
    80, expert_epochs 2, lr_img 100, lr_lr 1e-5, lr_y 2, momentum_y 0.9, threshold 1.0; no EMA: the
    YAML's ``ema_decay`` 0.9995 is never read by ``distill/DATM.py``).

    Attributes:
        current_max_start_epoch: initial upper bound of the start-epoch window (≤ max_start_epoch).
        expansion_end_iteration: iteration at which the window reaches ``max_start_epoch``.
        soft_labels: learn soft labels (False keeps MTT's hard labels).
        lr_y, momentum_y: SGD of the label logits.
        soft_label_expert_epoch: epoch of the experts whose logits initialise the labels (-1 = the
            last; the reference's ``Label_Model_Timestamp``), and at which
            ``samples_predicted_correctly`` judges the images.
        loss_threshold: skip the update when the loss exceeds it (0 = never skip).
        ema_decay: our extension, not the reference's: decay of the EMA of the images, soft labels
            and lr saved as the synthetic set (0 = no EMA, the default and the reference's behaviour).
    """

    current_max_start_epoch: int = 10
    expansion_end_iteration: int = 1000
    soft_labels: bool = True
    lr_y: float = 2.0
    momentum_y: float = 0.9
    soft_label_expert_epoch: int = SOFT_LABEL_INIT_EPOCH
    loss_threshold: float = 1.0
    ema_decay: float = 0.0
    lr_img: float = 100.0
    syn_steps: int = 80
    expert_epochs: int = 2
    max_start_epoch: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            ("current_max_start_epoch", self.min_start_epoch <= self.current_max_start_epoch <= self.max_start_epoch,
             f"an epoch in [min_start_epoch={self.min_start_epoch}, max_start_epoch={self.max_start_epoch}]"),
            ("expansion_end_iteration", self.expansion_end_iteration >= 0, "an integer ≥ 0"),
            ("lr_y", self.lr_y >= 0 and math.isfinite(self.lr_y), "a finite number ≥ 0"),
            ("momentum_y", 0 <= self.momentum_y < 1, "a number in [0, 1)"),
            ("loss_threshold", self.loss_threshold >= 0, "a number ≥ 0 (0 = never skip)"),
            ("ema_decay", 0 <= self.ema_decay < 1, "a number in [0, 1) (0 = no EMA)"),
        ]
        check_fields(self, checks)


@register_method("datm")
class DATM(MTT):
    """Difficulty-aligned trajectory matching (Guo et al., ICLR 2024, §4: eqs. 5–7 and Algorithm 1)."""

    extra_inits = ("samples_predicted_correctly",)
    config_class = DATMConfig
    config: DATMConfig

    def __init__(self, config: DATMConfig, spec, real, **kwargs) -> None:
        super().__init__(config, spec, real, **kwargs)
        self.label_logits: torch.Tensor | None = None
        self.ema: list[torch.Tensor] | None = None  # EMA of learned_tensors(), in its order

    # -- synthetic set -------------------------------------------------------------------------
    def expert_logits(self, images: torch.Tensor, expert: int = 0) -> torch.Tensor:
        """Logits (N, K) of ``expert`` at ``soft_label_expert_epoch`` for images (N, C, H, W)."""
        epoch = self.buffer.trajectories[expert][self.config.soft_label_expert_epoch]
        params = {k: v.to(self.device) for k, v in epoch.items()}
        with torch.no_grad():
            return torch.cat([functional_call(self.net, params, (chunk,)) for chunk in images.split(1024)])

    def correct_experts_logits(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, K): per image, the mean of the logits of the experts (all of them, at
        ``soft_label_expert_epoch``) whose argmax is its label (official ``distill/DATM.py``, the
        ``samples_predicted_correctly`` label initialisation). An image that no expert classifies
        correctly (never one chosen by :meth:`pick_correct`) gets the mean over all experts, where the
        reference divides 0 by 0.
        """
        logits = torch.stack([self.expert_logits(images, k) for k in range(self.buffer.num_experts)])  # (E, N, K)
        correct = (logits.argmax(dim=2) == labels.to(logits.device).view(1, -1)).to(logits.dtype)  # (E, N)
        count = correct.sum(dim=0)
        mean_correct = (logits * correct.unsqueeze(2)).sum(dim=0) / count.clamp(min=1).unsqueeze(1)
        return torch.where((count > 0).unsqueeze(1), mean_correct, logits.mean(dim=0))

    def pick_correct(self) -> torch.Tensor:
        """Indices (K·ipc,) of real images, ``ipc`` per class in class order, that the experts classify
        correctly: per class, a random order of its images, then expert 0's correct ones in that
        order, then expert 1's not already picked, … until ``ipc`` (official ``distill/DATM.py``).

        Raises:
            ConfigError: all the experts together get fewer than ``ipc`` images of a class right.
        """
        picked = []
        for c, ids in enumerate(self.real.indices_by_class):
            ids = ids[torch.randperm(len(ids), generator=self.generator)]
            chosen: list[int] = []
            for k in range(self.buffer.num_experts):
                for chunk in ids.split(1024):
                    pred = self.expert_logits(self.real.take(chunk).to(self.device), k).argmax(dim=1).cpu()
                    chosen += [i for i in chunk[pred == c].tolist() if i not in chosen][: self.ipc - len(chosen)]
                    if len(chosen) == self.ipc:
                        break
                if len(chosen) == self.ipc:
                    break
            if len(chosen) < self.ipc:
                raise ConfigError(f"the {self.buffer.num_experts} experts classify only {len(chosen)} images of "
                                  f"class {c} correctly, fewer than ipc {self.ipc}: use init real")
            picked.append(torch.tensor(chosen, dtype=torch.int64))
        return torch.cat(picked)

    def initialise(self, init: str = "real") -> None:
        self.lr = None
        if init == "samples_predicted_correctly":
            images = self.real.take(self.pick_correct())
            super().initialise("real")  # sets labels, lr, optimisers; images replaced below
            with torch.no_grad():
                self.images.copy_(images.to(self.device))
        else:
            super().initialise(init)
        self.label_logits = None
        if self.config.soft_labels:
            images = self.images.detach()
            logits = (self.correct_experts_logits(images, self.labels) if init == "samples_predicted_correctly"
                      else self.expert_logits(images))
            self.label_logits = logits.clone().requires_grad_(True)
        self.ema = None
        self._setup_optimiser()
        if self.config.ema_decay > 0:
            self.ema = [t.detach().clone() for t in self.learned_tensors()]

    def _setup_optimiser(self) -> None:
        super()._setup_optimiser()
        label_logits = getattr(self, "label_logits", None)
        self.optimiser_y = (torch.optim.SGD([label_logits], lr=self.config.lr_y, momentum=self.config.momentum_y)
                            if label_logits is not None else None)

    def targets(self) -> torch.Tensor:
        return self.label_logits if self.label_logits is not None else self.labels

    def learned_tensors(self) -> list[torch.Tensor]:
        return super().learned_tensors() + ([self.label_logits] if self.label_logits is not None else [])

    def optimisers(self) -> list[torch.optim.Optimizer]:
        return super().optimisers() + ([self.optimiser_y] if self.optimiser_y is not None else [])

    def output(self) -> tuple[torch.Tensor, torch.Tensor, float | None]:
        """(images, labels, lr) as learned, or with ``ema_decay`` > 0 their EMA (all three the same
        average of the iterates)."""
        if self.ema is None:
            images, lr = self.images, self.learned_lr()
            labels = self.label_logits if self.label_logits is not None else self.labels
        else:
            images, lr = self.ema[0], float(self.ema[1])
            labels = self.ema[2] if self.label_logits is not None else self.labels
        return images.detach(), labels.detach(), lr

    # -- one iteration -------------------------------------------------------------------------
    def start_window(self) -> int:
        """The current upper bound of the start epoch (inclusive)."""
        cfg = self.config
        if cfg.expansion_end_iteration == 0:
            return cfg.max_start_epoch
        grow = min(self.iteration / cfg.expansion_end_iteration, 1.0)
        return int(cfg.current_max_start_epoch + (cfg.max_start_epoch - cfg.current_max_start_epoch) * grow)

    def sample_start_epoch(self) -> int:
        upper = self.start_window()
        return int(torch.randint(self.config.min_start_epoch, upper + 1, (1,), generator=self.generator))

    def update_allowed(self, loss: torch.Tensor) -> bool:
        if not super().update_allowed(loss):
            return False
        if self.config.loss_threshold and float(loss) > self.config.loss_threshold:
            for p in self.learned_tensors():
                p.grad = None
            return False
        return True

    def after_update(self) -> None:
        if self.ema is not None:
            d = self.config.ema_decay
            with torch.no_grad():
                for avg, t in zip(self.ema, self.learned_tensors()):
                    avg.mul_(d).add_(t.detach(), alpha=1 - d)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """MTT's state, the soft-label logits and their optimiser, and with ``ema_decay`` the EMA
        (a list in :meth:`learned_tensors` order: images, lr, label logits). The start-epoch window
        follows from the iteration."""
        state = super().state_dict()
        if self.label_logits is not None:
            state.update(label_logits=self.label_logits.detach().cpu().clone(), optimiser_y=self.optimiser_y.state_dict())
        if self.ema is not None:
            state["ema"] = [t.cpu().clone() for t in self.ema]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.label_logits = state["label_logits"].to(self.device).requires_grad_(True) if "label_logits" in state else None
        super().load_state_dict(state)
        if self.optimiser_y is not None and state.get("optimiser_y"):
            self.optimiser_y.load_state_dict(state["optimiser_y"])
        ema = state.get("ema")
        if isinstance(ema, torch.Tensor):  # a checkpoint of before #21: the EMA of the images only
            ema = [ema] + [t.detach().cpu() for t in self.learned_tensors()[1:]]
        self.ema = None if ema is None else [t.to(self.device).clone() for t in ema]


@dataclass
class PADConfig(DATMConfig):
    """PAD settings: DATM's plus parameter masking on by default (CIFAR-10: mask_ratio 0 at IPC 1,
    0.5 at IPC 10, 0.25 at IPC 50; reference §4). Use experts trained with ``--curriculum``."""

    mask_ratio: float = 0.25


@register_method("pad")
class PAD(DATM):
    """Prioritize alignment (Li et al. 2024): DATM on curriculum experts, matching only the deep-layer
    parameters (§3.2, eq. 6: masked entries leave numerator and normaliser)."""

    config_class = PADConfig
