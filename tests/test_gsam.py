"""GSAM, the expert optimiser of DATM/PAD (issue #21): one step on a quadratic against a hand
computation of the reference's update (buffer/gsam/gsam.py of NUS-HPC-AI-Lab/DATM), the settings'
checks, and experts trained with it."""

import math

import pytest
import torch
from torch import nn

from datadistill.errors import ConfigError
from datadistill.training import TrainRecipe, train_epoch
from datadistill.training.sam import make_gsam
from datadistill.augment import DSA

A = [1.0, 3.0, 2.0]  # L(θ) = ½ Σ a_i θ_i², so ∇L = a ⊙ θ
THETA = [1.0, -2.0, 0.5]


def _hand_step(theta, lr, rho, alpha, adaptive):
    g = [a * t for a, t in zip(A, theta)]
    weights = [abs(t) if adaptive else 1.0 for t in theta]
    norm = math.sqrt(sum((w * gi) ** 2 for w, gi in zip(weights, g)))
    e = [rho * gi * (t * t if adaptive else 1.0) / (norm + 1e-12) for gi, t in zip(g, theta)]
    gp = [a * (t + ei) for a, t, ei in zip(A, theta, e)]
    ng, ngp = math.sqrt(sum(x * x for x in g)), math.sqrt(sum(x * x for x in gp))
    cos = sum(x * y for x, y in zip(g, gp)) / (ng * ngp + 1e-12)
    vertical = [gi - cos * ng * gpi / (ngp + 1e-12) for gi, gpi in zip(g, gp)]
    d = [gpi - alpha * v for gpi, v in zip(gp, vertical)]
    return [t - lr * di for t, di in zip(theta, d)]


def _quadratic_net():
    net = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([THETA], dtype=torch.float64))
    return net.double()


@pytest.mark.parametrize("adaptive", [True, False])
def test_one_gsam_step_equals_the_hand_computation(adaptive):
    net = _quadratic_net()
    recipe = TrainRecipe(epochs=1, lr=0.1, batch_size=3, momentum=0.0, weight_decay=0.0, schedule="constant",
                         augmentation="none")
    opt = make_gsam(net, recipe, rho=0.05, alpha=0.3, adaptive=adaptive)
    a = torch.tensor(A, dtype=torch.float64)
    opt.set_closure(lambda out, tgt: 0.5 * (a * net.weight[0] ** 2).sum(), torch.eye(3, dtype=torch.float64),
                    torch.zeros(3))
    opt.step()
    expected = _hand_step(THETA, 0.1, 0.05, 0.3, adaptive)
    assert net.weight[0].tolist() == pytest.approx(expected, abs=1e-7)  # its norms accumulate in float32
    plain_sgd = [t - 0.1 * ai * t for ai, t in zip(A, THETA)]
    assert net.weight[0].tolist() != pytest.approx(plain_sgd, abs=1e-6)  # GSAM is not SGD here


def test_bad_gsam_settings_are_refused():
    net = _quadratic_net()
    recipe = TrainRecipe(epochs=1, lr=0.1, batch_size=3, momentum=0.0, weight_decay=0.0, schedule="constant",
                         augmentation="none")
    with pytest.raises(ConfigError, match="rho = 0"):
        make_gsam(net, recipe, rho=0.0)
    with pytest.raises(ConfigError, match="alpha = 1.5"):
        make_gsam(net, recipe, alpha=1.5)


def test_train_epoch_drives_gsam_with_a_closure_per_batch():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    images, labels = torch.randn(8, 1, 2, 2), torch.tensor([0, 1] * 4)
    recipe = TrainRecipe(epochs=1, lr=0.5, batch_size=4, momentum=0.0, weight_decay=0.0, schedule="constant",
                         augmentation="none")
    opt = make_gsam(net, recipe, rho=0.05, alpha=0.3)
    seen = []
    before = [p.detach().clone() for p in net.parameters()]
    train_epoch(net, opt, images, labels, torch.arange(8), 4, DSA("none"), torch.Generator().manual_seed(0),
                on_batch=lambda idx, logits: seen.append((idx.tolist(), tuple(logits.shape))))
    assert seen == [([0, 1, 2, 3], (4, 2)), ([4, 5, 6, 7], (4, 2))]
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


def test_gsam_experts_differ_from_sgd_record_the_optimiser_and_resume(tiny_dataset, tiny_model, tmp_path):
    from trajectory_helpers import CPU, epoch_file, expert_settings, read_epoch

    from datadistill.trajectory import ExpertSettings, train_experts

    sgd = train_experts(tiny_dataset, tmp_path / "sgd", expert_settings(tiny_model, num_experts=1, momentum=0.9), CPU)
    settings = expert_settings(tiny_model, num_experts=1, momentum=0.9, optimizer="gsam", rho=0.05)
    gsam = train_experts(tiny_dataset, tmp_path / "gsam", settings, CPU)
    a, _ = read_epoch(epoch_file(sgd, 0, 4))
    b, _ = read_epoch(epoch_file(gsam, 0, 4))
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])
    assert "__momentum__.classifier.weight" in b  # GSAM's SGD momentum is saved for resuming
    import json

    recorded = json.loads((gsam / "experts.json").read_text())["settings"]
    assert (recorded["optimizer"], recorded["rho"], recorded["alpha"]) == ("gsam", 0.05, 0.3)
    assert "optimizer" not in json.loads((sgd / "experts.json").read_text())["settings"]  # pre-#21 folders resume
    # resumed after losing its last epoch: the same trajectory (momentum restored into GSAM's SGD)
    epoch_file(gsam, 0, 4).unlink()
    train_experts(tiny_dataset, gsam, settings, CPU)
    c, _ = read_epoch(epoch_file(gsam, 0, 4))
    assert all(torch.equal(b[k], c[k]) for k in b)
    with pytest.raises(ConfigError, match="optimizer"):
        ExpertSettings(model=tiny_model, optimizer="adam")
