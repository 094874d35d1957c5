import pytest
import torch
from torch import nn

from datadistill.data import LabelledImages
from datadistill.errors import ConfigError
from datadistill.evaluation import EvalResult, EvalSettings, accuracy, evaluate_synthetic_set, train_network
from datadistill.evaluation import protocol
from datadistill.io import SyntheticSet
from datadistill.runtime import make_generator
from helpers import TINY_MODEL

CPU = torch.device("cpu")


def tiny_set(labels=None, num_classes=3, channels=1, size=28, meta=None):
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2, 2]) if labels is None else labels
    images = torch.randn(len(labels), channels, size, size, generator=gen)
    return SyntheticSet(images, labels, metadata={"num_classes": num_classes, **(meta or {})})


def settings(**kw):
    return EvalSettings(**{"model": TINY_MODEL, "num_eval": 2, "epochs": 2, "batch_size": 4, **kw})


def test_evaluate_runs_and_returns_accuracies(tiny_dataset, tiny_model):
    seen = []
    res = evaluate_synthetic_set(tiny_set(), tiny_dataset.test, settings(), CPU, seed=0,
                                 progress=lambda k, a: seen.append((k, a)))
    assert isinstance(res, EvalResult)
    assert res.model == TINY_MODEL
    assert len(res.accuracies) == 2 and len(res.train_accuracies) == 2
    assert all(0.0 <= a <= 100.0 for a in res.accuracies + res.train_accuracies)
    # accuracies are multiples of 100/30 (30 test images)
    assert all(abs(a * 30 / 100 - round(a * 30 / 100)) < 1e-9 for a in res.accuracies)
    assert [k for k, _ in seen] == [0, 1] and [a for _, a in seen] == res.accuracies
    assert res.seconds >= 0
    d = res.as_dict()
    assert d["accuracy_mean"] == pytest.approx(sum(res.accuracies) / 2)
    assert set(d) >= {"model", "accuracy_mean", "accuracy_std", "accuracies", "train_accuracies", "eval_seconds"}


def test_evaluate_is_repeatable(tiny_dataset, tiny_model):
    a = evaluate_synthetic_set(tiny_set(), tiny_dataset.test, settings(), CPU, seed=4)
    torch.manual_seed(999)  # the global state must not matter
    b = evaluate_synthetic_set(tiny_set(), tiny_dataset.test, settings(), CPU, seed=4)
    assert a.accuracies == b.accuracies and a.train_accuracies == b.train_accuracies


def test_evaluate_learns_a_separable_problem(tiny_model):
    """Class prototypes as the synthetic set, noisy copies as the test set: training must work."""
    gen = torch.Generator().manual_seed(0)
    protos = torch.randn(3, 1, 28, 28, generator=gen) * 2
    syn = SyntheticSet(protos.repeat(2, 1, 1, 1), torch.arange(3).repeat(2), metadata={"num_classes": 3})
    test_labels = torch.arange(3).repeat(10)
    test = LabelledImages(protos[test_labels] + 0.1 * torch.randn(30, 1, 28, 28, generator=gen), test_labels)
    res = evaluate_synthetic_set(syn, test, settings(num_eval=1, epochs=30, lr=0.01, dsa_strategy="none"), CPU)
    assert res.train_accuracies == [100.0]
    assert res.accuracies[0] >= 90.0


def test_evaluate_mismatched_channels_or_size(tiny_dataset, tiny_model):
    with pytest.raises(ConfigError, match="channels"):
        evaluate_synthetic_set(tiny_set(channels=3), tiny_dataset.test, settings(), CPU)
    with pytest.raises(ConfigError):
        evaluate_synthetic_set(tiny_set(size=32), tiny_dataset.test, settings(), CPU)


def test_evaluate_soft_labels(tiny_dataset, tiny_model):
    soft = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    syn = SyntheticSet(torch.randn(6, 1, 28, 28), soft, metadata={})
    res = evaluate_synthetic_set(syn, tiny_dataset.test, settings(num_eval=1), CPU)
    assert len(res.accuracies) == 1 and 0 <= res.accuracies[0] <= 100
    assert 0 <= res.train_accuracies[0] <= 100


def test_soft_cross_entropy_equals_hard_for_peaked_logits():
    logits = torch.randn(4, 3)
    targets = torch.tensor([0, 2, 1, 1])
    peaked = torch.nn.functional.one_hot(targets, 3).float() * 1000
    from datadistill.training import classification_loss

    assert torch.allclose(classification_loss(logits, peaked), classification_loss(logits, targets), atol=1e-5)


