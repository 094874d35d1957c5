import io
import math

import pytest
import torch

from datadistill.errors import ConfigError, NonFiniteLossError
from datadistill.methods import INITS, METHODS, MethodConfig
from helpers import make_distiller as _make_distiller

# the MTT family needs expert trajectories: tests/test_trajectory_*.py, test_experts.py and test_datm.py cover it
EXPERT_METHODS = {"mtt", "datm", "pad"}
ALL_METHODS = [m for m in METHODS.names() if m not in EXPERT_METHODS]
LEARNING_METHODS = [m for m in ALL_METHODS if METHODS.get(m).learns]  # the coreset methods select instead
MATCHING_METHODS = ["dm", "datadam"]  # those with class_loss
DSA_ON = "color_crop_cutout_scale_rotate"
# small loops for the bi-level methods so each step stays a fraction of a second
FAST_ARGS = {
    "dc": {"outer_loop": 2, "inner_loop": 1},
    "dsa": {"outer_loop": 2, "inner_loop": 1},
    "cafe": {"window": 2, "max_outer": 3, "max_inner": 2, "watch_batch": 4},
    "cafe_dsa": {"window": 2, "max_outer": 3, "max_inner": 2, "watch_batch": 4},
    "random": {"feature_epochs": 0}, "herding": {"feature_epochs": 0}, "k_center": {"feature_epochs": 0},
}


def make_distiller(method, data, **kw):
    return _make_distiller(method, data, **{**FAST_ARGS.get(method, {}), **kw})


@pytest.fixture
def data(tiny_dataset, tiny_model):
    return tiny_dataset


def test_registry_has_the_methods():
    assert {"dm", "datadam", "dc", "dsa", "cafe", "cafe_dsa", "random", "herding", "k_center",
            "el2n", "grand", "forgetting", "uncertainty"} <= set(ALL_METHODS)
    assert EXPERT_METHODS <= set(METHODS.names())
    for name in METHODS.names():
        cls = METHODS.get(name)
        assert cls.name == name
        assert issubclass(cls.config_class, MethodConfig)
    assert INITS == ("real", "noise", "random", "herding", "k_center")
    assert set(ALL_METHODS) - set(LEARNING_METHODS) == {"random", "herding", "k_center", "el2n", "grand",
                                                        "forgetting", "uncertainty"}


def _is_real_image_of_class(img, real_images, real_labels, c):
    matches = (real_images == img).flatten(1).all(1)
    return bool(matches.any()) and set(real_labels[matches].tolist()) == {c}


@pytest.mark.parametrize("method", LEARNING_METHODS)
def test_initialise_real(method, data):
    d = make_distiller(method, data, ipc=3)
    d.initialise("real")
    assert d.images.shape == (9, 1, 28, 28)
    assert d.images.requires_grad and d.images.is_leaf
    assert d.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert d.labels.dtype == torch.int64
    for img, c in zip(d.images.detach(), d.labels.tolist()):
        assert _is_real_image_of_class(img, data.train.images, data.train.labels, c)
    for c in range(3):  # distinct images within a class
        block = d.images.detach()[3 * c:3 * c + 3].flatten(1)
        assert len({tuple(r.tolist()) for r in block}) == 3
    # the synthetic images are a copy, not a view of the dataset
    with torch.no_grad():
        d.images.add_(1.0)
    assert not any(_is_real_image_of_class(img, data.train.images, data.train.labels, c)
                   for img, c in zip(d.images.detach(), d.labels.tolist()))


@pytest.mark.parametrize("method", LEARNING_METHODS)
def test_initialise_noise(method, data):
    d = make_distiller(method, data, ipc=2)
    d.initialise("noise")
    assert d.images.shape == (6, 1, 28, 28)
    assert d.images.dtype == torch.float32
    assert d.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert not any((data.train.images == img).flatten(1).all(1).any() for img in d.images.detach())
    assert d.iteration == 0


