"""GSAM, the expert optimiser of DATM and PAD (their "FTD" buffers: Du et al. 2023, "Minimizing the
Accumulated Trajectory Error to Improve Dataset Distillation"; official `buffer/buffer_FTD.py` in
NUS-HPC-AI-Lab/DATM, `buffer/buffer_CL.py` in NUS-HPC-AI-Lab/PAD, both with `buffer/gsam/gsam.py` of
Zhuang et al. 2022, "Surrogate Gap Guided Sharpness-Aware Minimization").

The update is pytorch-optimizer's :class:`pytorch_optimizer.GSAM`, which performs the reference's
step (read side by side, 2026-12-06): with g = ∇L(θ),

1. e = ρ · g ⊙ θ² / (‖|θ| ⊙ g‖ + 1e-12) (adaptive, the reference's effective default: its
   ``--adaptive`` is ``type=bool, default=True``, so it is always on), or ρ · g / (‖g‖ + 1e-12);
2. g_p = ∇L(θ + e);
3. g ← g_p − α · (g − cos(g, g_p) · ‖g‖ · g_p / (‖g_p‖ + 1e-12)), the component of g orthogonal to
   g_p removed with weight α (the surrogate-gap direction);
4. θ ← SGD step of the base optimiser (lr, momentum, weight decay of the recipe) with that g.

ρ is constant (the official buffers schedule it proportionally to a constant lr, and pass
``--rho_max 0.01 --rho_min 0.01 --alpha 0.3`` in both READMEs).
"""

from __future__ import annotations

import torch
from torch import nn

from datadistill.errors import ConfigError
from datadistill.training.recipe import TrainRecipe

OPTIMISERS = ("sgd", "gsam")
GSAM_RHO = 0.01
GSAM_ALPHA = 0.3


class _ConstantRho:
    """The rho "scheduler" GSAM asks for: ρ at every step."""

    def __init__(self, rho: float) -> None:
        self.rho = rho

    def step(self) -> float:
        return self.rho


def make_gsam(net: nn.Module, recipe: TrainRecipe, rho: float = GSAM_RHO, alpha: float = GSAM_ALPHA,
              adaptive: bool = True) -> torch.optim.Optimizer:
    """GSAM over ``net``'s parameters, wrapping SGD at the recipe's lr, momentum and weight decay.

    Use it as :func:`datadistill.training.fit_network`'s ``optimiser`` (``lambda net, r:
    make_gsam(net, r, rho, alpha)``); :func:`~datadistill.training.train_epoch` gives it each
    batch's loss closure. Its ``param_groups`` are the SGD's (the lr schedule sets them) and its
    ``base_optimizer.state`` holds the momentum buffers.

    Args:
        rho: perturbation radius ρ > 0 (reference 0.01).
        alpha: weight α ∈ [0, 1] of the surrogate-gap component (reference 0.3).
        adaptive: scale the perturbation by θ² (ASAM-style; the reference's effective setting).

    Raises:
        ConfigError: ρ ≤ 0 or α outside [0, 1].
    """
    from pytorch_optimizer import GSAM

    if not rho > 0:
        raise ConfigError(f"rho = {rho} is invalid: expected a GSAM perturbation radius > 0 (reference 0.01)")
    if not 0 <= alpha <= 1:
        raise ConfigError(f"alpha = {alpha} is invalid: expected a GSAM weight in [0, 1] (reference 0.3)")
    base = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay)
    return GSAM(net.parameters(), base, net, _ConstantRho(rho), alpha=alpha, adaptive=adaptive, foreach=False)


def base_optimiser(optimiser: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimiser holding the momentum buffers: GSAM's SGD, or ``optimiser`` itself."""
    return getattr(optimiser, "base_optimizer", optimiser)


__all__ = ["GSAM_ALPHA", "GSAM_RHO", "OPTIMISERS", "base_optimiser", "make_gsam"]
