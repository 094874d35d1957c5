"""Compute cost of training: FLOPs counted by torch's own FLOP counter
(``torch.utils.flop_counter.FlopCounterMode``).

The counter counts the matrix multiplications and convolutions (forward, and in the backward pass
the gradients autograd actually computes); element-wise ops (norms, activations, pooling), the DSA
augmentation and the optimiser step are not counted. They are a few percent of a ConvNet's total.
One multiply-add counts as 2 FLOPs.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def _probe(net: nn.Module, input_shape: tuple[int, int, int], batch: int) -> tuple[nn.Module, torch.Tensor]:
    probe = copy.deepcopy(net).cpu()
    device = torch.device("cpu")
    return probe, torch.zeros(batch, *input_shape, device=device)


def forward_flops(net: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs of one forward pass of one image of shape ``(C, H, W)`` through ``net`` (eval mode).

    ``net`` is copied to the CPU for counting; the original is left untouched.
    """
    probe, x = _probe(net, input_shape, 2)
    probe.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        probe(x)
    return counter.get_total_flops() // 2


def training_flops_per_image(net: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs of one training step per image: forward plus backward (gradients of the parameters),
    measured on a batch of 2 in train mode (BatchNorm needs more than one image) and halved."""
    probe, x = _probe(net, input_shape, 2)
    probe.train()
    with FlopCounterMode(display=False) as counter:
        logits = probe(x)
        logits.sum().backward()
    return counter.get_total_flops() // 2


__all__ = ["forward_flops", "training_flops_per_image"]