@pytest.mark.parametrize("method", LEARNING_METHODS)
def test_initialise_is_seeded_by_the_generator(method, data):
    a, b, c = (make_distiller(method, data, seed=s) for s in (1, 1, 2))
    for d in (a, b, c):
        d.initialise("real")
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


@pytest.mark.parametrize("method", LEARNING_METHODS)
def test_unknown_init_raises(method, data):
    d = make_distiller(method, data)
    with pytest.raises(ConfigError, match="zeros"):
        d.initialise("zeros")


@pytest.mark.parametrize("method", ALL_METHODS)
def test_step_before_initialise_raises(method, data):
    d = make_distiller(method, data)
    with pytest.raises(RuntimeError, match="initialise"):
        d.fit(1)


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("ipc", [0, 21, 100])
def test_ipc_out_of_range_raises(method, data, ipc):
    with pytest.raises(ConfigError, match="ipc"):
        make_distiller(method, data, ipc=ipc)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_ipc_equal_to_smallest_class_is_allowed(method, data):
    d = make_distiller(method, data, ipc=20)
    d.initialise("real")
    assert d.images.shape[0] == 60


@pytest.mark.parametrize("method", LEARNING_METHODS)
@pytest.mark.parametrize("dsa", ["none", DSA_ON])
def test_fit_changes_images_and_fires_callbacks(method, data, dsa):
    d = make_distiller(method, data, ipc=2, dsa=dsa)
    d.initialise("real")
    before = d.images.detach().clone()
    calls = []
    calls2 = []
    torch.manual_seed(0)
    out = d.fit(3, [lambda it, m: calls.append((it, dict(m))), lambda it, m: calls2.append(it)])
    assert out is d
    assert [it for it, _ in calls] == [1, 2, 3]
    assert calls2 == [1, 2, 3]
    assert d.iteration == 3
    for _, m in calls:
        assert "loss" in m and isinstance(m["loss"], float)
        assert math.isfinite(m["loss"]) and m["loss"] >= 0
    assert not torch.equal(before, d.images.detach())
    assert torch.isfinite(d.images).all()
    assert d.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert d.images.shape == before.shape


@pytest.mark.parametrize("method", ALL_METHODS)
def test_fit_zero_iterations_is_a_no_op(method, data):
    d = make_distiller(method, data)
    d.initialise("real")
    before = d.images.detach().clone()
    calls = []
    d.fit(0, [lambda it, m: calls.append(it)])
    assert calls == [] and torch.equal(before, d.images.detach())


@pytest.mark.parametrize("method", MATCHING_METHODS)
def test_loss_decreases_over_steps_on_fixed_data(method, data):
    """With a fixed network and no augmentation, gradient steps reduce the matching loss."""
    d = make_distiller(method, data, ipc=2, lr_img=0.1 if method == "dm" else 1.0, momentum_img=0.0)
    d.initialise("noise")
    torch.manual_seed(0)
    net = d.fresh_network()
    real = d.real.sample(4, torch.Generator().manual_seed(0))
    losses = []
    for _ in range(5):
        syn = d.images.view(3, 2, 1, 28, 28)
        loss = d.class_loss(net, real, syn, 32)
        losses.append(loss.item())
        d.optimiser.zero_grad()
        loss.backward()
        d.optimiser.step()
    assert losses[-1] < losses[0]


def _state_roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("method", LEARNING_METHODS)
@pytest.mark.parametrize("dsa", ["none", DSA_ON])
def test_checkpoint_resume_is_exact(method, data, dsa):
    d = make_distiller(method, data, ipc=2, dsa=dsa, seed=3)
    d.initialise("real")
    torch.manual_seed(1)
    d.fit(2)
    state = _state_roundtrip(d.state_dict())
    assert state["iteration"] == 2

    torch.manual_seed(123)
    d.fit(2)
    expected = d.images.detach().clone()

    resumed = make_distiller(method, data, ipc=2, dsa=dsa, seed=999)  # other seed: the state must restore it
    resumed.load_state_dict(state)
    assert resumed.iteration == 2
    torch.manual_seed(123)
    resumed.fit(2)
    assert resumed.iteration == 4
    assert torch.equal(resumed.images.detach(), expected)
    assert torch.equal(resumed.labels, d.labels)


