"""The ConvNet's default depth by image size (3 blocks up to 32 pixels, 4 up to 64, 5 up to 128, 7
above: a 224-pixel MHIST image gets 7 blocks and a 1×1 embedding), and the MNIST ConvNet unchanged by it."""

from __future__ import annotations

import pytest
import torch

from datadistill.models import build_model
from datadistill.models.convnet import default_depth


@pytest.mark.parametrize("side, depth", [(8, 3), (28, 3), (32, 3), (33, 4), (48, 4), (64, 4), (128, 5), (129, 7),
                                         (224, 7)])
def test_default_depth(side, depth):
    assert default_depth((side, side)) == depth


def test_convnet_at_224_has_seven_blocks_and_runs():
    torch.manual_seed(0)
    net = build_model("convnet", 3, 2, (224, 224))
    assert len(net.blocks) == 7 and net.embedding_dim == 128 * 1 * 1
    with torch.no_grad():
        assert net(torch.randn(1, 3, 224, 224)).shape == (1, 2)
    assert len(build_model("convnet", 3, 200, (64, 64)).blocks) == 4


def test_mnist_convnet_parameter_count_unchanged():
    net = build_model("convnet", 1, 10, (28, 28))
    assert len(net.blocks) == 3 and sum(p.numel() for p in net.parameters()) == 317_706