def _capture_training(monkeypatch):
    calls = []
    real_train = protocol.train_network

    def spy(net, images, targets, s, lr, generator, after_epoch=None):
        calls.append({"net": net, "lr": lr, "targets": targets, "settings": s})
        return real_train(net, images, targets, s, lr, generator, after_epoch)

    monkeypatch.setattr(protocol, "train_network", spy)
    return calls


def test_learned_lr_replaces_settings_lr(tiny_dataset, tiny_model, monkeypatch):
    calls = _capture_training(monkeypatch)
    syn = tiny_set()
    syn.learned_lr = 0.125
    evaluate_synthetic_set(syn, tiny_dataset.test, settings(num_eval=1, epochs=1, lr=0.5), CPU)
    evaluate_synthetic_set(tiny_set(), tiny_dataset.test, settings(num_eval=1, epochs=1, lr=0.5), CPU)
    assert [c["lr"] for c in calls] == [0.125, 0.5]


def test_num_classes_from_metadata_or_labels(tiny_dataset, tiny_model, monkeypatch):
    calls = _capture_training(monkeypatch)
    two_classes = torch.tensor([0, 0, 1, 1, 0, 1])
    evaluate_synthetic_set(tiny_set(two_classes, num_classes=5), tiny_dataset.test, settings(num_eval=1, epochs=1), CPU)
    syn = tiny_set(two_classes)
    syn.metadata = {"class_names": ["a", "b", "c", "d"]}
    evaluate_synthetic_set(syn, tiny_dataset.test, settings(num_eval=1, epochs=1), CPU)
    syn.metadata = {}
    evaluate_synthetic_set(syn, tiny_dataset.test, settings(num_eval=1, epochs=1), CPU)
    assert [c["net"].classifier.out_features for c in calls] == [5, 4, 2]


@pytest.mark.parametrize("kw, match", [
    ({"num_eval": 0}, "num_eval"),
    ({"epochs": 0}, "epochs"),
    ({"lr": 0.0}, "lr"),
    ({"lr": -1.0}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"batch_size": 0}, "batch"),
    ({"curve_every": -1}, "curve_every"),
])
def test_eval_settings_validation(kw, match):
    with pytest.raises(ConfigError, match=match):
        EvalSettings(**kw)


def test_eval_settings_defaults():
    s = EvalSettings()
    assert (s.model, s.num_eval, s.epochs, s.lr, s.batch_size, s.momentum, s.weight_decay) == (
        "convnet", 3, 300, None, 256, 0.9, 5e-4)
    assert s.resolved_lr == 0.01  # the architecture's default (reference code: 0.01 everywhere)
    assert EvalSettings(lr=0.03).resolved_lr == 0.03


class _LookupNet(nn.Module):
    """Predicts the class written in pixel (0, 0) of the first channel."""

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float()


def test_accuracy_counts_correct_predictions():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    images = torch.zeros(8, 1, 2, 2)
    images[:, 0, 0, 0] = labels.float()
    net = _LookupNet()
    net.train()
    assert accuracy(net, LabelledImages(images, labels), CPU, batch_size=3) == 100.0
    assert not net.training  # evaluated in eval mode
    wrong = labels.clone()
    wrong[:2] = (wrong[:2] + 1) % 3
    assert accuracy(net, LabelledImages(images, wrong), CPU) == pytest.approx(75.0)


def test_train_network_lowers_lr_at_half(tiny_model, monkeypatch):
    from datadistill.models import build_model

    lrs = []
    real_sgd = torch.optim.SGD

    class SpySGD(real_sgd):
        def step(self, closure=None):
            lrs.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "SGD", SpySGD)
    net = build_model(TINY_MODEL, 1, 3, (28, 28))
    images, labels = torch.randn(6, 1, 28, 28), torch.tensor([0, 1, 2, 0, 1, 2])
    train_network(net, images, labels, settings(epochs=4, batch_size=3, dsa_strategy="none"), 0.2, make_generator(0))
    assert lrs == pytest.approx([0.2] * 4 + [0.02] * 4)


# --- vectorised training, learning curves, per-network callback ---------------------------------

def _trained(vectorise, tiny_dataset, **kw):
    nets = []
    res = evaluate_synthetic_set(tiny_set(), tiny_dataset.test, settings(vectorise=vectorise, epochs=3, **kw), CPU,
                                 seed=3, on_model=lambda k, net: nets.append((k, net)))
    return res, nets


