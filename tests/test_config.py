import dataclasses

import pytest

from datadistill.api import method_config
from datadistill.config import DistillConfig, build_config, load_yaml_config
from datadistill.errors import ConfigError
from datadistill.methods import DataDAMConfig, DMConfig


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_build_config_defaults():
    cfg = build_config()
    assert cfg == DistillConfig()
    assert cfg.dataset == "mnist" and cfg.method == "datadam" and cfg.ipc == 10
    assert cfg.init == "real" and cfg.model == "convnet" and cfg.method_args == {}
    assert cfg.resolved_eval_model == "convnet"
    assert build_config(None, {"ipc": None, "method": None}) == DistillConfig()  # None flags are ignored


def test_yaml_overrides_defaults_and_flags_override_yaml(tmp_path):
    path = write(tmp_path, "method: dm\nipc: 5\niterations: 20\nlr_img: 2.5\nmethod_args:\n  chunk: 4\n")
    cfg = build_config(path)
    assert (cfg.method, cfg.ipc, cfg.iterations, cfg.lr_img) == ("dm", 5, 20, 2.5)
    assert cfg.dataset == "mnist"  # untouched default
    assert cfg.method_args == {"chunk": 4}
    cfg = build_config(path, {"ipc": 3, "iterations": None, "method_args": {"batched": "false"}})
    assert cfg.ipc == 3 and cfg.iterations == 20 and cfg.method == "dm"
    assert cfg.method_args == {"chunk": 4, "batched": "false"}  # merged
    cfg = build_config(path, {"method_args": {"chunk": "8"}})
    assert cfg.method_args == {"chunk": "8"}


def test_string_flags_are_coerced():
    cfg = build_config(None, {"ipc": "3", "lr_img": "0.5", "eval_init": "yes", "seed": 7.0})
    assert cfg.ipc == 3 and isinstance(cfg.ipc, int)
    assert cfg.lr_img == 0.5 and isinstance(cfg.lr_img, float)
    assert cfg.eval_init is True
    assert cfg.seed == 7 and isinstance(cfg.seed, int)
    assert build_config(None, {"eval_init": "false"}).eval_init is False
    assert build_config(None, {"eval_model": "convnet_bn"}).resolved_eval_model == "convnet_bn"


def test_empty_yaml_file_gives_defaults(tmp_path):
    assert build_config(write(tmp_path, "")) == DistillConfig()


def test_unknown_yaml_key_names_the_key(tmp_path):
    path = write(tmp_path, "ipc: 2\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate") as info:
        build_config(path)
    assert "ipc" in str(info.value)  # lists the valid keys


@pytest.mark.parametrize("text, match", [
    ("[1, 2]\n", "mapping"),
    ("ipc: [1\n", "YAML"),
])
def test_bad_yaml_file(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_yaml_config(write(tmp_path, text))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("field, value", [
    ("iterations", "abc"),
    ("iterations", -5),
    ("iterations", 2.5),
    ("ipc", 0),
    ("ipc", -1),
    ("ipc", "two"),
    ("ipc", True),
    ("batch_real", 0),
    ("lr_img", 0),
    ("lr_img", "nan"),
    ("lr_img", "fast"),
    ("momentum_img", 1.0),
    ("momentum_img", -0.1),
    ("num_eval", -1),
    ("eval_epochs", 0),
    ("eval_lr", float("inf")),
    ("eval_batch", 0),
    ("eval_init", "maybe"),
    ("seed", "x"),
])
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        build_config(None, {field: value})


def test_invalid_value_in_yaml_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match="iterations"):
        build_config(write(tmp_path, "iterations: lots\n"))
    with pytest.raises(ConfigError, match="ipc"):
        build_config(write(tmp_path, "ipc: 0\n"))


def test_method_args_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="method_args"):
        build_config(write(tmp_path, "method_args: [1, 2]\n"))


def test_non_mapping_yaml_method_args_with_flag_method_args_is_a_config_error(tmp_path):
    """A YAML ``method_args`` that is not a mapping is bad input even when --method-arg flags are merged in."""
    path = write(tmp_path, "method_args: [1, 2]\n")
    with pytest.raises(ConfigError, match="method_args"):
        build_config(path, {"method_args": {"chunk": "4"}})


def test_empty_yaml_method_args_with_flag_method_args(tmp_path):
    """``method_args:`` left empty (null) in YAML plus --method-arg flags: either the flags are used, or
    a ConfigError says what is wrong (never a raw TypeError)."""
    path = write(tmp_path, "method: dm\nmethod_args:\n")
    try:
        cfg = build_config(path, {"method_args": {"chunk": "4"}})
    except ConfigError as exc:
        assert "method_args" in str(exc)
    else:
        assert cfg.method_args == {"chunk": "4"}


def test_as_dict_roundtrip():
    cfg = build_config(None, {"method": "dm", "method_args": {"chunk": 2}})
    assert DistillConfig(**cfg.as_dict()) == cfg


def test_method_config_coerces_datadam_args():
    cfg = build_config(None, {"method": "datadam", "lr_img": 2.0, "batch_real": 16,
                              "method_args": {"attention_power": "4", "batched": "false", "chunk": "3"}})
    mc = method_config(cfg)
    assert isinstance(mc, DataDAMConfig)
    assert mc.attention_power == 4.0 and isinstance(mc.attention_power, float)
    assert mc.batched is False
    assert mc.chunk == 3
    assert mc.lr_img == 2.0 and mc.batch_real == 16 and mc.momentum_img == 0.5


