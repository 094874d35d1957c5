"""The shared settings plumbing (``datadistill.settings``): coercion, unknown keys, layers, checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from datadistill.errors import ConfigError
from datadistill.settings import (SettingsBase, coerce, coerce_values, deep_merge, did_you_mean, merge_layers,
                                  read_yaml_mapping, refuse_unknown, settings_from)


@dataclass
class Demo(SettingsBase):
    nested_fields: ClassVar[tuple[str, ...]] = ("args",)
    output_fields: ClassVar[tuple[str, ...]] = ("out",)

    epochs: int = 3
    lr: float | None = None
    name: str = "demo"
    flag: bool = False
    out: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    names: tuple[str, ...] = ("a", "b")

    def checks(self):
        return [("epochs", self.epochs >= 1, "an integer ≥ 1"),
                ("lr", self.lr is None or (self.lr > 0 and math.isfinite(self.lr)), "a finite number > 0")]


@dataclass(frozen=True)
class FrozenDemo(SettingsBase):
    settings_what: ClassVar[str] = "frozen"

    steps: int = 2
    seen: list[str] = field(default_factory=list, compare=False)

    def validate(self) -> None:
        if self.steps == 7:
            raise ConfigError("steps = 7 is unlucky")


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------- coerce
@pytest.mark.parametrize("value, typ, expected", [
    ("3", int, 3), (3.0, int, 3), ("0.5", float, 0.5), (2, float, 2.0), ("yes", bool, True), ("0", bool, False),
    (False, bool, False), (7, str, "7"), (None, int | None, None), ("4", int | None, 4), ("x", str | None, "x"),
    ({"a": 1}, dict[str, Any], {"a": 1}), ([1], tuple[int, ...], [1]),
])
def test_coerce_converts_scalars_and_leaves_the_rest(value, typ, expected):
    out = coerce("k", value, typ)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize("value, typ", [
    ("2.5", int), (2.5, int), (True, int), ("maybe", bool), (1, bool), ("fast", float), (True, float),
    (None, int), (None, str), (None, bool),
])
def test_coerce_refuses_naming_the_field_and_type(value, typ):
    with pytest.raises(ConfigError, match=rf"^k = .* is not a valid {typ.__name__}$"):
        coerce("k", value, typ)


def test_config_module_keeps_its_names():
    from datadistill import config

    assert config.coerce is coerce and config.read_yaml_mapping is read_yaml_mapping


# ---------------------------------------------------------------------------------- unknown keys
def test_unknown_key_lists_the_accepted_ones_and_the_closest():
    with pytest.raises(ConfigError) as info:
        refuse_unknown(["epochs", "epoch"], ["epochs", "lr", "batch"], what="demo", where=" in x.yaml")
    assert str(info.value) == ("unknown demo setting 'epoch' in x.yaml: expected one of epochs, lr, batch; "
                               "did you mean 'epochs'?")
    assert did_you_mean("zzz", ["epochs"]) == ""
    refuse_unknown(["lr"], ["lr"])  # nothing to refuse


def test_settings_from_any_dataclass():
    @dataclass
    class Plain:
        n: int = 1
        rate: float | None = None

    assert settings_from(Plain, {"n": "4", "rate": None}) == Plain(4, None)
    assert coerce_values(Plain, {"rate": "0.5"}) == {"rate": 0.5}
    with pytest.raises(ConfigError, match="unknown plain setting 'm'.*expected one of n, rate"):
        settings_from(Plain, {"m": 1}, what="plain")


# --------------------------------------------------------------------------------------- the base
def test_construction_coerces_checks_and_validates():
    d = Demo(epochs="4", lr="0.1", flag="true", name=5)
    assert (d.epochs, d.lr, d.flag, d.name) == (4, 0.1, True, "5")
    assert d.names == ("a", "b") and d.as_dict()["args"] == {}
    with pytest.raises(ConfigError, match=r"^epochs = 0 is invalid: expected an integer ≥ 1$"):
        Demo(epochs=0)
    with pytest.raises(ConfigError, match="lr = nan is invalid"):
        Demo(lr=float("nan"))
    with pytest.raises(ConfigError, match=r"^args must be a mapping, got \[1\]$"):
        Demo(args=[1])
    f = FrozenDemo(steps="3")
    assert f.steps == 3
    with pytest.raises(ConfigError, match="unlucky"):
        FrozenDemo(steps=7)


def test_output_folder_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="output path .*file exists and is not a folder"):
        Demo(out=str(tmp_path / "file"))
    assert Demo(out=str(tmp_path / "new")).out.endswith("new")  # not created
    assert not (tmp_path / "new").exists()


def test_build_layers_defaults_yaml_and_overrides(tmp_path):
    path = write(tmp_path, "epochs: 5\nlr: 0.5\nargs:\n  a: 1\n  deep: {x: 1, y: 2}\n")
    d = Demo.build(path, {"lr": None, "name": "over", "args": {"b": 2, "deep": {"y": 3}}})
    assert (d.epochs, d.lr, d.name) == (5, 0.5, "over")
    assert d.args == {"a": 1, "b": 2, "deep": {"x": 1, "y": 3}}
    assert Demo.build() == Demo()
    assert Demo.build({"epochs": 2}, {"epochs": 6}).epochs == 6
    assert Demo.build(Demo(epochs=9)).epochs == 9
    assert FrozenDemo.build(None, {"steps": "5"}) == FrozenDemo(steps=5)
    assert Demo.build(write(tmp_path, "args:\n", "null.yaml"), {"args": {"k": 1}}).args == {"k": 1}


def test_build_refuses_unknown_keys_naming_the_file(tmp_path):
    path = write(tmp_path, "epoch: 5\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'epoch' in .*s\.yaml: .*did you mean 'epochs'\?"):
        Demo.build(path)
    with pytest.raises(ConfigError, match="unknown frozen setting 'step'"):
        FrozenDemo.build(None, {"step": 1})
    with pytest.raises(ConfigError, match="unknown frozen setting 'x'"):
        FrozenDemo.from_mapping({"x": 1})
    assert FrozenDemo.from_mapping({"steps": None}).steps == 2


def test_build_refuses_a_nested_field_that_is_not_a_mapping(tmp_path):
    path = write(tmp_path, "args: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"args in .*s\.yaml must be a mapping of settings, got \[1, 2\]"):
        Demo.build(path, {"args": {"k": 1}})


def test_merge_helpers():
    base = {"a": {"x": 1}, "b": 1}
    assert deep_merge(base, {"a": {"y": 2}, "b": {"z": 3}}) == {"a": {"x": 1, "y": 2}, "b": {"z": 3}}
    assert base == {"a": {"x": 1}, "b": 1}  # unchanged
    assert merge_layers({"k": 1, "n": {"a": 1}}, None, {"k": None, "n": {"b": 2}}, nested=["n"]) == {
        "k": 1, "n": {"a": 1, "b": 2}}
    assert merge_layers({"k": 1, "n": {"a": 1}}, {"k": None, "n": None}, nested=["n"], keep_none=True) == {
        "k": None, "n": {"a": 1}}


@pytest.mark.parametrize("text, match", [("[1, 2]\n", "must hold a mapping"), ("a: [1\n", "not valid YAML")])
def test_read_yaml_mapping_refuses(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        read_yaml_mapping(write(tmp_path, text))
    with pytest.raises(ConfigError, match="does not exist"):
        read_yaml_mapping(tmp_path / "missing.yaml")
    assert read_yaml_mapping(write(tmp_path, "", "empty.yaml")) == {}


# ------------------------------------------------------------------------------ the ported classes
def test_distill_config_and_method_config_share_the_code_path():
    from datadistill.config import DistillConfig, build_config
    from datadistill.methods import DataDAMConfig
    from datadistill.trajectory import ExpertSettings

    assert issubclass(DistillConfig, SettingsBase)
    with pytest.raises(ConfigError, match=r"unknown setting 'ipcs': .*did you mean 'ipc'\?"):
        build_config(None, {"ipcs": 2})
    with pytest.raises(ConfigError, match=r"unknown setting 'chunks' for this method: .*did you mean 'chunk'\?"):
        DataDAMConfig.from_dict({"chunks": 2})
    with pytest.raises(ConfigError, match=r"unknown expert setting 'epoch': .*did you mean 'epochs'\?"):
        settings_from(ExpertSettings, {"epoch": 2}, what="expert")
    assert settings_from(ExpertSettings, {"epochs": "2", "zca_eps": None}, what="expert").epochs == 2
