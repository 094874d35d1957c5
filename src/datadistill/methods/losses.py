"""Matching losses, pure functions of feature tensors grouped by class.

Shapes: real features (G, B, …) and synthetic features (G, n, …) for G classes, B real and n
synthetic images per class; trailing dimensions are flattened.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    att = abs_power(feature_map, power).sum(dim=-3).flatten(-2)
    return F.normalize(att, p=2.0, dim=-1)


def abs_power(x: torch.Tensor, power: float) -> torch.Tensor:
    """|x|^p element-wise. For integer p it is computed by repeated multiplication (for even p from
    x², which needs no abs); other p use ``pow``. On this project's CPU ``pow`` was a quarter of a
    DataDAM step at p = 4 (torch profiler); the whole attention map, forward and backward, is 1.12×
    faster this way (benchmarks/attention_power.py, docs/benchmarks.md)."""
    if power == 1:
        return x.abs()
    if float(power).is_integer() and 2 <= power <= 16:
        n = int(power)
        base, n = (x.square(), n // 2) if n % 2 == 0 else (x.abs(), n)
        out = None
        while n:  # exponentiation by squaring
            if n & 1:
                out = base if out is None else out * base
            n >>= 1
            if n:
                base = base.square()
        return out
    return x.abs().pow(power)


GRADIENT_DISTANCES = ("layerwise", "mse", "cos")


def _layerwise_distance(real: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
    """DC's per-layer distance for one parameter's gradients shaped (G, *param_shape)."""
    shape = real.shape[1:]
    if len(shape) <= 1:  # biases and norm scales/shifts: ignored
        return real.new_zeros(())
    # conv (out, in, kh, kw) -> (out, in·kh·kw); layer norm (C, h, w) -> (C, h·w); linear (out, in) as is
    a = real.reshape(real.shape[0], shape[0], -1)
    b = syn.reshape(syn.shape[0], shape[0], -1)
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + 1e-6)
    return (1 - cos).sum()


def gradient_distance(real: Sequence[torch.Tensor], syn: Sequence[torch.Tensor],
                      distance: str = "layerwise") -> torch.Tensor:
    """Distance between the real and synthetic gradients of G classes, summed over classes.

    Source: Zhao, Mopuri & Bilen, "Dataset Condensation with Gradient Matching", ICLR 2021, the gradient
    matching distance d(A, B) (``layerwise``, the reference code's ``ours``); the ``mse`` and ``cos`` options are the reference
    code's alternatives (``dis_metric``).

    * ``layerwise``: Σ_layers Σ_out-channels (1 − A_i·B_i / (‖A_i‖‖B_i‖ + 1e-6)), where A_i, B_i are
      the gradients of output channel (row) i, flattened; 1-D gradients (biases, norm parameters)
      are ignored.
    * ``mse``: Σ over every parameter element of (A − B)².
    * ``cos``: 1 − cos(A, B) of all gradients concatenated into one vector per class.

    Args:
        real: one tensor per parameter, (G, *param_shape) float: per-class gradients on real data.
        syn: same shapes: per-class gradients on the synthetic set (may carry a graph to the images).
        distance: ``layerwise``, ``mse`` or ``cos``.

    Returns:
        Scalar tensor ≥ 0 (0 for identical gradients, up to the 1e-6 guard).

    Raises:
        ValueError: unknown ``distance`` or mismatched shapes.
    """
    if distance not in GRADIENT_DISTANCES:
        raise ValueError(f"unknown gradient distance {distance!r}: expected one of {', '.join(GRADIENT_DISTANCES)}")
    if len(real) != len(syn) or any(r.shape != s.shape for r, s in zip(real, syn)):
        raise ValueError("real and synthetic gradients must have the same parameters and shapes")
    if distance == "layerwise":
        return torch.stack([_layerwise_distance(r, s) for r, s in zip(real, syn)]).sum()
    a = torch.cat([r.flatten(1) for r in real], dim=1)
    b = torch.cat([s.flatten(1) for s in syn], dim=1)
    if distance == "mse":
        return (a - b).pow(2).sum()
    return (1 - (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + 1e-6)).sum()


def shallow_mask(num_params: int, ratio: float, device=None) -> torch.Tensor:
    """PAD's depth mask (Li et al. 2024, §3.2): False for the first ``⌊ratio · P⌋`` entries of the
    flattened parameter vector (the shallow layers, in ``named_parameters`` order), True after.

    Returns:
        (P,) bool.

    Raises:
        ValueError: ratio outside [0, 1).
    """
    if not 0 <= ratio < 1:
        raise ValueError(f"mask ratio {ratio} must be in [0, 1)")
    mask = torch.ones(num_params, dtype=torch.bool, device=device)
    mask[: int(num_params * ratio)] = False
    return mask


def smallest_error_mask(student: torch.Tensor, target: torch.Tensor, ratio: float) -> torch.Tensor:
    """PAD's loss-based mask: False for the ``⌊ratio · P⌋`` parameters whose matching error
    (θ̂ − θ*)² is smallest (ties to the lower index), True for the rest. Computed without gradient.

    Args:
        student, target: (P,) float.

    Returns:
        (P,) bool.
    """
    if not 0 <= ratio < 1:
        raise ValueError(f"mask ratio {ratio} must be in [0, 1)")
    k = int(student.numel() * ratio)
    mask = torch.ones(student.numel(), dtype=torch.bool, device=student.device)
    if k:
        err = (student.detach() - target).pow(2)
        mask[torch.argsort(err, stable=True)[:k]] = False
    return mask


def trajectory_loss(student: torch.Tensor, start: torch.Tensor, target: torch.Tensor,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """MTT's normalised parameter matching loss (Cazenavette et al., CVPR 2022, eq. 2):
    ‖θ̂_{t+N} − θ*_{t+M}‖² / ‖θ*_t − θ*_{t+M}‖², both sums over the entries kept by ``mask``
    (PAD, eq. 6: masked parameters leave the numerator and the normaliser).

    Args:
        student: (P,) float, the student's flattened parameters after N steps on the synthetic set.
        start: (P,) float, the expert's parameters at epoch t (where the student started).
        target: (P,) float, the expert's parameters at epoch t + M.
        mask: (P,) bool, True = matched; None = all.

    Returns:
        Scalar ≥ 0; 0 iff the student reaches the target on the kept entries. A start equal to the
        target gives inf or NaN (the caller treats it as a non-finite step).
    """
    if not student.shape == start.shape == target.shape:
        raise ValueError(f"parameter vectors differ in shape: {tuple(student.shape)}, {tuple(start.shape)}, "
                         f"{tuple(target.shape)}")
    num = (student - target).pow(2)
    den = (start - target).pow(2)
    if mask is not None:
        num, den = num[mask], den[mask]
    return num.sum() / den.sum()
