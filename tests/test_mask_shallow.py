"""PAD's shallow-layer masking carried over to DM and DataDAM (``mask_shallow``)."""

import pytest
import torch

from datadistill.errors import ConfigError
from datadistill.methods.losses import mean_matching_loss
from helpers import make_distiller


def _loss_terms(d, net, real, syn):
    chunk = real.shape[0] * real.shape[1]
    real_stats = d.grouped_statistics(net, real, chunk)
    syn_stats = d.grouped_statistics(net, syn, chunk)
    return [mean_matching_loss(r, s) for r, s in zip(real_stats, syn_stats)]


def _setup(method, data, **kw):
    d = make_distiller(method, data, ipc=2, **kw)
    d.initialise("noise")
    torch.manual_seed(0)
    net = d.fresh_network()
    real = d.real.sample(4, torch.Generator().manual_seed(0))
    return d, net, real, d.synthetic_by_class()


@pytest.mark.parametrize("ratio, dropped", [(0.0, 0), (0.3, 0), (0.34, 1), (0.67, 2), (0.99, 2)])
def test_datadam_mask_drops_the_shallowest_attention_terms(tiny_dataset, tiny_model, ratio, dropped):
    d, net, real, syn = _setup("datadam", tiny_dataset, mask_shallow=ratio)
    terms = _loss_terms(d, net, real, syn)
    assert len(terms) == 3  # the tiny ConvNet: 2 attention maps + the embedding
    cfg = d.config
    kept_attention = sum(terms[i] for i in range(dropped, 2)) if dropped < 2 else torch.tensor(0.0)
    expected = cfg.loss_scale * (kept_attention + cfg.task_balance * terms[2])
    assert torch.allclose(d.class_loss(net, real, syn, 64), expected, rtol=1e-5)
    if dropped:  # the masked terms are not zero themselves: masking changed the loss
        full = cfg.loss_scale * (terms[0] + terms[1] + cfg.task_balance * terms[2])
        assert not torch.allclose(expected, full)


def test_dm_all_layers_matches_every_block_and_masks_shallow(tiny_dataset, tiny_model):
    d, net, real, syn = _setup("dm", tiny_dataset, layers="all")
    terms = _loss_terms(d, net, real, syn)
    assert len(terms) == 3
    assert torch.allclose(d.class_loss(net, real, syn, 64), sum(terms), rtol=1e-5)
    # the deepest term is DM's usual embedding term
    d_last, *_ = _setup("dm", tiny_dataset)
    assert torch.allclose(_loss_terms(d_last, net, real, syn)[0], terms[2], rtol=1e-5)
    d_mask, *_ = _setup("dm", tiny_dataset, layers="all", mask_shallow=0.5)
    assert torch.allclose(d_mask.class_loss(net, real, syn, 64), terms[1] + terms[2], rtol=1e-5)


def test_masked_layers_give_no_gradient(tiny_dataset, tiny_model):
    """With every layer but the deepest masked, the loss equals the last-layer-only loss, gradients included."""
    d, net, real, syn = _setup("dm", tiny_dataset, layers="all", mask_shallow=0.9)
    loss = d.class_loss(net, real, syn, 64)
    g_masked, = torch.autograd.grad(loss, d.images)
    d2, *_ = _setup("dm", tiny_dataset)
    syn2 = d2.synthetic_by_class()
    loss2 = d2.class_loss(net, real, syn2, 64)
    g_last, = torch.autograd.grad(loss2, d2.images)
    assert torch.allclose(loss, loss2, rtol=1e-5)
    assert torch.allclose(g_masked, g_last, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("args, match", [
    ({"mask_shallow": 1.0}, "mask_shallow"), ({"mask_shallow": -0.1}, "mask_shallow"),
    ({"mask_shallow": 0.5}, "layers=all"), ({"layers": "middle"}, "layers"),
])
def test_bad_mask_settings(tiny_dataset, tiny_model, args, match):
    with pytest.raises(ConfigError, match=match):
        make_distiller("dm", tiny_dataset, ipc=2, **args)


def test_cli_mask_shallow_reaches_the_method(mnist_root, tmp_path):
    from click.testing import CliRunner

    from datadistill.cli import main

    r = CliRunner().invoke(main, ["distill", "--method", "dm", "--mask-shallow", "0.5", "--iterations", "1",
                                  "--num-eval", "0", "--data-root", str(mnist_root), "--quiet", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "layers=all" in r.output
