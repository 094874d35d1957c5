"""The training package: the SGD recipe (validation, lr schedule, flat user-facing keys of the
settings classes that hold one), the one training loop ``fit_network`` (equal, bit for bit, to the
loop every trainer used to write out; hooks; resuming), and that nothing imports the private names
of ``training`` or ``evaluation.protocol``."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

from datadistill.augment import DSA
from datadistill.errors import ConfigError
from datadistill.evaluation.baseline import BaselineSettings
from datadistill.evaluation.protocol import EVAL_RECIPE, EvalSettings
from datadistill.models import build_model
from datadistill.runtime import make_generator
from datadistill.training import (FitState, Hooks, TrainRecipe, fit_network, flat_type_hints, lr_at,
                                  recipe_settings_dict, train_epoch)
from helpers import TINY_MODEL

SRC = Path(__file__).resolve().parents[1] / "src" / "datadistill"


# --------------------------------------------------------------------------- the recipe
@pytest.mark.parametrize("field, value, expected", [
    ("epochs", -1, "integer ≥ 0"), ("epochs", 2.5, "integer ≥ 0"), ("epochs", True, "integer ≥ 0"),
    ("lr", 0.0, "> 0"), ("lr", -0.1, "> 0"), ("lr", float("nan"), "finite"), ("lr", float("inf"), "finite"),
    ("batch_size", 0, "integer ≥ 1"), ("momentum", 1.0, r"\[0, 1\)"), ("momentum", -0.1, r"\[0, 1\)"),
    ("weight_decay", -1e-4, "≥ 0"), ("schedule", "cosine", "step_half, constant"),
    ("augmentation", 3, "DSA strategy"), ("augmentation", "color_wobble", "wobble"),
])
def test_recipe_rejects_bad_values_naming_the_field(field, value, expected):
    kwargs = {"epochs": 2, "lr": 0.1, field: value}
    with pytest.raises(ConfigError, match=expected) as info:
        TrainRecipe(**kwargs)
    if field != "augmentation" or not isinstance(value, str):
        assert str(info.value).startswith(f"{field} = {value!r} is invalid: expected")


def test_recipe_accepts_unset_lr_and_augmentation_and_zero_epochs():
    r = TrainRecipe(epochs=0, lr=None, augmentation=None)
    assert not r.is_resolved
    done = r.resolved(lr=0.05, augmentation="none")
    assert done.is_resolved and (done.lr, done.augmentation) == (0.05, "none")
    assert done.resolved(lr=9.0, augmentation="color") == done  # set values are kept
    with pytest.raises(ConfigError, match="unset"):
        r.lr_at(0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        done.lr = 0.1


def test_step_half_schedule_on_hand_values():
    assert [lr_at(e, 4, 0.2) for e in range(4)] == [0.2, 0.2, 0.2 * 0.1, 0.2 * 0.1]
    assert [lr_at(e, 5, 1.0) for e in range(5)] == [1.0, 1.0, 0.1, 0.1, 0.1]  # drops at 5 // 2 = 2
    assert [lr_at(e, 3, 1.0) for e in range(3)] == [1.0, 0.1, 0.1]
    assert lr_at(0, 1, 0.3) == 0.3  # one epoch: 1 // 2 = 0, no drop
    r = TrainRecipe(epochs=300, lr=0.01)
    assert r.lr_at(149) == 0.01 and r.lr_at(150) == 0.01 * 0.1 and r.lr_at(299) == 0.01 * 0.1


def test_constant_schedule_keeps_the_lr():
    r = TrainRecipe(epochs=4, lr=0.2, schedule="constant")
    assert [r.lr_at(e) for e in range(4)] == [0.2] * 4


# --------------------------------------------------------------------------- settings holding a recipe
def test_flat_keys_build_the_recipe_and_read_back():
    s = EvalSettings(model="mlp", epochs=7, lr=0.03, batch_size=16, dsa_strategy="none")
    assert s.recipe == dataclasses.replace(EVAL_RECIPE, epochs=7, lr=0.03, batch_size=16, augmentation="none")
    flat = (s.epochs, s.lr, s.batch_size, s.momentum, s.weight_decay, s.dsa_strategy)
    assert flat == (7, 0.03, 16, 0.9, 5e-4, "none")
    assert EvalSettings().recipe is EVAL_RECIPE
    # flat keys apply on top of an explicit recipe, and through dataclasses.replace
    t = EvalSettings(recipe=TrainRecipe(epochs=3, lr=0.5), lr=0.25)
    assert (t.recipe.epochs, t.recipe.lr) == (3, 0.25)
    u = dataclasses.replace(s, epochs=9, model="convnet")
    assert (u.epochs, u.lr, u.model, u.dsa_strategy) == (9, 0.03, "convnet", "none")
    with pytest.raises(AttributeError):
        s.epochs = 3  # read-only: the recipe holds the value


def test_settings_dict_keeps_the_flat_keys_in_their_old_order():
    d = EvalSettings(model="mlp", epochs=7).as_dict()
    assert list(d) == ["model", "num_eval", "epochs", "lr", "batch_size", "momentum", "weight_decay", "dsa_strategy",
                       "use_learned_lr", "vectorise", "curve_every", "model_args"]
    assert d["epochs"] == 7 and d["dsa_strategy"] == EVAL_RECIPE.augmentation
    assert list(recipe_settings_dict(BaselineSettings())) == ["model", "epochs", "lr", "batch_size", "momentum",
                                                              "weight_decay", "dsa_strategy", "seed", "curve"]


def test_flat_type_hints_list_the_user_facing_keys():
    hints = flat_type_hints(BaselineSettings)
    assert set(hints) == {"model", "epochs", "lr", "batch_size", "momentum", "weight_decay", "dsa_strategy", "seed",
                          "curve"}
    assert hints["epochs"] is int


def test_every_settings_class_holds_a_recipe_and_no_copy_of_its_fields(tiny_model):
    from datadistill.experiments.federated import LocalTraining
    from datadistill.experiments.nas import RealProxySettings
    from datadistill.selection.coreset import FeatureSettings
    from datadistill.selection.difficulty import ScoreSettings
    from datadistill.trajectory.experts import ExpertSettings

    recipe_fields = {f.name for f in dataclasses.fields(TrainRecipe)} | {"dsa_strategy"}
    for cls in (EvalSettings, BaselineSettings, ExpertSettings, ScoreSettings, FeatureSettings, RealProxySettings,
                LocalTraining):
        assert isinstance(cls().recipe, TrainRecipe), cls
        assert not recipe_fields & {f.name for f in dataclasses.fields(cls)}, cls


def test_settings_keep_their_own_range_checks():
    with pytest.raises(ConfigError, match="epochs"):
        EvalSettings(epochs=0)  # the recipe accepts 0 epochs, the protocol does not
    with pytest.raises(ConfigError, match="lr = 0.0"):
        BaselineSettings(lr=0.0)


# --------------------------------------------------------------------------- fit_network
def _old_loop(net, images, targets, epochs, lr, batch_size, momentum, weight_decay, strategy, generator):
    """The loop the evaluation protocol wrote out before ``fit_network`` (lr ÷ 10 at E // 2)."""
    dsa = DSA(strategy)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = lr * 0.1 if epoch >= epochs // 2 and epochs // 2 > 0 else lr
        net.train()
        order = torch.randperm(len(targets), generator=generator).to(targets.device)
        train_epoch(net, opt, images, targets, order, batch_size, dsa, generator)


def _data(n=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=gen), torch.arange(n) % 3


def _net(seed=0):
    torch.manual_seed(seed)
    return build_model(TINY_MODEL, 1, 3, (28, 28))


def _params(net):
    return [p.detach().clone() for p in net.parameters()]


def test_fit_network_equals_the_old_loop_bit_for_bit(tiny_model):
    images, labels = _data()
    recipe = TrainRecipe(epochs=3, lr=0.05, batch_size=4, momentum=0.9, weight_decay=5e-4,
                         augmentation="color_crop_cutout_scale_rotate")
    old, g_old = _net(), make_generator(7)
    _old_loop(old, images, labels, 3, 0.05, 4, 0.9, 5e-4, "color_crop_cutout_scale_rotate", g_old)
    new, g_new = _net(), make_generator(7)
    state = fit_network(new, (images, labels), recipe, g_new)
    assert all(torch.equal(a, b) for a, b in zip(_params(old), _params(new)))
    assert torch.equal(g_old.get_state(), g_new.get_state())  # the same draws, in the same number
    assert state.epoch == 3 and state.net is new and state.seconds > 0
    # and two fits from the same seeds agree
    again = _net()
    fit_network(again, (images, labels), recipe, make_generator(7))
    assert all(torch.equal(a, b) for a, b in zip(_params(new), _params(again)))


def test_fit_network_takes_a_labelled_set_and_soft_labels(tiny_model):
    from datadistill.data import LabelledImages

    images, labels = _data()
    recipe = TrainRecipe(epochs=2, lr=0.05, batch_size=4)
    a, b = _net(), _net()
    fit_network(a, LabelledImages(images, labels), recipe, make_generator(1))
    fit_network(b, (images, labels), recipe, make_generator(1))
    assert all(torch.equal(x, y) for x, y in zip(_params(a), _params(b)))
    soft = torch.randn(10, 3, generator=torch.Generator().manual_seed(2))
    fit_network(_net(), (images, soft), recipe, make_generator(1))


def test_hooks_are_called_once_per_epoch_and_per_batch(tiny_model):
    images, labels = _data()
    seen = {"start": 0, "epochs": [], "batches": [], "lrs": []}

    def start(state: FitState) -> None:
        seen["start"] += 1
        assert state.epoch == 0

    def batch(state: FitState, idx: torch.Tensor, logits: torch.Tensor) -> None:
        seen["batches"].append((state.epoch, len(idx), tuple(logits.shape)))

    def end(state: FitState) -> None:
        seen["epochs"].append(state.epoch)
        seen["lrs"].append(state.optimiser.param_groups[0]["lr"])

    recipe = TrainRecipe(epochs=4, lr=0.2, batch_size=4)
    hooks = Hooks(on_start=start, on_batch=batch, on_epoch_end=end)
    fit_network(_net(), (images, labels), recipe, make_generator(0), hooks)
    assert seen["start"] == 1 and seen["epochs"] == [1, 2, 3, 4]
    assert seen["lrs"] == [0.2, 0.2, 0.2 * 0.1, 0.2 * 0.1]
    assert [e for e, _, _ in seen["batches"]] == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3  # 10 images in batches of 4
    assert [n for _, n, _ in seen["batches"]][:3] == [4, 4, 2] and seen["batches"][0][2] == (4, 3)


def test_hooks_do_not_change_training(tiny_model):
    images, labels = _data()
    recipe = TrainRecipe(epochs=2, lr=0.05, batch_size=4, augmentation="color_crop")
    plain, hooked = _net(), _net()
    fit_network(plain, (images, labels), recipe, make_generator(3))
    fit_network(hooked, (images, labels), recipe, make_generator(3),
                Hooks(on_batch=lambda s, i, z: None, on_epoch_end=lambda s: None))
    assert all(torch.equal(a, b) for a, b in zip(_params(plain), _params(hooked)))


def test_epoch_indices_train_on_a_subset(tiny_model):
    images, labels = _data()
    seen = []
    subset = torch.tensor([0, 2, 4, 6])
    fit_network(_net(), (images, labels), TrainRecipe(epochs=2, lr=0.05, batch_size=3), make_generator(0),
                Hooks(epoch_indices=lambda e: subset, on_batch=lambda s, idx, z: seen.extend(idx.tolist()),
                      on_epoch_end=lambda s: seen.append(("images", s.images_seen))))
    assert sorted(x for x in seen[:4]) == [0, 2, 4, 6] and seen[4] == ("images", 4) and len(seen) == 10


def test_resuming_with_start_epoch_equals_one_run(tiny_model):
    """Stop after 2 of 4 epochs, keep the parameters, momentum and generator, resume at epoch 2: the
    lr schedule continues and the result equals an uninterrupted run."""
    images, labels = _data()
    recipe = TrainRecipe(epochs=4, lr=0.1, batch_size=4, momentum=0.9, augmentation="color_crop_cutout")
    whole = _net()
    fit_network(whole, (images, labels), recipe, make_generator(5))

    first, gen = _net(), make_generator(5)
    saved = {}

    def stop_after_two(state: FitState) -> None:
        if state.epoch == 2:
            saved["net"] = {k: v.clone() for k, v in state.net.state_dict().items()}
            saved["momentum"] = [state.optimiser.state[p]["momentum_buffer"].clone() for p in state.net.parameters()]
            saved["rng"] = state.generator.get_state().clone()

    fit_network(first, (images, labels), recipe, gen, Hooks(on_epoch_end=stop_after_two))
    resumed, gen2 = _net(seed=99), make_generator(0)
    resumed.load_state_dict(saved["net"])
    gen2.set_state(saved["rng"])

    def restore(state: FitState) -> None:
        for p, buf in zip(state.net.parameters(), saved["momentum"]):
            state.optimiser.state[p]["momentum_buffer"] = buf.clone()

    state = fit_network(resumed, (images, labels), recipe, gen2, Hooks(on_start=restore), start_epoch=2)
    assert state.epoch == 4
    assert all(torch.equal(a, b) for a, b in zip(_params(whole), _params(resumed)))


def test_fit_network_refuses_an_unresolved_recipe(tiny_model):
    images, labels = _data()
    with pytest.raises(ConfigError, match="unresolved"):
        fit_network(_net(), (images, labels), TrainRecipe(epochs=1, lr=None), make_generator(0))
    with pytest.raises(ConfigError, match="unresolved"):
        fit_network(_net(), (images, labels), TrainRecipe(epochs=1, lr=0.1, augmentation=None), make_generator(0))


# --------------------------------------------------------------------------- private names
def _private_imports(path: Path) -> list[str]:
    inside_training = "training" in path.relative_to(SRC).parts[:1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
        if not private:
            continue
        from_training = node.module == "datadistill.training" or node.module.startswith("datadistill.training.")
        from_protocol = node.module == "datadistill.evaluation.protocol"
        if (from_training and not inside_training) or from_protocol:
            found.append(f"{path.relative_to(SRC)}: from {node.module} import {', '.join(private)}")
    return found


def test_no_module_imports_private_names_of_training_or_the_protocol():
    found = [line for path in sorted(SRC.rglob("*.py")) for line in _private_imports(path)]
    assert found == []
