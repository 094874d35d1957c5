"""DM: Dataset Condensation with Distribution Matching (Zhao & Bilen, WACV 2023).

Official code: VICO-UoE/DatasetCondensation ``main_DM.py`` (defaults ``--lr_img 1.0``,
``--batch_real 256``, ``--Iteration 20000``, ``--init real``; SGD momentum 0.5 on the images), which
matches the class means of ``net.embed`` of a freshly initialised ConvNet every iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from datadistill.errors import ConfigError
from datadistill.methods.base import register_method
from datadistill.methods.matching import MatchingConfig, MatchingDistiller
from datadistill.models import build_model


LAYERS = ("last", "all")


@dataclass
class DMConfig(MatchingConfig):
    """DM settings. Official ``main_DM.py`` and paper: lr_img 1 (SGD, momentum 0.5), batch_real 256
    real images per class per iteration (the default here too), 20,000 iterations, init real.

    Attributes:
        layers: ``last`` matches the last block's embedding (the paper); ``all`` (ours) matches the
            output of every block as the next block receives it (``Features.outputs``: after pooling
            in the ConvNet, LeNet, AlexNet, VGG and MLP; the stem and stage outputs in ResNet-18), the
            last term being the embedding, so that ``mask_shallow`` can leave the shallow blocks out.
            ``mask_shallow`` > 0 needs ``all``.
    """

    batch_real: int = 256
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
    shared by the real and synthetic images of class c.

    Raises:
        ConfigError: ``layers=all`` with a model whose ``features()`` gives no per-block ``outputs``
            (every built-in model gives them; a plugin model may not).
    """

    config_class = DMConfig

    config: DMConfig

    def __init__(self, config: DMConfig, spec, real, **kwargs) -> None:
        super().__init__(config, spec, real, **kwargs)
        if config.layers == "all":
            check_block_outputs(self.model, spec.channels, spec.num_classes, spec.image_size)

    def statistics(self, net: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
        if self.config.layers == "last":
            return [net.embed(images)]
        feats = net.features(images)
        return [o.flatten(1) for o in feats.outputs[:-1]] + [feats.embedding]

    def combine(self, terms: list[torch.Tensor]) -> torch.Tensor:
        return sum(terms)


def check_block_outputs(model: str, channels: int, num_classes: int, image_size) -> None:
    """Raise ConfigError unless ``model``'s ``features()`` gives per-block ``outputs`` (built on the
    CPU and run on two blank images, in eval mode, without touching the global random state)."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        net = build_model(model, channels, num_classes, image_size).eval()
        feats = net.features(torch.zeros(2, channels, *image_size))
    if getattr(feats, "outputs", None) is None:
        raise ConfigError(f"layers = all needs the per-block outputs of the model, but {model!r}'s features() "
                          "gives none (Features.outputs); accepted: layers=last with any model, layers=all with "
                          "a model whose features() sets outputs (every built-in model)")
