"""DM: Dataset Condensation with Distribution Matching (Zhao & Bilen, WACV 2023)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from datadistill.methods.base import register_method
from datadistill.methods.matching import MatchingConfig, MatchingDistiller


@dataclass
class DMConfig(MatchingConfig):
    """DM settings. Paper: lr_img 1 (SGD, momentum 0.5), batch_real 256, 20,000 iterations, init real."""


@register_method("dm")
class DM(MatchingDistiller):
    """Distribution matching (paper eq. 4): loss = Σ_c ‖mean ψ(A(real_c)) − mean ψ(A(syn_c))‖², with
    ψ the flattened last feature map (the embedding) of a fresh random network and A a DSA transform
    shared by the real and synthetic images of class c."""

    config_class = DMConfig

    def statistics(self, net: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
        return [net.embed(images)]

    def combine(self, terms: list[torch.Tensor]) -> torch.Tensor:
        return terms[0]
