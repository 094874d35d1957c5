"""The model file: a trained evaluation network saved with its buffers, metadata and ZCA, read without pickle."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from datadistill import __version__
from datadistill.errors import ConfigError, ModelFileError, UnknownNameError
from datadistill.io import SyntheticSet, load_model, save_model, save_synthetic_set
from datadistill.io.model_file import FORMAT
from datadistill.io.tensor_file import write_tensor_file
from datadistill.models import build_model
from datadistill.preprocess import ZCA
from helpers import TINY_MODEL

SIZE = (8, 8)
KW = dict(channels=1, num_classes=3, image_size=SIZE, dataset="tiny", mean=(0.5,), std=(0.25,))


def inputs(n=5, seed=0):
    return torch.randn(n, 1, *SIZE, generator=torch.Generator().manual_seed(seed))


def build(name, seed=0):
    torch.manual_seed(seed)
    return build_model(name, 1, 3, SIZE)


def error(path) -> str:
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg, msg
    return msg


def test_roundtrip_convnet_same_logits_and_metadata(tmp_path):
    net = build("convnet_w32")
    path = save_model(net, tmp_path / "m.safetensors", model="convnet_w32", extra={"train_accuracy": 0.75, "seed": 3,
                      "synthetic_set": "s.safetensors"}, **KW)
    assert path == tmp_path / "m.safetensors" and os.listdir(tmp_path) == ["m.safetensors"]
    loaded, meta, zca = load_model(path)
    assert zca is None and not loaded.training
    assert type(loaded) is type(net)
    net.eval()
    with torch.no_grad():
        assert torch.equal(loaded(inputs()), net(inputs()))
    assert meta == {"format": FORMAT, "format_version": 1, "model": "convnet_w32", "channels": 1, "num_classes": 3,
                    "image_size": [8, 8], "dataset": "tiny", "mean": [0.5], "std": [0.25],
                    "package_version": __version__,
                    "extra": {"train_accuracy": 0.75, "seed": 3, "synthetic_set": "s.safetensors"}}


def test_batchnorm_running_stats_survive(tmp_path):
    net = build("convnet_bn", seed=1)
    net.train()
    with torch.no_grad():
        for i in range(3):
            net(inputs(8, seed=10 + i) * 3 + 1)
    bn = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and int(bn[0].num_batches_tracked) == 3 and not torch.allclose(bn[0].running_var, torch.ones_like(
        bn[0].running_var))
    path = save_model(net, tmp_path / "bn.safetensors", model="convnet_bn", **KW)
    loaded, _, _ = load_model(path)
    for (k, a), (k2, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b) and a.dtype == b.dtype, k
    net.eval()
    with torch.no_grad():
        assert torch.equal(loaded(inputs()), net(inputs()))  # eval mode uses the running stats


def test_tiny_registered_model(tmp_path, tiny_model):
    net = build_model(tiny_model, 1, 3, SIZE)
    loaded, meta, _ = load_model(save_model(net, tmp_path / "t.safetensors", model=tiny_model, **KW))
    assert meta["model"] == TINY_MODEL and meta["extra"] == {}
    with torch.no_grad():
        assert torch.equal(loaded(inputs()), net.eval()(inputs()))


def test_zca_roundtrip(tmp_path):
    zca = ZCA.fit(torch.randn(100, 1, *SIZE, generator=torch.Generator().manual_seed(7)), eps=0.05,
                  norm_mean=(0.5,), norm_std=(0.25,))
    path = save_model(build("convnet_w32"), tmp_path / "z.safetensors", model="convnet_w32", zca=zca, **KW)
    _, meta, loaded = load_model(path)
    assert meta["zca"] == {"eps": 0.05, "normalisation": {"mean": [0.5], "std": [0.25]}}
    assert loaded.eps == 0.05 and loaded.shape == (1, 8, 8)
    assert torch.equal(loaded.whiten(inputs()), zca.whiten(inputs()))
    for name in ("mean", "transform", "inverse"):
        assert torch.equal(getattr(loaded, name), getattr(zca, name)), name


def test_load_leaves_global_rng_alone(tmp_path):
    path = save_model(build("convnet_w32"), tmp_path / "m.safetensors", model="convnet_w32", **KW)
    state = torch.get_rng_state()
    load_model(path)
    assert torch.equal(torch.get_rng_state(), state)


def test_missing_random_truncated_foreign(tmp_path):
    assert "does not exist" in error(tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(bytes(range(256)) * 4)
    assert "not a readable safetensors" in error(junk)
    path = save_model(build("convnet_w32"), tmp_path / "m.safetensors", model="convnet_w32", **KW)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "not a readable safetensors" in error(path)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, str(foreign))
    assert "not a datadistill model" in error(foreign)
    syn = save_synthetic_set(SyntheticSet(inputs(3), torch.tensor([0, 1, 2]), metadata={
        "dataset": "tiny", "channels": 1, "image_size": [8, 8], "mean": [0.5], "std": [0.25], "method": "dm",
        "ipc": 1}), tmp_path / "syn.safetensors")
    assert "datadistill.synthetic_set" in error(syn)


def write_model_file(path, net, **meta_changes):
    meta = {"model": "convnet_w32", "channels": 1, "num_classes": 3, "image_size": [8, 8], "dataset": "tiny",
            "mean": [0.5], "std": [0.25], "extra": {}, **meta_changes}
    meta = {k: v for k, v in meta.items() if v is not None}
    return write_tensor_file(path, {f"state.{k}": v for k, v in net.state_dict().items()}, meta, FORMAT, 1)


def test_unknown_model_name(tmp_path):
    path = write_model_file(tmp_path / "u.safetensors", build("convnet_w32"), model="convnet_w99")
    msg = error(path)
    assert "convnet_w99" in msg and "convnet_w32" in msg  # lists the registered names


def test_model_registered_only_while_saving(tmp_path, tiny_model, monkeypatch):
    path = save_model(build_model(tiny_model, 1, 3, SIZE), tmp_path / "t.safetensors", model=tiny_model, **KW)
    from datadistill.models import MODELS
    monkeypatch.delitem(MODELS._items, TINY_MODEL)
    assert TINY_MODEL in error(path)


@pytest.mark.parametrize("change, needle", [
    ({"channels": None}, "'channels' is missing"),
    ({"image_size": [8]}, "image_size=[8]"),
    ({"num_classes": 0}, "num_classes=0"),
    ({"num_classes": 4}, "shape"),  # a classifier of 3 outputs in the file
    ({"model": "convnet_bn"}, "missing entry"),
    ({"model": 3}, "not a model name"),
    ({"zca": {"eps": 0.1}}, "zca_mean"),
    ({"zca": 0.1}, "expected"),
])
def test_bad_metadata(tmp_path, change, needle):
    path = write_model_file(tmp_path / "b.safetensors", build("convnet_w32"), **change)
    assert needle in error(path)


def test_mismatched_state_dict(tmp_path):
    net = build("convnet_w32")
    state = {f"state.{k}": v for k, v in net.state_dict().items()}
    meta = {"model": "convnet_w32", "channels": 1, "num_classes": 3, "image_size": [8, 8], "dataset": "tiny",
            "mean": [0.5], "std": [0.25]}
    path = tmp_path / "s.safetensors"
    first = next(iter(state))
    write_tensor_file(path, {k: v for k, v in state.items() if k != first}, meta, FORMAT, 1)
    assert f"missing entry {first[len('state.'):]!r}" in error(path)
    write_tensor_file(path, {**state, "state.extra.weight": torch.zeros(1)}, meta, FORMAT, 1)
    assert "unexpected entry 'extra.weight'" in error(path)
    write_tensor_file(path, {**state, first: torch.zeros(1)}, meta, FORMAT, 1)
    assert "shape" in error(path)
    write_tensor_file(path, {**state, first: state[first].double()}, meta, FORMAT, 1)
    assert "dtype" in error(path)
    write_tensor_file(path, {**state, "stray": torch.zeros(1)}, meta, FORMAT, 1)
    assert "unexpected tensor 'stray'" in error(path)
    zca = ZCA.fit(torch.randn(100, 1, *SIZE, generator=torch.Generator().manual_seed(7)))
    write_tensor_file(path, {**state, **zca.tensors()}, meta, FORMAT, 1)
    assert "metadata 'zca' is not set" in error(path)


def test_newer_format_version(tmp_path):
    path = tmp_path / "v.safetensors"
    save_file({}, str(path), metadata={"datadistill": json.dumps({"format": FORMAT, "format_version": 2})})
    assert "version" in error(path)


def test_save_refuses_what_could_not_be_loaded(tmp_path):
    net = build("convnet_w32")
    with pytest.raises(ConfigError, match="does not fit 'convnet_w32'"):
        save_model(net, tmp_path / "a.safetensors", model="convnet_w32", **{**KW, "num_classes": 4})
    with pytest.raises(ConfigError, match="does not fit 'convnet_bn'"):
        save_model(net, tmp_path / "a.safetensors", model="convnet_bn", **KW)
    with pytest.raises(UnknownNameError):
        save_model(net, tmp_path / "a.safetensors", model="nope", **KW)
    with pytest.raises(ConfigError, match="mean/std"):
        save_model(net, tmp_path / "a.safetensors", model="convnet_w32", **{**KW, "mean": (0.1, 0.2)})
    with pytest.raises(ConfigError, match="JSON"):
        save_model(net, tmp_path / "a.safetensors", model="convnet_w32", extra={"x": object()}, **KW)
    zca = ZCA.fit(torch.randn(20, 1, 4, 4))
    with pytest.raises(ConfigError, match="ZCA"):
        save_model(net, tmp_path / "a.safetensors", model="convnet_w32", zca=zca, **KW)
    assert os.listdir(tmp_path) == []


def test_failing_write_keeps_previous_file(tmp_path, monkeypatch):
    import datadistill.io.tensor_file as tensor_file_module

    path = save_model(build("convnet_w32"), tmp_path / "m.safetensors", model="convnet_w32", **KW)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tensor_file_module, "save_file", boom)
    with pytest.raises(OSError):
        save_model(build("convnet_w32", seed=5), path, model="convnet_w32", **KW)
    assert os.listdir(tmp_path) == ["m.safetensors"] and path.read_bytes() == before
