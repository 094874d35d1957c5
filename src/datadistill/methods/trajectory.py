"""MTT: Dataset Distillation by Matching Training Trajectories (Cazenavette et al., CVPR 2022).

Each iteration samples an expert trajectory θ*_0 … θ*_E (:mod:`datadistill.trajectory`) and a start
epoch t ≤ ``max_start_epoch``, initialises a student at θ*_t, trains it ``syn_steps`` SGD steps on
mini-batches of the synthetic set with a learned learning rate α, and moves the images and α to
minimise :func:`~datadistill.methods.losses.trajectory_loss` between the student and θ*_{t+M}
(M = ``expert_epochs``).

The student is unrolled with ``torch.func.functional_call`` on a list of parameter tensors. Two
ways to differentiate through the unroll give the same gradient:

* ``memory="unrolled"`` keeps the whole unrolled graph (the reference code): memory grows with
  ``syn_steps × batch_syn``.
* ``memory="checkpointed"`` keeps only the N intermediate parameter vectors, then walks the steps
  backwards, recomputing one step's graph at a time and carrying the adjoint ∂L/∂θ_i through a
  vector–Hessian product (reverse-mode with step-level checkpointing). Peak activation memory is
  that of one step, whatever ``syn_steps`` is.

Under torchrun (several ranks) each student step's mini-batch is split across the ranks and its
gradient all-reduced with autograd through it, in both memory modes; every rank holds the whole set
and applies the same update (:mod:`datadistill.methods.data_parallel`: the design and its tolerance).

The learned lr is kept positive and finite (projected onto [``lr_floor``, ∞) after each update), and a
step whose loss or gradients are not finite is rolled back with a logged warning.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from datadistill.augment.dsa import DSATransform
from datadistill.config import check_fields
from datadistill.distributed import world
from datadistill.errors import ConfigError
from datadistill.methods.base import Distiller, MethodConfig, register_method
from datadistill.methods.data_parallel import (all_reduce_gradients, check_replicas_agree, shard_bounds,
                                               sharded_student_step, warn_batch_statistics)
from datadistill.methods.losses import shallow_mask, smallest_error_mask, trajectory_loss
from datadistill.models import build_model
from datadistill.training import classification_loss
from datadistill.trajectory import ExpertBuffer

log = logging.getLogger("datadistill")

MEMORY_MODES = ("unrolled", "checkpointed")
MASK_MODES = ("depth", "loss")


@dataclass
class MTTConfig(MethodConfig):
    """MTT settings (defaults: the paper's, reference §4).

    Attributes:
        experts: folder of expert trajectories (``datadistill experts --out``); required (checked
            when the method is built).
        syn_steps: N, student steps per iteration.
        expert_epochs: M, expert epochs the student must cover.
        max_start_epoch: latest start epoch t sampled (t uniform in [min_start_epoch, max_start_epoch]).
        min_start_epoch: earliest start epoch.
        lr_img: learning rate of the pixels (SGD, ``momentum_img``).
        lr_lr: learning rate of the learned lr α (SGD, ``momentum_lr``).
        lr_teacher: initial α (the experts' lr).
        lr_floor: α is projected onto [lr_floor, ∞) after every update.
        batch_syn: synthetic images per student step; 0 = the whole set.
        memory: ``unrolled`` or ``checkpointed`` (see the module docstring).
        mask_ratio: PAD's parameter masking: fraction of the parameters left out of the loss (0 = none).
        mask_mode: ``depth`` (the shallowest parameters) or ``loss`` (those with the smallest error).
    """

    experts: str = ""
    syn_steps: int = 20
    expert_epochs: int = 3
    max_start_epoch: int = 25
    min_start_epoch: int = 0
    lr_img: float = 1000.0
    momentum_img: float = 0.5
    lr_lr: float = 1e-5
    momentum_lr: float = 0.5
    lr_teacher: float = 0.01
    lr_floor: float = 1e-6
    batch_syn: int = 0
    memory: str = "unrolled"
    mask_ratio: float = 0.0
    mask_mode: str = "depth"

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            ("syn_steps", self.syn_steps >= 1, "an integer ≥ 1"),
            ("expert_epochs", self.expert_epochs >= 1, "an integer ≥ 1"),
            ("min_start_epoch", 0 <= self.min_start_epoch <= self.max_start_epoch,
             f"an epoch in [0, max_start_epoch={self.max_start_epoch}]"),
            ("lr_lr", self.lr_lr >= 0 and math.isfinite(self.lr_lr), "a finite number ≥ 0"),
            ("momentum_lr", 0 <= self.momentum_lr < 1, "a number in [0, 1)"),
            ("lr_teacher", self.lr_teacher > 0 and math.isfinite(self.lr_teacher), "a finite number > 0"),
            ("lr_floor", 0 < self.lr_floor <= self.lr_teacher, f"a number in (0, lr_teacher={self.lr_teacher}]"),
            ("batch_syn", self.batch_syn >= 0, "an integer ≥ 0 (0 = the whole synthetic set)"),
            ("memory", self.memory in MEMORY_MODES, f"one of {', '.join(MEMORY_MODES)}"),
            ("mask_ratio", 0 <= self.mask_ratio < 1, "a fraction in [0, 1)"),
            ("mask_mode", self.mask_mode in MASK_MODES, f"one of {', '.join(MASK_MODES)}"),
        ]
        check_fields(self, checks)


def student_step(net: nn.Module, names: list[str], params: list[torch.Tensor], x: torch.Tensor,
                 targets: torch.Tensor, lr: torch.Tensor, create_graph: bool) -> list[torch.Tensor]:
    """One SGD step of the student: θ ← θ − α ∇_θ CE(f_θ(x), y).

    Args:
        net: the architecture (its own parameters are not used: :func:`torch.func.functional_call`).
        names: parameter names, in the order of ``params``.
        params: current parameters (require grad).
        x: (B, C, H, W) float32 input batch.
        targets: (B,) int64 labels or (B, K) soft-label logits (soft cross-entropy on their softmax).
        lr: scalar tensor α.
        create_graph: keep the graph of the gradient (to differentiate through the step).
    """
    logits = functional_call(net, dict(zip(names, params)), (x,))
    ce = classification_loss(logits, targets)
    grads = torch.autograd.grad(ce, params, create_graph=create_graph)
    return [p - lr * g for p, g in zip(params, grads)]


@register_method("mtt")
class MTT(Distiller):
    """Trajectory matching (Cazenavette et al., CVPR 2022, Algorithm 1 and eq. 2).

    Learned tensors: the images, and the lr α (saved with the set; the evaluation protocol trains
    with it). Subclasses (DATM, PAD) add soft labels, a growing start window and image EMA.
    """

    needs_experts = True
    config_class = MTTConfig
    config: MTTConfig
    soft_labels: bool = False

    def __init__(self, config: MTTConfig, spec, real, **kwargs) -> None:
        super().__init__(config, spec, real, **kwargs)
        if not config.experts:
            raise ConfigError(f"{self.name} needs expert trajectories: train them with `datadistill experts --out DIR`, "
                              f"then pass --method-arg experts=DIR")
        self.net = build_model(self.model, spec.channels, spec.num_classes, spec.image_size).to(self.device)
        self.net.train()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.names = [n for n, _ in self.net.named_parameters()]
        self.buffer = ExpertBuffer.load(config.experts, self.names)
        self.buffer.check_compatible(spec.name, self.model, self.zca_eps)
        if config.max_start_epoch + config.expert_epochs > self.buffer.epochs:
            raise ConfigError(f"max_start_epoch {config.max_start_epoch} + expert_epochs {config.expert_epochs} "
                              f"exceeds the {self.buffer.epochs} epochs of the experts in {config.experts}")
        self.lr: torch.Tensor | None = None
        self.skipped = 0
        self.world = world()  # > 1 rank: each student step's mini-batch is split (methods/data_parallel.py)
        self._replicas_checked = not self.world.distributed
        warn_batch_statistics(self.net, self.world)

    # -- synthetic set -------------------------------------------------------------------------
    def initialise(self, init: str = "real") -> None:
        super().initialise(init)
        self.lr = torch.tensor(self.config.lr_teacher, device=self.device, requires_grad=True)
        self._setup_optimiser()

    def _setup_optimiser(self) -> None:
        super()._setup_optimiser()
        if self.lr is not None:
            self.optimiser_lr = torch.optim.SGD([self.lr], lr=self.config.lr_lr, momentum=self.config.momentum_lr)

    def learned_lr(self) -> float | None:
        return None if self.lr is None else float(self.lr.detach())

    def output(self) -> tuple[torch.Tensor, torch.Tensor, float | None]:
        self.require_initialised()
        return self.images.detach(), self.labels, self.learned_lr()

    def targets(self) -> torch.Tensor:
        """The student's training targets for the whole set: (N,) int64 (MTT) or (N, K) logits."""
        return self.labels

    # -- one iteration -------------------------------------------------------------------------
    def sample_start_epoch(self) -> int:
        cfg = self.config
        return int(torch.randint(cfg.min_start_epoch, cfg.max_start_epoch + 1, (1,), generator=self.generator))

    def student_batches(self) -> list[tuple[torch.Tensor, DSATransform | None]]:
        """Per student step: indices of its synthetic mini-batch and its DSA draw (MTT reshuffles the
        set whenever it runs out)."""
        n = self.images.shape[0]
        b = self.config.batch_syn or n
        out: list[tuple[torch.Tensor, DSATransform | None]] = []
        order = torch.empty(0, dtype=torch.long)
        for _ in range(self.config.syn_steps):
            if len(order) < b:
                order = torch.cat([order, torch.randperm(n, generator=self.generator)])
            idx, order = order[:b], order[b:]
            t = self.dsa.sample(len(idx), self.generator, self.device, shared_op=True) if self.dsa.enabled else None
            out.append((idx.to(self.device), t))
        return out

    @staticmethod
    def _batch(images: torch.Tensor, idx: torch.Tensor, t: DSATransform | None,
               targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images[idx]
        return (t(x) if t is not None else x), targets[idx]

    def _student_step(self, params: list[torch.Tensor], images: torch.Tensor, idx: torch.Tensor,
                      t: DSATransform | None, targets: torch.Tensor, lr: torch.Tensor,
                      create_graph: bool) -> list[torch.Tensor]:
        """One student step on mini-batch ``idx``: in one process :func:`student_step`; over several
        ranks, this rank's block of ``idx`` (and of its DSA draw) through :func:`sharded_student_step`."""
        if not self.world.distributed:
            x, y = self._batch(images, idx, t, targets)
            return student_step(self.net, self.names, params, x, y, lr, create_graph)
        lo, hi = shard_bounds(len(idx), self.world)
        x = y = None
        if hi > lo:
            x, y = self._batch(images, idx[lo:hi], t.subset(slice(lo, hi)) if t is not None else None, targets)
        return sharded_student_step(self.net, self.names, params, x, y, lr, create_graph, len(idx))

    def matching_loss(self, student: list[torch.Tensor], start: list[torch.Tensor],
                      target: list[torch.Tensor]) -> torch.Tensor:
        s, a, b = (torch.cat([p.reshape(-1) for p in ps]) for ps in (student, start, target))
        mask = None
        if self.config.mask_ratio > 0:
            mask = (shallow_mask(s.numel(), self.config.mask_ratio, s.device) if self.config.mask_mode == "depth"
                    else smallest_error_mask(s, b, self.config.mask_ratio))
        return trajectory_loss(s, a, b, mask)

    def backward(self, start: list[torch.Tensor], target: list[torch.Tensor]) -> torch.Tensor:
        """Unroll the student from ``start``, compute the loss against ``target`` and backpropagate
        it into the learned tensors (``.grad``); returns the loss (detached)."""
        batches = self.student_batches()
        targets = self.targets()
        if self.config.memory == "unrolled":
            params = [p.clone().requires_grad_(True) for p in start]
            for idx, t in batches:
                params = self._student_step(params, self.images, idx, t, targets, self.lr, create_graph=True)
            loss = self.matching_loss(params, start, target)
            if torch.isfinite(loss):
                (loss / self.world.world_size).backward()  # the ranks' gradients sum to one loss's
            return loss.detach()
        # checkpointed: forward without a graph, keeping θ_0 … θ_{N-1}; then one step at a time backwards
        thetas = [[p.clone() for p in start]]
        for idx, t in batches:
            params = [p.detach().requires_grad_(True) for p in thetas[-1]]
            new = self._student_step(params, self.images.detach(), idx, t, targets.detach(), self.lr.detach(),
                                     create_graph=False)
            thetas.append([p.detach() for p in new])
        final = [p.requires_grad_(True) for p in thetas.pop()]
        loss = self.matching_loss(final, start, target)
        if not torch.isfinite(loss):
            return loss.detach()
        adjoint = torch.autograd.grad(loss / self.world.world_size, final)
        for (idx, t), theta in zip(reversed(batches), reversed(thetas)):
            params = [p.requires_grad_(True) for p in theta]
            new = self._student_step(params, self.images, idx, t, targets, self.lr, create_graph=True)
            torch.autograd.backward(new, adjoint, inputs=[*params, *self.learned_tensors()])
            adjoint = [p.grad for p in params]
        return loss.detach()

    def learned_tensors(self) -> list[torch.Tensor]:
        """Every tensor the outer optimisation updates (images, lr; DATM adds the label logits)."""
        return [self.images, self.lr]

    def optimisers(self) -> list[torch.optim.Optimizer]:
        return [self.optimiser, self.optimiser_lr]

    def step(self) -> dict[str, float]:
        self.require_initialised()
        cfg = self.config
        expert = int(torch.randint(self.buffer.num_experts, (1,), generator=self.generator))
        t = self.sample_start_epoch()
        start = [p.to(self.device) for p in self.buffer.trajectories[expert][t].values()]
        target = [p.to(self.device) for p in self.buffer.trajectories[expert][t + cfg.expert_epochs].values()]
        for opt in self.optimisers():
            opt.zero_grad(set_to_none=True)
        if not self._replicas_checked:
            check_replicas_agree(self.learned_tensors(), self.generator, self.world)
            self._replicas_checked = True
        loss = self.backward(start, target)
        if self.world.distributed and torch.isfinite(loss):  # the loss is the same on every rank
            all_reduce_gradients(self.learned_tensors())
        metrics = {"loss": float(loss), "start_epoch": float(t), "lr": float(self.lr.detach()), "skipped": 0.0}
        if not self.update_allowed(loss):
            metrics["skipped"] = 1.0
            return metrics
        saved = self._snapshot()
        for opt in self.optimisers():
            opt.step()
        with torch.no_grad():
            self.lr.clamp_(min=cfg.lr_floor)
        if not all(torch.isfinite(p).all() for p in self.learned_tensors()):
            self._restore(saved)
            self.skipped += 1
            log.warning("iteration %d: the update made the synthetic set non-finite; rolled back", self.iteration)
            metrics["skipped"] = 1.0
            return metrics
        self.after_update()
        metrics["lr"] = float(self.lr.detach())
        return metrics

    def update_allowed(self, loss: torch.Tensor) -> bool:
        """False (and a logged warning) when the loss or a gradient is not finite: the step is skipped,
        so nothing learned changes."""
        grads_ok = all(p.grad is None or torch.isfinite(p.grad).all() for p in self.learned_tensors())
        if torch.isfinite(loss) and grads_ok:
            return True
        self.skipped += 1
        log.warning("iteration %d: non-finite trajectory loss (%s) or gradient; step rolled back "
                    "(lower lr_img or lr_lr if this repeats)", self.iteration, float(loss))
        for p in self.learned_tensors():
            p.grad = None
        return False

    def after_update(self) -> None:
        """Hook after a successful update (DATM: image EMA)."""

    def _snapshot(self) -> dict[str, Any]:
        return {"tensors": [p.detach().clone() for p in self.learned_tensors()],
                "optimisers": [copy.deepcopy(o.state_dict()) for o in self.optimisers()]}

    def _restore(self, saved: dict[str, Any]) -> None:
        with torch.no_grad():
            for p, v in zip(self.learned_tensors(), saved["tensors"]):
                p.copy_(v)
        for o, s in zip(self.optimisers(), saved["optimisers"]):
            o.load_state_dict(s)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The base's state, the learned lr α and its optimiser, the count of rolled-back steps and
        the student network's buffers (BatchNorm statistics move when it runs in train mode)."""
        state = super().state_dict()
        state.update(lr=self.lr.detach().cpu().clone(), optimiser_lr=self.optimiser_lr.state_dict(),
                     skipped=self.skipped,
                     net_buffers={k: b.detach().cpu().clone() for k, b in self.net.named_buffers()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr = state["lr"].to(self.device).requires_grad_(True)
        super().load_state_dict(state)
        if state.get("optimiser_lr"):
            self.optimiser_lr.load_state_dict(state["optimiser_lr"])
        self.skipped = int(state.get("skipped", 0))
        buffers = dict(self.net.named_buffers())
        with torch.no_grad():
            for k, b in (state.get("net_buffers") or {}).items():
                buffers[k].copy_(b)
