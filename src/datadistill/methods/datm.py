"""DATM: Towards Lossless Dataset Distillation via Difficulty-Aligned Trajectory Matching (Guo et al.,
ICLR 2024), and PAD: Prioritize Alignment in Dataset Distillation (Li et al., 2024).

DATM is MTT (:mod:`datadistill.methods.trajectory`) plus:

* difficulty alignment: the start epoch is sampled from [min_start_epoch, upper) where ``upper`` grows
  linearly from ``current_max_start_epoch`` to ``max_start_epoch`` by iteration ``expansion_end_iteration``;
* learned soft labels: per-image label logits initialised from an expert's logits on the initial
  images, trained with the images (SGD ``lr_y``, momentum ``momentum_y``); the student and the
  evaluation use the soft cross-entropy against their softmax;
* init ``samples_predicted_correctly``: the initial images are real images the expert classifies
  correctly;
* a loss threshold: iterations whose loss exceeds ``loss_threshold`` do not update;
* an exponential moving average of the images (``ema_decay``), which is the set that is saved.

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
    """DATM settings (reference §4: CIFAR-10 IPC10 syn_steps 80, expert_epochs 2, lr_img 100,
    lr_lr 1e-5, lr_y 2, momentum_y 0.9, threshold 1.0, EMA 0.9995).

    Attributes:
        current_max_start_epoch: initial upper bound of the start-epoch window (≤ max_start_epoch).
        expansion_end_iteration: iteration at which the window reaches ``max_start_epoch``.
        soft_labels: learn soft labels (False keeps MTT's hard labels).
        lr_y, momentum_y: SGD of the label logits.
        soft_label_expert_epoch: epoch of expert 0 whose logits initialise the labels (-1 = its last).
        loss_threshold: skip the update when the loss exceeds it (0 = never skip).
        ema_decay: decay of the image EMA saved as the synthetic set (0 = no EMA).
    """

    current_max_start_epoch: int = 10
    expansion_end_iteration: int = 1000
    soft_labels: bool = True
    lr_y: float = 2.0
    momentum_y: float = 0.9
    soft_label_expert_epoch: int = SOFT_LABEL_INIT_EPOCH
    loss_threshold: float = 1.0
    ema_decay: float = 0.9995
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
        self.ema: torch.Tensor | None = None

    # -- synthetic set -------------------------------------------------------------------------
    def expert_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) of expert 0 at ``soft_label_expert_epoch`` for images (N, C, H, W)."""
        params = {k: v.to(self.device) for k, v in self.buffer.trajectories[0][self.config.soft_label_expert_epoch].items()}
        with torch.no_grad():
            return torch.cat([functional_call(self.net, params, (chunk,)) for chunk in images.split(1024)])

    def initialise(self, init: str = "real") -> None:
        if init == "samples_predicted_correctly":
            picked = []
            for c, ids in enumerate(self.real.indices_by_class):
                ids = ids[torch.randperm(len(ids), generator=self.generator)]
                chosen: list[torch.Tensor] = []
                for chunk in ids.split(1024):
                    pred = self.expert_logits(self.real.take(chunk).to(self.device)).argmax(dim=1).cpu()
                    chosen.append(chunk[pred == c])
                    if sum(len(x) for x in chosen) >= self.ipc:
                        break
                ok = torch.cat(chosen)
                if len(ok) < self.ipc:
                    raise ConfigError(f"the expert classifies only {len(ok)} images of class {c} correctly, "
                                      f"fewer than ipc {self.ipc}: use init real")
                picked.append(ok[: self.ipc])
            images = self.real.take(torch.cat(picked))
            self.lr = None
            super().initialise("real")  # sets labels, lr, optimisers; images replaced below
            with torch.no_grad():
                self.images.copy_(images.to(self.device))
        else:
            self.lr = None
            super().initialise(init)
        self.label_logits = None
        if self.config.soft_labels:
            self.label_logits = self.expert_logits(self.images.detach()).clone().requires_grad_(True)
        self.ema = self.images.detach().clone() if self.config.ema_decay > 0 else None
        self._setup_optimiser()

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
        images = self.ema if self.ema is not None else self.images
        labels = self.label_logits if self.label_logits is not None else self.labels
        return images.detach(), labels.detach(), self.learned_lr()

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
            with torch.no_grad():
                self.ema.mul_(self.config.ema_decay).add_(self.images.detach(), alpha=1 - self.config.ema_decay)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """MTT's state, the soft-label logits and their optimiser, and the image EMA (the saved set).
        The start-epoch window follows from the iteration."""
        state = super().state_dict()
        if self.label_logits is not None:
            state.update(label_logits=self.label_logits.detach().cpu().clone(), optimiser_y=self.optimiser_y.state_dict())
        if self.ema is not None:
            state["ema"] = self.ema.cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.label_logits = state["label_logits"].to(self.device).requires_grad_(True) if "label_logits" in state else None
        self.ema = state["ema"].to(self.device) if "ema" in state else None
        super().load_state_dict(state)
        if self.optimiser_y is not None and state.get("optimiser_y"):
            self.optimiser_y.load_state_dict(state["optimiser_y"])


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