def test_method_config_dm():
    mc = method_config(build_config(None, {"method": "dm"}))
    assert isinstance(mc, DMConfig)
    assert mc == DMConfig() and mc.batch_real == 256  # main_DM.py's batch_real (#21)


def test_unknown_method_arg_lists_accepted_ones():
    cfg = build_config(None, {"method": "datadam", "method_args": {"attention_pow": "4"}})
    with pytest.raises(ConfigError, match="attention_pow") as info:
        method_config(cfg)
    msg = str(info.value)
    for name in (f.name for f in dataclasses.fields(DataDAMConfig)):
        assert name in msg


@pytest.mark.parametrize("args, match", [
    ({"attention_power": "strong"}, "attention_power"),
    ({"attention_power": "0"}, "attention_power"),
    ({"task_balance": "-1"}, "task_balance"),
    ({"chunk": "-1"}, "chunk"),
    ({"chunk": "2.5"}, "chunk"),
    ({"batched": "perhaps"}, "batched"),
    ({"chunk": 2.5}, "chunk"),  # a non-integral number (e.g. from YAML) is not silently truncated
])
def test_invalid_method_args(args, match):
    cfg = build_config(None, {"method": "datadam", "method_args": args})
    with pytest.raises(ConfigError, match=match):
        method_config(cfg)


def test_method_config_unknown_method():
    from datadistill.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="nosuch"):
        method_config(build_config(None, {"method": "nosuch"}))


def test_every_shipped_config_file_builds():
    """Each YAML under configs/ gives a valid DistillConfig and a valid method config."""
    from pathlib import Path

    from datadistill.data import check_dataset_name
    from datadistill.methods import METHODS
    from datadistill.models import MODELS

    root = Path(__file__).resolve().parent.parent / "configs"
    files = sorted(p for p in root.rglob("*.yaml") if p.parent.name not in ("experts", "compare", "continual", "federated", "nas"))  # own tests
    assert len(files) >= 10
    for path in files:
        cfg = build_config(path)
        check_dataset_name(cfg.dataset)  # raises for an unregistered dataset
        assert cfg.method in METHODS and cfg.model in MODELS, path
        method_config(cfg)


# --------------------------------------------------------------------------- method defaults and max_seconds
def test_shared_settings_default_to_unset():
    cfg = DistillConfig()
    assert cfg.lr_img is None and cfg.momentum_img is None and cfg.batch_real is None
    assert cfg.max_seconds is None


@pytest.mark.parametrize("method, lr_img, momentum_img, batch_real", [
    ("dm", 1.0, 0.5, 256), ("datadam", 1.0, 0.5, 64),
    ("dc", 0.1, 0.5, 256), ("dsa", 0.1, 0.5, 256), ("cafe", 0.1, 0.5, 256), ("cafe_dsa", 0.1, 0.5, 256),
])
def test_unset_shared_settings_take_the_methods_defaults(method, lr_img, momentum_img, batch_real):
    mc = method_config(build_config(None, {"method": method}))
    assert (mc.lr_img, mc.momentum_img, mc.batch_real) == (lr_img, momentum_img, batch_real)


@pytest.mark.parametrize("method", ["dm", "dc", "cafe"])
def test_set_shared_settings_override_the_methods_defaults(method):
    mc = method_config(build_config(None, {"method": method, "lr_img": "0.5", "momentum_img": 0.9,
                                           "batch_real": 8}))
    assert (mc.lr_img, mc.momentum_img, mc.batch_real) == (0.5, 0.9, 8)
    only_lr = method_config(build_config(None, {"method": method, "lr_img": 0.25}))
    default = method_config(build_config(None, {"method": method}))
    assert only_lr.lr_img == 0.25 and only_lr.batch_real == default.batch_real


def test_unset_settings_stay_unset_in_yaml(tmp_path):
    cfg = build_config(write(tmp_path, "method: dc\nlr_img: null\nmax_seconds: 30\n"))
    assert cfg.lr_img is None
    assert cfg.max_seconds == 30.0 and isinstance(cfg.max_seconds, float)
    assert method_config(cfg).lr_img == 0.1


@pytest.mark.parametrize("value", [0, -1, "soon", float("nan")])
def test_invalid_max_seconds(value):
    with pytest.raises(ConfigError, match="max_seconds"):
        build_config(None, {"max_seconds": value})


def test_max_seconds_from_string():
    assert build_config(None, {"max_seconds": "2.5"}).max_seconds == 2.5


def test_every_shipped_expert_config_builds():
    """Each YAML under configs/experts/ gives valid expert settings (datadistill experts --config)."""
    from pathlib import Path

    from datadistill.settings import settings_from
    from datadistill.config import read_yaml_mapping
    from datadistill.data import DATASETS
    from datadistill.trajectory import Curriculum, ExpertSettings

    files = sorted((Path(__file__).resolve().parent.parent / "configs" / "experts").glob("*.yaml"))
    assert files
    for path in files:
        values = read_yaml_mapping(path)
        assert values.pop("dataset") in DATASETS, path
        curriculum = values.pop("curriculum", None)
        if curriculum is not None:
            values["curriculum"] = settings_from(Curriculum, curriculum, what="curriculum")
        assert isinstance(settings_from(ExpertSettings, values, what="expert"), ExpertSettings)
