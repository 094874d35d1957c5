"""Matching losses, pure functions of feature tensors grouped by class.

Shapes: real features (G, B, …) and synthetic features (G, n, …) for G classes, B real and n
synthetic images per class; trailing dimensions are flattened.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mean_matching_loss(real: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
    """Σ_g ‖mean_b real[g, b] − mean_i syn[g, i]‖²: the squared distance between per-class means.

    This is DM's loss (Zhao & Bilen, WACV 2023, eq. 4: the empirical MMD with a linear kernel,
    summed over classes) and DataDAM's per-layer matching (Sajedi et al., ICCV 2023, eqs. 3 and 5).

    Args:
        real: (G, B, …) float.
        syn: (G, n, …) float, same trailing shape.

    Returns:
        Scalar tensor ≥ 0, zero iff every class mean is equal.

    Raises:
        ValueError: if G or the trailing shapes differ.
    """
    if real.shape[0] != syn.shape[0] or real.shape[2:] != syn.shape[2:]:
        raise ValueError(f"real {tuple(real.shape)} and synthetic {tuple(syn.shape)} features do not match")
    diff = real.flatten(2).mean(dim=1) - syn.flatten(2).mean(dim=1)
    return diff.pow(2).sum()


def attention_map(feature_map: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """Spatial attention map of DataDAM (Sajedi et al., ICCV 2023, eq. 2): A(F) = Σ_c |F_c|^p,
    flattened to H·W and L2-normalised per sample.

    Args:
        feature_map: (N, C, H, W) float (any leading batch dimensions before C are allowed).
        power: p ≥ 1; the official code uses 1, the paper's ablation (table 4) 4.

    Returns:
        (…, H·W) float, each row of unit L2 norm (a zero map stays zero).
    """
    att = feature_map.abs()
    if power != 1:
        att = att.pow(power)
    att = att.sum(dim=-3).flatten(-2)
    return F.normalize(att, p=2.0, dim=-1)
