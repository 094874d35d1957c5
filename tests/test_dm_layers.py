"""DM ``layers=all`` on every registered model (the per-block outputs of ``features()``), and its
clear refusal for a model that gives none."""

import pytest
import torch
from torch import nn

from datadistill.data import DatasetSpec
from datadistill.errors import ConfigError
from datadistill.models import MODELS, ConvNet, Features
from helpers import make_distiller, make_tiny_dataset

SIZES = (28, 64, 128)  # the first size a model can be built at (the deep ConvNets need larger images)


def spec_for(model: str) -> DatasetSpec:
    for side in SIZES:
        try:
            MODELS.get(model)(1, 2, (side, side))
        except ConfigError:
            continue
        return DatasetSpec(name="tiny2", channels=1, image_size=(side, side), class_names=("a", "b"), mean=(0.5,),
                           std=(0.25,), dsa_strategy="none")
    raise AssertionError(f"{model} cannot be built at {SIZES}")


@pytest.mark.parametrize("model", MODELS.names())
def test_dm_all_layers_runs_on_every_registered_model(model):
    torch.manual_seed(0)
    data = make_tiny_dataset(per_class=3, test_size=2, spec=spec_for(model))
    d = make_distiller("dm", data, ipc=1, model=model, batch_real=2, layers="all", mask_shallow=0.5)
    d.initialise("noise")
    before = d.images.detach().clone()
    net = d.fresh_network()
    x = data.train.images[:2]
    stats = d.statistics(net, x)
    feats = net.features(x)
    assert len(stats) == len(feats.outputs) >= 1
    assert all(s.dim() == 2 and s.shape[0] == 2 for s in stats)
    assert torch.allclose(stats[-1], net.embed(x), atol=1e-5)  # the deepest term is DM's embedding
    metrics = d.step()
    assert torch.isfinite(torch.tensor(metrics["loss"])) and not torch.equal(d.images.detach(), before)


def test_convnet_outputs_are_the_pooled_activations(tiny_dataset, tiny_model):
    """On the ConvNet, layers=all matches the pooled output of every block, as before the generic outputs."""
    d = make_distiller("dm", tiny_dataset, ipc=2, layers="all")
    net = d.fresh_network()
    x = tiny_dataset.train.images[:4]
    feats = net.features(x)
    expected = [net.pool(a).flatten(1) for a in feats.activations[:-1]] + [feats.embedding]
    assert all(torch.equal(s, e) for s, e in zip(d.statistics(net, x), expected, strict=True))


class NoOutputs(ConvNet):
    """A plugin-style model whose features() predates Features.outputs."""

    def features(self, x: torch.Tensor) -> Features:
        feats = super().features(x)
        return Features(activations=feats.activations, embedding=feats.embedding)


def test_dm_all_layers_refuses_a_model_without_block_outputs(tiny_dataset, monkeypatch):
    monkeypatch.setitem(MODELS._items, "test_no_outputs", lambda c, k, size, **kw: NoOutputs(c, k, size, width=8))
    state = torch.get_rng_state()
    with pytest.raises(ConfigError, match="layers = all.*'test_no_outputs'.*accepted: layers=last"):
        make_distiller("dm", tiny_dataset, ipc=2, model="test_no_outputs", layers="all")
    assert torch.equal(torch.get_rng_state(), state)  # the check builds the model without drawing from torch's RNG
    d = make_distiller("dm", tiny_dataset, ipc=2, model="test_no_outputs")  # layers=last works
    d.initialise("noise")
    assert isinstance(d.fresh_network(), nn.Module) and d.step()["loss"] >= 0