@pytest.mark.parametrize("augmentation", [{}, {"dsa_strategy": "dc:crop_scale_rotate"}], ids=["dsa", "dc"])
def test_vectorised_training_equals_the_sequential_loop(tiny_dataset, tiny_model, augmentation):
    """Same initialisation, shuffles and augmentation draws (DSA's, or DC's own) per network: the K
    networks trained under vmap end where the sequential loop leaves them, up to float rounding."""
    seq, seq_nets = _trained(False, tiny_dataset, **augmentation)
    vec, vec_nets = _trained(True, tiny_dataset, **augmentation)
    assert vec.vectorised and not seq.vectorised
    assert [k for k, _ in vec_nets] == [0, 1] == [k for k, _ in seq_nets]
    for (_, a), (_, b) in zip(seq_nets, vec_nets):
        for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
            assert torch.allclose(pa, pb, atol=1e-5, rtol=1e-4), name
        assert not torch.equal(next(a.parameters()), next(seq_nets[0][1].parameters())) or a is seq_nets[0][1]
    assert vec.accuracies == seq.accuracies and vec.train_accuracies == seq.train_accuracies


def test_vectorised_networks_differ_from_each_other(tiny_dataset, tiny_model):
    _, nets = _trained(True, tiny_dataset)
    (_, a), (_, b) = nets
    assert not torch.allclose(next(a.parameters()), next(b.parameters()))


def test_vectorised_soft_labels_and_learned_lr_match_sequential(tiny_dataset, tiny_model):
    soft = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    syn = SyntheticSet(torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(2)), soft, 0.02, {})
    out = [evaluate_synthetic_set(syn, tiny_dataset.test, settings(vectorise=v, epochs=2), CPU) for v in (False, True)]
    assert out[0].lr == out[1].lr == 0.02 and out[1].vectorised
    assert out[0].accuracies == out[1].accuracies


def test_batchnorm_models_fall_back_to_the_sequential_loop(tiny_dataset):
    res = evaluate_synthetic_set(tiny_set(), tiny_dataset.test,
                                 EvalSettings(model="convnet_bn", num_eval=2, epochs=1, batch_size=6), CPU)
    assert not res.vectorised and len(res.accuracies) == 2
    with pytest.raises(ConfigError, match="BatchNorm"):
        from datadistill.models import build_model
        from datadistill.training import fit_networks_vectorised

        nets = [build_model("convnet_bn", 1, 3, (28, 28)) for _ in range(2)]
        fit_networks_vectorised(nets, torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 0]),
                                EvalSettings(epochs=1, lr=0.01).recipe, [make_generator(0), make_generator(1)])


@pytest.mark.parametrize("vectorise", [False, True])
def test_learning_curves_are_recorded_and_end_at_the_final_accuracy(tiny_dataset, tiny_model, vectorise):
    res = evaluate_synthetic_set(tiny_set(), tiny_dataset.test, settings(vectorise=vectorise, epochs=5, curve_every=2),
                                 CPU, seed=1)
    assert len(res.curves) == 2
    for k, c in enumerate(res.curves):
        assert c["epochs"] == [2, 4, 5]
        assert len(c["train_accuracy"]) == len(c["test_accuracy"]) == len(c["seconds"]) == 3
        assert c["seconds"] == sorted(c["seconds"])
        assert c["test_accuracy"][-1] == res.accuracies[k] and c["train_accuracy"][-1] == res.train_accuracies[k]
    # recording curves must not change training
    plain = evaluate_synthetic_set(tiny_set(), tiny_dataset.test, settings(vectorise=vectorise, epochs=5), CPU, seed=1)
    assert plain.accuracies == res.accuracies and plain.curves == []


def test_as_dict_reports_train_accuracy_summary_and_lr(tiny_dataset, tiny_model):
    d = evaluate_synthetic_set(tiny_set(), tiny_dataset.test, settings(lr=0.05), CPU).as_dict()
    assert d["lr"] == 0.05 and d["epochs"] == 2
    assert d["train_accuracy_mean"] == pytest.approx(sum(d["train_accuracies"]) / 2)
    assert d["train_seconds"] <= d["eval_seconds"]


def test_vectorise_default_is_on_for_cuda_only(tiny_dataset, tiny_model):
    """vectorise=None (the default) picks the sequential loop on the CPU, where vmap measured slower."""
    assert EvalSettings().vectorise is None
    res = evaluate_synthetic_set(tiny_set(), tiny_dataset.test, settings(epochs=1), CPU)
    assert not res.vectorised and len(res.accuracies) == 2
