"""Coreset selection: herding, k-center, select_coreset, the coreset methods and coreset inits."""

import pytest
import torch

from datadistill.api import distill
from datadistill.config import build_config
from datadistill.data import RealSet
from datadistill.errors import ConfigError
from datadistill.methods import INITS, METHODS
from datadistill.models import build_model
from datadistill.runtime import make_generator
from datadistill.selection import (SELECTIONS, FeatureSettings, class_features, herding_order, k_center_order,
                                   select_coreset)
from helpers import TINY_MODEL, make_distiller

CPU = torch.device("cpu")
POINTS = torch.tensor([[0.0], [10.0], [4.0], [6.0], [5.1]])


def _pairwise(x):
    return torch.cdist(x.double(), x.double())


def _is_training_image_of_class(img, images, labels, c):
    matches = (images == img).flatten(1).all(1)
    return bool(matches.any()) and set(labels[matches].tolist()) == {c}


# --------------------------------------------------------------------------- herding
def test_herding_hand_order_1d():
    # mean μ = 25.1 / 5 = 5.02. Step j picks the f minimising |μ − (s + f)/j|, i.e. f closest to j·μ − s:
    # j=1: target 5.02 → 5.1 (idx 4); j=2: target 10.04 − 5.1 = 4.94 → 4 (idx 2, |0.94| < |1.06|);
    # j=3: target 15.06 − 9.1 = 5.96 → 6 (idx 3); j=4: target 20.08 − 15.1 = 4.98 → 0 (4.98 < 5.02, idx 0);
    # j=5: 10 (idx 1).
    assert herding_order(POINTS, 5).tolist() == [4, 2, 3, 0, 1]
    assert herding_order(POINTS, 2).tolist() == [4, 2]  # a prefix of the full order


def test_herding_hand_order_2d():
    pts = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0], [3.0, 3.0]])
    # μ = (2.2, 2.2); step j picks the point nearest the target j·μ − s (s = sum of the picks so far).
    # j=1: target (2.2, 2.2): d² = 9.68, 8.08, 8.08, 6.48, 1.28 → idx 4.
    # j=2: target (1.4, 1.4): d² = 3.92, 8.72, 8.72, 13.52 → idx 0.
    # j=3: target (3.6, 3.6): d² = 13.12 (idx 1, 2), 0.32 (idx 3) → idx 3.
    # j=4: target (1.8, 1.8): idx 1 and 2 tie at 8.08 → lowest index 1; j=5: idx 2.
    assert herding_order(pts, 5).tolist() == [4, 0, 3, 1, 2]


def test_herding_ties_go_to_lowest_index_and_picks_are_distinct():
    pts = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    # μ = 0: all four at distance 1 → idx 0; then s = 1, target −1 → idx 1 (lowest of the −1s); then 2, 3
    assert herding_order(pts, 4).tolist() == [0, 1, 2, 3]
    dup = torch.tensor([[0.0], [0.0], [1.0]])
    assert sorted(herding_order(dup, 3).tolist()) == [0, 1, 2]


def test_herding_each_pick_is_the_greedy_best():
    """Each pick brings the mean of the picks closest to the full mean (given the earlier picks)."""
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    order = herding_order(x, 10)
    # the first pick alone is the point nearest the mean
    assert int(order[0]) == int(((x - x.mean(0)) ** 2).sum(1).argmin())
    # every prefix is at least as good as replacing its last pick by any other unselected point
    for j in range(1, 10):
        chosen = order[:j].tolist()
        best = (x.mean(0) - x[order[:j + 1]].mean(0)).norm()
        for i in set(range(40)) - set(order[:j + 1].tolist()):
            alt = (x.mean(0) - x[chosen + [i]].mean(0)).norm()
            assert best <= alt + 1e-6


# --------------------------------------------------------------------------- k-center
def test_k_center_hand_order_1d():
    # first: nearest the mean 5.02 → 5.1 (idx 4); farthest from {5.1}: 0 (5.1 away, vs 10 at 4.9) → idx 0;
    # farthest from {5.1, 0}: 10 (4.9) → idx 1; then 4 (1.1 from 5.1) before 6 (0.9) → idx 2, idx 3.
    assert k_center_order(POINTS, 5).tolist() == [4, 0, 1, 2, 3]


def test_k_center_one_pick_per_cluster():
    gen = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]])
    pts = torch.cat([c + torch.randn(5, 2, generator=gen) for c in centres])  # 4 clusters of 5, interleaved blocks
    order = k_center_order(pts, 4)
    assert sorted(i // 5 for i in order.tolist()) == [0, 1, 2, 3]
    # every point is then within a cluster's diameter of a pick
    radius = _pairwise(pts)[:, order].min(dim=1).values.max()
    assert radius < 10


def test_k_center_greedy_covering_property():
    """After k picks, every point lies within the covering radius r of a pick, and the picks are at
    least r apart (the greedy property that makes r ≤ 2·OPT)."""
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(2))
    d = _pairwise(x)
    prev_radius = float("inf")
    full = k_center_order(x, 8)
    for k in range(1, 9):
        order = k_center_order(x, k)
        assert order.tolist() == full[:k].tolist()  # greedy: prefixes agree
        assert len(set(order.tolist())) == k
        radius = d[:, order].min(dim=1).values.max().item()
        assert radius <= prev_radius + 1e-12
        prev_radius = radius
        if k > 1:
            picks = d[order][:, order] + torch.eye(k, dtype=torch.float64) * 1e9
            assert picks.min().item() >= radius - 1e-9
    # the first pick is the point nearest the mean
    assert int(full[0]) == int(((x - x.mean(0)) ** 2).sum(1).argmin())


