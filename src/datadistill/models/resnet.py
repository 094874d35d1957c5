"""ResNet-18 for small images, on torchvision's ResNet (imported here, so that importing the model
registry does not import torchvision)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from datadistill.models.convnet import Features


class ResNet18(ResNet):
    """torchvision's ResNet-18 with the small-image stem of the DC / VICO ``ResNet18``: ``conv1`` is
    Conv(C, 64, 3, stride 1, padding 1, no bias) and ``maxpool`` is Identity; global average pooling
    then Linear(512, classes) (``fc``, aliased as ``classifier``). Any image size ≥ 1 px works.

    Weights follow torchvision's initialisation (Kaiming-normal convs, norm weight 1 / bias 0; the
    replaced ``conv1`` is re-initialised the same way), not PyTorch's default as in the VICO code.

    Args:
        channels: input channels C.
        num_classes: output classes.
        norm_layer: ``nn.BatchNorm2d`` or :func:`_instance_norm` (GroupNorm(c, c)).
    """

    def __init__(self, channels: int, num_classes: int, norm_layer: Callable[[int], nn.Module]) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, norm_layer=norm_layer)
        self.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        self.embedding_dim = self.fc.in_features

    @property
    def classifier(self) -> nn.Linear:
        return self.fc

    def features(self, x: torch.Tensor) -> Features:
        """Activations after the stem and after each of the four stages (also the outputs: no pooling
        between stages, ``maxpool`` is Identity), and the pooled embedding."""
        x = self.relu(self.bn1(self.conv1(x)))
        activations = [x]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            activations.append(x)
        return Features(activations=activations, embedding=torch.flatten(self.avgpool(x), 1),
                        outputs=list(activations))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The globally average-pooled output of the last stage, shape (N, 512)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_classes) for images (N, C, H, W) float32 normalised per channel."""
        return self.fc(self.embed(x))
