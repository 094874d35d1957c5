"""CAFE: Learning to Condense Dataset by Aligning Features (Wang et al., CVPR 2022), and CAFE+DSA."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from datadistill import distributed
from datadistill.errors import ConfigError
from datadistill.methods.base import register_method
from datadistill.methods.bilevel import (BN_IMAGES_PER_CLASS, BilevelConfig, BilevelDistiller, freeze_batchnorm,
                                         has_batchnorm)
from datadistill.methods.losses import mean_matching_loss


class SpreadStop:
    """CAFE's stopping rule on a sliding window of accuracies.

    Keeps the last ``window`` accuracies; :meth:`update` returns True once the window is full and
    its spread (max − min) is below ``threshold`` (``when="below"``: the outer loop's rule, the
    network's accuracy has settled) or above it (``when="above"``: the inner loop's rule, the
    network has moved enough). Accuracies are fractions in [0, 1].

    Raises:
        ConfigError: window < 1, threshold < 0 or an unknown ``when``.
    """

    def __init__(self, window: int, threshold: float, when: str) -> None:
        if window < 1 or threshold < 0 or when not in ("below", "above"):
            raise ConfigError(f"invalid stopping rule: window={window} (≥ 1), threshold={threshold} (≥ 0), "
                              f"when={when!r} (below or above)")
        self.values: deque[float] = deque(maxlen=window)
        self.threshold = threshold
        self.when = when

    def update(self, accuracy: float) -> bool:
        self.values.append(float(accuracy))
        if len(self.values) < self.values.maxlen:
            return False
        spread = max(self.values) - min(self.values)
        return spread < self.threshold if self.when == "below" else spread > self.threshold


def parse_weights(text: str) -> tuple[float, ...]:
    """``"1,1,0.1,0.1"`` → (1.0, 1.0, 0.1, 0.1). Raises ConfigError for an empty or non-numeric list."""
    try:
        weights = tuple(float(w) for w in str(text).split(","))
    except ValueError:
        raise ConfigError(f"layer_weights must be comma-separated numbers, got {text!r}") from None
    if not weights or any(w < 0 for w in weights):
        raise ConfigError(f"layer_weights must be non-negative numbers, got {text!r}")
    return weights


@dataclass
class CAFEConfig(BilevelConfig):
    """CAFE settings (official code: 2,000 iterations, lr_img 0.1 halved at 1,200/1,600/1,800, momentum 0.5,
    lr_net 0.01, batch_real 256, init noise).

    Attributes:
        layer_weights: weights of the per-layer feature alignment, from the output backwards: the
            pooled last feature map, then each block's activation from the last to the first; deeper
            networks reuse the last weight (official: 1, 1, 0.1, 0.1).
        discrimination_weight: weight of the discrimination cross-entropy (official ``inner_weight`` 0.01).
        outer_threshold: the outer loop stops when the accuracy spread over ``window`` checks is below
            this (official λ₁ = 0.04).
        inner_threshold: the inner loop stops when the spread is above this (official λ₂ = 0.03).
        window: accuracy checks in the spread (official 10).
        watch_batch: real images per class in each accuracy check (official 128).
        max_outer, max_inner: safety caps on the two loops (the official loops have none and can spin
            for ever when the spread never crosses its threshold).
        lr_milestones: iterations at which lr_img halves (official 1,200, 1,600, 1,800; "" = never).
    """

    layer_weights: str = "1,1,0.1,0.1"
    discrimination_weight: float = 0.01
    outer_threshold: float = 0.04
    inner_threshold: float = 0.03
    window: int = 10
    watch_batch: int = 128
    max_outer: int = 50
    max_inner: int = 50
    lr_milestones: str = "1200,1600,1800"

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_weights(self.layer_weights)
        SpreadStop(self.window, self.outer_threshold, "below")
        SpreadStop(self.window, self.inner_threshold, "above")
        if self.watch_batch < 1 or self.max_outer < 1 or self.max_inner < 1:
            raise ConfigError(f"watch_batch, max_outer and max_inner must be ≥ 1, got {self.watch_batch}, "
                              f"{self.max_outer}, {self.max_inner}")
        if self.discrimination_weight < 0:
            raise ConfigError(f"discrimination_weight must be ≥ 0, got {self.discrimination_weight}")
        self.milestones()

    def milestones(self) -> list[int]:
        try:
            return sorted(int(m) for m in str(self.lr_milestones).split(",") if m.strip())
        except ValueError:
            raise ConfigError(f"lr_milestones must be comma-separated iterations, got {self.lr_milestones!r}") from None


def cafe_loss(real_feats: list[torch.Tensor], syn_feats: list[torch.Tensor], weights: tuple[float, ...],
              discrimination_weight: float) -> torch.Tensor:
    """CAFE's loss for features of G classes (paper §3: layer-wise feature alignment and the discrimination loss; weighting as in the official code).

    Args:
        real_feats: per layer, (G, B, D_l) float, output layer first (index 0 = the embedding).
        syn_feats: per layer, (G, n, D_l) float, same order.
        weights: per-layer alignment weights in that order (the last repeats for extra layers).
        discrimination_weight: λ of the discrimination term.

    Returns:
        Σ_l w_l ‖mean real_l − mean syn_l‖² (summed over classes)
        + ‖centre_real − centre_syn‖² (the embedding's class centres, as the official code adds)
        + λ · Σ_{real x} CE(softmax(ψ(x) · C_syn^T), y_x),
        with ψ the embedding and C_syn the (G, D) synthetic class centres.
    """
    align = sum(weights[min(i, len(weights) - 1)] * mean_matching_loss(r, s)
                for i, (r, s) in enumerate(zip(real_feats, syn_feats)))
    real_emb, syn_emb = real_feats[0], syn_feats[0]
    g, b = real_emb.shape[:2]
    centres = syn_emb.mean(dim=1)
    logits = real_emb.reshape(g * b, -1) @ centres.t()
    labels = torch.arange(g, device=logits.device).repeat_interleave(b)
    discrimination = F.cross_entropy(logits, labels, reduction="sum")
    return align + mean_matching_loss(real_emb, syn_emb) + discrimination_weight * discrimination


def sharded_discrimination(d: "CAFE", real_emb: torch.Tensor, syn_emb: torch.Tensor) -> torch.Tensor:
    """CAFE's discrimination term Σ_{real x} CE(softmax(ψ(x) · C^T), y_x) split over the ranks of a
    class-sharded run: the value is this rank's real images' share; the gradient reaching this rank's
    synthetic images is the whole term's (through their class centres).

    Each rank all-gathers the (G, D) centres C, differentiates its own real images' cross-entropy with
    respect to every centre, and the ranks sum those (G, D) gradients (all-reduce); the returned
    tensor's value is the local cross-entropy and its gradient is that summed gradient pushed through
    this rank's own centres (the chain rule split at C).

    Args:
        d: the distiller (its class blocks).
        real_emb: (G_own, B, D) embeddings of this rank's real images (no graph).
        syn_emb: (G_own, n, D) embeddings of this rank's synthetic images (with the graph to them).
    """
    g, b = real_emb.shape[:2]
    own = syn_emb.mean(dim=1)  # (G_own, D): this rank's centres
    centres = distributed.gather_rows(own.detach().contiguous(), [len(c) for c in d.class_blocks])
    centres.requires_grad_(True)
    labels = torch.tensor(d.own_classes, device=real_emb.device).repeat_interleave(b)
    with torch.enable_grad():
        local = F.cross_entropy(real_emb.reshape(g * b, -1) @ centres.t(), labels, reduction="sum")
        (grad,) = torch.autograd.grad(local, centres)
    grad = distributed.all_reduce_sum(grad)[d.own_classes[0]: d.own_classes[-1] + 1]
    pushed = (own * grad).sum()
    return local.detach() + pushed - pushed.detach()


@register_method("cafe")
class CAFE(BilevelDistiller):
    """Layer-wise feature alignment with a discrimination term and a dynamic bi-level loop (CAFE
    paper, Algorithm 1). One :meth:`step` = one iteration with a fresh network θ:

    repeat (at most ``max_outer`` times): one SGD step of S on :func:`cafe_loss`; check θ's accuracy
    on a real batch; stop if the last ``window`` checks spread less than ``outer_threshold``;
    otherwise train θ on S one epoch at a time (at most ``max_inner``), checking after each epoch,
    until the last ``window`` checks spread more than ``inner_threshold``.

    Works for any channel count, image size, depth and class count. Metrics: ``loss`` (mean over the
    updates), ``outer_steps`` and ``inner_epochs`` of the iteration.
    """

    config_class = CAFEConfig
    config: CAFEConfig

    def layer_features(self, net: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
        """Output-first features of (G, n, C, H, W) images: [embedding, last block, …, first block],
        each (G, n, D_l)."""
        g, n = images.shape[:2]
        feats = net.features(images.flatten(0, 1))
        layers = [feats.embedding, *reversed(feats.activations)]
        return [f.reshape(g, n, -1) for f in layers]

    def matching_loss(self, net: nn.Module) -> torch.Tensor:
        """:func:`cafe_loss` of a fresh real batch; in a class-sharded run the terms of this rank's
        classes, with the discrimination term split at the class centres (:func:`sharded_discrimination`)."""
        real, syn = self.matching_batches(self.config.batch_real)
        with torch.no_grad():
            real_feats = self.layer_features(net, real)
        syn_feats = self.layer_features(net, syn)
        weights, lam = parse_weights(self.config.layer_weights), self.config.discrimination_weight
        if not self.sharding:
            return cafe_loss(real_feats, syn_feats, weights, lam)
        local = cafe_loss(real_feats, syn_feats, weights, 0.0)
        return local + lam * sharded_discrimination(self, real_feats[0], syn_feats[0])

    @torch.no_grad()
    def watch_accuracy(self, net: nn.Module) -> float:
        """θ's accuracy (fraction) on ``watch_batch`` fresh real images per class (in a sharded run each
        rank predicts its own classes' images and the correct counts are summed: exact)."""
        real = self.sample_real(self.config.watch_batch)
        g, n = real.shape[:2]
        labels = torch.tensor(self.own_classes, device=self.device).repeat_interleave(n)
        correct = self.global_count((net(real.flatten(0, 1)).argmax(dim=1) == labels).sum())
        return float(torch.tensor(correct, dtype=torch.float32) / (self.spec.num_classes * n))

    def lr_halvings(self) -> int:
        """How many times lr_img has halved by this iteration (the milestones passed)."""
        return sum(self.iteration >= m for m in self.config.milestones())

    def current_lr(self) -> float:
        return self.config.lr_img * 0.5 ** self.lr_halvings()

    # -- checkpoints ---------------------------------------------------------------------------
    # A step is one whole outer iteration (its network and both stopping windows live inside it), so
    # between steps CAFE keeps only the lr schedule's position beyond the base state.
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["lr_halvings"] = self.lr_halvings()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        halvings = int(state.get("lr_halvings", self.lr_halvings()))
        for group in self.optimiser.param_groups:
            group["lr"] = self.config.lr_img * 0.5 ** halvings

    def step(self) -> dict[str, float]:
        self.require_initialised()
        cfg = self.config
        for group in self.optimiser.param_groups:
            group["lr"] = self.current_lr()
        net, net_optimiser = self.fresh_network()
        outer_stop = SpreadStop(cfg.window, cfg.outer_threshold, "below")
        total, updates, epochs = 0.0, 0, 0
        for _ in range(cfg.max_outer):
            if has_batchnorm(net):
                freeze_batchnorm(net, self.sample_real(BN_IMAGES_PER_CLASS, every_class=True).flatten(0, 1))
            total += self.update_images(self.matching_loss(net))
            updates += 1
            if outer_stop.update(self.watch_accuracy(net)) or updates == cfg.max_outer:
                break
            inner_stop = SpreadStop(cfg.window, cfg.inner_threshold, "above")
            for _ in range(cfg.max_inner):
                self.train_network(net, net_optimiser, 1)
                epochs += 1
                if inner_stop.update(self.watch_accuracy(net)):
                    break
        return {"loss": total / updates, "outer_steps": float(updates), "inner_epochs": float(epochs)}


@register_method("cafe_dsa")
class CAFEDSA(CAFE):
    """CAFE with DSA on the real and synthetic batches (shared parameters per class) and on the
    network's training batches."""

    uses_dsa = True