@pytest.mark.parametrize("method", LEARNING_METHODS)
def test_checkpoint_resume_needs_optimiser_state(method, data):
    """Momentum is part of the state: dropping it changes the next step (so the test above can fail)."""
    d = make_distiller(method, data, ipc=2, seed=3, momentum_img=0.9)
    d.initialise("real")
    torch.manual_seed(1)
    d.fit(2)
    state = _state_roundtrip(d.state_dict())
    torch.manual_seed(5)
    d.fit(1)
    state["optimiser"] = {}
    resumed = make_distiller(method, data, ipc=2, seed=3, momentum_img=0.9)
    resumed.load_state_dict(state)
    torch.manual_seed(5)
    resumed.fit(1)
    assert not torch.equal(resumed.images.detach(), d.images.detach())


@pytest.mark.parametrize("method", LEARNING_METHODS)
def test_same_seeds_give_same_run(method, data):
    runs = []
    for _ in range(2):
        d = make_distiller(method, data, ipc=2, dsa=DSA_ON, seed=8)
        d.initialise("real")
        torch.manual_seed(8)
        losses = []
        d.fit(2, [lambda it, m: losses.append(m["loss"])])
        runs.append((d.images.detach().clone(), losses))
    assert torch.equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]


@pytest.mark.parametrize("method", LEARNING_METHODS)
def test_non_finite_loss_raises_and_keeps_images(method, data):
    d = make_distiller(method, data, ipc=2)
    d.initialise("real")
    torch.manual_seed(0)
    d.fit(1)
    with torch.no_grad():
        d.images[0, 0, 3, 3] = float("nan")
    before = d.images.detach().clone()
    calls = []
    with pytest.raises(NonFiniteLossError, match="nan"):
        d.fit(1, [lambda it, m: calls.append(it)])
    assert calls == []
    assert d.iteration == 1
    assert torch.equal(torch.isnan(d.images), torch.isnan(before))
    assert torch.equal(d.images.detach().nan_to_num(0.0), before.nan_to_num(0.0))


@pytest.mark.parametrize("method", LEARNING_METHODS)
def test_infinite_loss_raises(method, data):
    d = make_distiller(method, data, ipc=1)
    d.initialise("real")
    with torch.no_grad():
        d.images[1].fill_(float("inf"))
    before = d.images.detach().clone()
    with pytest.raises(NonFiniteLossError):
        d.step()
    assert torch.equal(d.images.detach()[0], before[0]) and torch.equal(d.images.detach()[2], before[2])


def test_non_finite_loss_error_is_floating_point_error():
    assert issubclass(NonFiniteLossError, FloatingPointError)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_config_validation(method):
    cls = METHODS.get(method).config_class
    with pytest.raises(ConfigError, match="lr_img"):
        cls(lr_img=0)
    with pytest.raises(ConfigError, match="momentum_img"):
        cls(momentum_img=1.0)
    with pytest.raises(ConfigError, match="batch_real"):
        cls(batch_real=0)
    with pytest.raises(ConfigError, match="nosuch"):
        cls.from_dict({"nosuch": 1})


@pytest.mark.parametrize("method", sorted(set(ALL_METHODS) - set(LEARNING_METHODS)))
def test_coreset_methods_ignore_init_and_cannot_step(method, data):
    d = make_distiller(method, data, ipc=2)
    torch.manual_seed(0)
    d.initialise("noise")  # ignored: the selection is the set
    for img, c in zip(d.images.detach(), d.labels.tolist()):
        assert _is_real_image_of_class(img, data.train.images, data.train.labels, c)
    with pytest.raises(RuntimeError):
        d.fit(1)
    assert d.iteration == 0
