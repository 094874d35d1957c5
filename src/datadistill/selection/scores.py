"""The per-sample difficulty scores as functions of a network's outputs (all **higher = harder**):
EL2N and GraNd (Paul, Ganguli & Dziugaite, NeurIPS 2021, eq. 2 and eq. 1), forgetting events
(Toneva et al., ICLR 2019) and least-confidence uncertainty (DeepCore, Guo, Zhao & Bai, DEXA 2022).
:mod:`datadistill.selection.difficulty` trains the scoring networks and stores the scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


# --------------------------------------------------------------------------- the maths
def el2n(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """EL2N score ``‖softmax(z) − onehot(y)‖₂`` of each row (Paul et al. 2021, eq. 2).

    Args:
        logits: (N, K) float logits z.
        labels: (N,) int64 classes y in [0, K).

    Returns:
        (N,) float32 on the logits' device, in [0, √2]; higher = harder.
    """
    probs = torch.softmax(logits.float(), dim=1)
    onehot = F.one_hot(labels.long(), probs.shape[1]).to(probs)
    return torch.linalg.vector_norm(probs - onehot, dim=1)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Least-confidence uncertainty ``1 − max_k softmax(z)_k`` of each row (DeepCore's LeastConfidence).

    Args:
        logits: (N, K) float logits.

    Returns:
        (N,) float32 on the logits' device, in [0, 1 − 1/K]; higher = harder.
    """
    return 1.0 - torch.softmax(logits.float(), dim=1).amax(dim=1)


def grand(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """GraNd score ``‖∇_θ CE(f(x), y)‖₂`` of each sample over all of ``net``'s parameters θ
    (Paul et al. 2021, eq. 1), from per-sample gradients (``torch.func``: ``functional_call`` +
    ``vmap(grad)``), ``chunk`` samples at a time.

    The network is evaluated as it is (call ``net.eval()`` first for batch-norm models: in train
    mode, batch statistics of a single sample are meaningless); weight decay is not part of the loss.

    Args:
        net: the network; its parameters are not modified and get no ``.grad``.
        images: (N, …) float inputs (moved chunk by chunk to the parameters' device).
        labels: (N,) int64 classes.
        chunk: samples per vmapped batch (memory ≈ chunk × number of parameters floats).

    Returns:
        (N,) float32 on the CPU; higher = harder.

    Raises:
        ValueError: ``chunk`` < 1 or images and labels of different lengths.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be ≥ 1, got {chunk}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in net.named_parameters()}
    buffers = {k: v.detach() for k, v in net.named_buffers()}
    device = next(iter(params.values())).device if params else images.device

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(net, (p, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(out, y.unsqueeze(0))

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    norms = []
    for x, y in zip(images.split(chunk), labels.split(chunk)):
        grads = per_sample(params, x.to(device), y.to(device).long())
        sq = sum(g.flatten(1).double().pow(2).sum(dim=1) for g in grads.values())
        norms.append(sq.sqrt().float().cpu())
    return torch.cat(norms) if norms else torch.zeros(0)


def forgetting_events(correct_history: torch.Tensor | Sequence[Sequence[bool]],
                      never_learned: float | None = None) -> torch.Tensor:
    """Number of forgetting events of each sample (Toneva et al. 2019): transitions from classified
    correctly at one presentation to incorrectly at the next.

    Args:
        correct_history: a bool tensor (T, N) (row t = correctness of every sample at its t-th
            presentation), or one sequence of bools per sample (lengths may differ).
        never_learned: score of a sample never classified correctly; default ``T + 1`` (T = the
            number of presentations, the longest sequence), above the ⌊T/2⌋ events any learned
            sample can reach, so never-learned samples rank hardest.

    Returns:
        (N,) float32 on the CPU; higher = harder.

    Raises:
        ValueError: a tensor that is not 2-D.
    """
    if isinstance(correct_history, torch.Tensor):
        if correct_history.dim() != 2:
            raise ValueError(f"correct_history must be (T, N), got shape {tuple(correct_history.shape)}")
        hist = correct_history.bool().cpu()
        t = hist.shape[0]
        events = (hist[:-1] & ~hist[1:]).sum(dim=0).float()
        learned = hist.any(dim=0)
    else:
        seqs = [[bool(v) for v in s] for s in correct_history]
        t = max((len(s) for s in seqs), default=0)
        events = torch.tensor([sum(a and not b for a, b in zip(s, s[1:])) for s in seqs], dtype=torch.float32)
        learned = torch.tensor([any(s) for s in seqs], dtype=torch.bool)
    fill = float(t + 1) if never_learned is None else float(never_learned)
    return torch.where(learned, events, torch.full_like(events, fill))


__all__ = ["el2n", "forgetting_events", "grand", "uncertainty"]