def test_k_center_picks_are_distinct_with_duplicate_rows():
    dup = torch.tensor([[0.0], [0.0], [1.0]])
    assert sorted(k_center_order(dup, 3).tolist()) == [0, 1, 2]


@pytest.mark.parametrize("pick", [herding_order, k_center_order])
@pytest.mark.parametrize("k", [0, -1, 6])
def test_order_rejects_k_out_of_range(pick, k):
    with pytest.raises(ValueError):
        pick(POINTS, k)


@pytest.mark.parametrize("pick", [herding_order, k_center_order])
def test_order_dtype_and_single_row(pick):
    out = pick(POINTS, 3)
    assert out.dtype == torch.int64 and out.shape == (3,)
    assert pick(torch.tensor([[7.0, 1.0]]), 1).tolist() == [0]


# --------------------------------------------------------------------------- features and select_coreset
@pytest.fixture
def real(tiny_dataset, tiny_model):
    return RealSet(tiny_dataset.train, tiny_dataset.spec.num_classes)


def test_feature_settings_validation():
    FeatureSettings(epochs=0)
    for bad in ({"epochs": -1}, {"batch_size": 0}, {"lr": 0.0}):
        with pytest.raises(ConfigError):
            FeatureSettings(**bad)


def test_class_features_are_the_embeddings_per_class(real, tiny_dataset):
    torch.manual_seed(3)
    feats = class_features(real, tiny_dataset.spec, FeatureSettings(model=TINY_MODEL, epochs=0, batch_size=7),
                           CPU, torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    net = build_model(TINY_MODEL, 1, 3, (28, 28)).eval()
    with torch.no_grad():
        emb = net.embed(real.images)
    assert len(feats) == 3
    for c in range(3):
        assert feats[c].shape == (20, net.embedding_dim)
        assert torch.allclose(feats[c], emb[real.indices_by_class[c]], rtol=1e-5, atol=1e-6)


def test_class_features_training_changes_the_network(real, tiny_dataset):
    out = []
    for epochs in (0, 1):
        torch.manual_seed(3)
        out.append(class_features(real, tiny_dataset.spec, FeatureSettings(model=TINY_MODEL, epochs=epochs,
                                                                           batch_size=16),
                                  CPU, torch.Generator().manual_seed(0)))
    assert not torch.allclose(out[0][0], out[1][0])


@pytest.mark.parametrize("name", ["herding", "k_center"])
def test_select_coreset_applies_the_order_to_each_class(real, tiny_dataset, name):
    settings = FeatureSettings(model=TINY_MODEL, epochs=0)
    torch.manual_seed(5)
    feats = class_features(real, tiny_dataset.spec, settings, CPU, torch.Generator())
    pick = herding_order if name == "herding" else k_center_order
    expected = torch.cat([real.images[real.indices_by_class[c][pick(feats[c], 3)]] for c in range(3)])
    torch.manual_seed(5)
    got = select_coreset(name, real, tiny_dataset.spec, 3, CPU, torch.Generator().manual_seed(0), settings)
    assert got.shape == (9, 1, 28, 28)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", SELECTIONS)
def test_select_coreset_class_major_real_images(real, tiny_dataset, name):
    torch.manual_seed(0)
    got = select_coreset(name, real, tiny_dataset.spec, 4, CPU, torch.Generator().manual_seed(1),
                         FeatureSettings(model=TINY_MODEL, epochs=0))
    assert got.shape == (12, 1, 28, 28) and got.dtype == torch.float32
    for i, img in enumerate(got):
        assert _is_training_image_of_class(img, tiny_dataset.train.images, tiny_dataset.train.labels, i // 4)
    for c in range(3):  # distinct within a class
        block = got[4 * c:4 * c + 4].flatten(1)
        assert len({tuple(r.tolist()) for r in block}) == 4


def test_select_coreset_random_is_seeded_sampling(real, tiny_dataset):
    got = select_coreset("random", real, tiny_dataset.spec, 2, CPU, torch.Generator().manual_seed(7))
    expected = real.sample(2, torch.Generator().manual_seed(7)).flatten(0, 1)
    assert torch.equal(got, expected)


def test_select_coreset_rejects(real, tiny_dataset):
    with pytest.raises(ConfigError, match="nosuch"):
        select_coreset("nosuch", real, tiny_dataset.spec, 2, CPU, torch.Generator())
    for ipc in (0, 21):
        with pytest.raises(ConfigError, match="ipc"):
            select_coreset("herding", real, tiny_dataset.spec, ipc, CPU, torch.Generator(),
                           FeatureSettings(model=TINY_MODEL, epochs=0))


# --------------------------------------------------------------------------- coreset methods through the API
def _cfg(**kw):
    base = {"ipc": 2, "iterations": 5, "model": TINY_MODEL, "num_eval": 0, "device": "cpu", "seed": 3,
            "method_args": {"feature_epochs": 0}}
    return build_config(None, {**base, **kw})


@pytest.mark.parametrize("method", SELECTIONS)
def test_coreset_methods_select_real_images_without_iterating(tiny_dataset, tiny_model, method):
    assert METHODS.get(method).learns is False
    calls = []
    res = distill(_cfg(method=method, init="noise"), callbacks=[lambda it, m: calls.append(it)],
                  dataset=tiny_dataset)
    assert res.iterations_run == 0 and calls == [] and res.loss_history == []
    syn = res.synthetic_set
    assert torch.equal(syn.images, res.initial_set.images)
    assert syn.labels.tolist() == [0, 0, 1, 1, 2, 2]
    for img, c in zip(syn.images, syn.labels.tolist()):  # real images although init was "noise"
        assert _is_training_image_of_class(img, tiny_dataset.train.images, tiny_dataset.train.labels, c)
    m = res.metrics()
    assert m["iterations"] == 0 and m["iterations_requested"] == 5 and m["final_loss"] is None
    assert syn.metadata["iterations"] == 0


def test_herding_method_matches_herding_on_the_seeded_network(tiny_dataset, tiny_model):
    res = distill(_cfg(method="herding"), dataset=tiny_dataset)
    real = RealSet(tiny_dataset.train, 3)
    torch.manual_seed(3)  # the run's seed: the feature network is the first draw
    feats = class_features(real, tiny_dataset.spec, FeatureSettings(model=TINY_MODEL, epochs=0), CPU,
                           torch.Generator())
    expected = torch.cat([real.images[real.indices_by_class[c][herding_order(feats[c], 2)]] for c in range(3)])
    assert torch.equal(res.synthetic_set.images, expected)


def test_random_method_equals_real_init_sampling(tiny_dataset, tiny_model):
    res = distill(_cfg(method="random"), dataset=tiny_dataset)
    expected = RealSet(tiny_dataset.train, 3).sample(2, make_generator(3)).flatten(0, 1)
    assert torch.equal(res.synthetic_set.images, expected)


def test_coreset_method_step_raises(tiny_dataset, tiny_model):
    d = make_distiller("k_center", tiny_dataset, feature_epochs=0)
    d.initialise()
    with pytest.raises(RuntimeError, match="no optimisation step"):
        d.step()


def test_coreset_config_validation():
    cls = METHODS.get("herding").config_class
    with pytest.raises(ConfigError, match="feature_epochs"):
        cls(feature_epochs=-1)
    assert cls().feature_epochs == 1


# --------------------------------------------------------------------------- coreset inits of learning methods
def test_inits_listed():
    assert set(INITS) == {"real", "noise", "random", "herding", "k_center"}


@pytest.mark.parametrize("init", ["herding", "k_center"])
def test_dm_with_coreset_init(tiny_dataset, tiny_model, init):
    res = distill(_cfg(method="dm", init=init, iterations=1, batch_real=4, method_args={}), dataset=tiny_dataset)
    init_set = res.initial_set
    for img, c in zip(init_set.images, init_set.labels.tolist()):
        assert _is_training_image_of_class(img, tiny_dataset.train.images, tiny_dataset.train.labels, c)
    assert res.iterations_run == 1
    assert not torch.equal(res.synthetic_set.images, init_set.images)  # then it learns


def test_dm_herding_init_uses_herding_order(tiny_dataset, tiny_model, monkeypatch):
    """The distiller's herding init selects with herding (1 epoch of the distillation model)."""
    import datadistill.methods.base as base

    seen = []
    real_select = base.select_coreset

    def spy(name, real, spec, ipc, device, generator, features=None):
        seen.append((name, ipc, features))
        return real_select(name, real, spec, ipc, device, generator, features)

    monkeypatch.setattr(base, "select_coreset", spy)
    d = make_distiller("dm", tiny_dataset, ipc=2)
    d.initialise("herding")
    assert [(n, i) for n, i, _ in seen] == [("herding", 2)]
    assert seen[0][2].model == TINY_MODEL and seen[0][2].epochs == 1
    assert d.images.requires_grad and d.images.shape == (6, 1, 28, 28)
    d.initialise("random")
    assert len(seen) == 1  # random is plain sampling


def test_unknown_init_is_a_config_error(tiny_dataset, tiny_model):
    with pytest.raises(ConfigError, match="zeros"):
        distill(_cfg(method="dm", init="zeros", method_args={}), dataset=tiny_dataset)
