"""DM: Dataset Condensation with Distribution Matching (Zhao & Bilen, WACV 2023)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from datadistill.errors import ConfigError
from datadistill.methods.base import register_method
from datadistill.methods.matching import MatchingConfig, MatchingDistiller


LAYERS = ("last", "all")


@dataclass
class DMConfig(MatchingConfig):
    """DM settings. Paper: lr_img 1 (SGD, momentum 0.5), batch_real 256, 20,000 iterations, init real.

    Attributes:
        layers: ``last`` matches the last block's embedding (the paper); ``all`` matches the pooled
            output of every block (the last one is the embedding), so that ``mask_shallow`` can
            leave the shallow blocks out. ``mask_shallow`` > 0 needs ``all``.
    """

    layers: str = "last"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layers not in LAYERS:
            raise ConfigError(f"layers = {self.layers!r} is invalid: expected one of {', '.join(LAYERS)}")
        if self.mask_shallow > 0 and self.layers == "last":
            raise ConfigError(f"mask_shallow = {self.mask_shallow} needs layers=all: with layers=last DM "
                              f"matches one layer, the deepest, which is never masked")


@register_method("dm")
class DM(MatchingDistiller):
    """Distribution matching (paper eq. 4): loss = Σ_c ‖mean ψ(A(real_c)) − mean ψ(A(syn_c))‖², with
    ψ the flattened last feature map (the embedding) of a fresh random network and A a DSA transform
    shared by the real and synthetic images of class c."""

    config_class = DMConfig

    config: DMConfig

    def statistics(self, net: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
        if self.config.layers == "last":
            return [net.embed(images)]
        feats = net.features(images)
        return [net.pool(a).flatten(1) for a in feats.activations[:-1]] + [feats.embedding]

    def combine(self, terms: list[torch.Tensor]) -> torch.Tensor:
        return sum(terms)
