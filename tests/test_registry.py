import pytest

from datadistill.errors import ConfigError, UnknownNameError
from datadistill.registry import Registry


def make_registry():
    reg = Registry("widget")
    reg.register("alpha")(1)
    reg.register("Beta")(2)
    return reg


def test_register_and_get_case_insensitive():
    reg = make_registry()
    assert reg.get("alpha") == 1
    assert reg.get("ALPHA") == 1
    assert reg.get("beta") == 2
    assert reg.names() == ["alpha", "beta"]
    assert list(reg) == ["alpha", "beta"]
    assert "Alpha" in reg and "gamma" not in reg and 3 not in reg


def test_register_returns_object_unchanged():
    reg = Registry("widget")

    class Thing:
        pass

    assert reg.register("thing")(Thing) is Thing


def test_duplicate_registration_raises_value_error():
    reg = make_registry()
    with pytest.raises(ValueError, match="alpha"):
        reg.register("alpha")(3)
    with pytest.raises(ValueError):
        reg.register("ALPHA")(3)  # names are case-insensitive
    assert reg.get("alpha") == 1  # the original stays


def test_unknown_name_lists_options_and_suggests_close_match():
    reg = make_registry()
    with pytest.raises(UnknownNameError) as info:
        reg.get("alpah")
    msg = str(info.value)
    assert "widget" in msg and "'alpah'" in msg
    assert "alpha, beta" in msg
    assert "did you mean 'alpha'" in msg


def test_unknown_name_without_close_match_has_no_hint():
    reg = make_registry()
    with pytest.raises(UnknownNameError) as info:
        reg.get("zzzzzzzz")
    assert "did you mean" not in str(info.value)
    assert "alpha, beta" in str(info.value)


def test_unknown_name_error_is_a_config_error():
    with pytest.raises(ConfigError):
        make_registry().get("nope")


def test_package_registries_reject_unknown_names():
    from datadistill.data import DATASETS
    from datadistill.methods import METHODS
    from datadistill.models import MODELS

    for reg, known in ((DATASETS, "mnist"), (METHODS, "dm"), (MODELS, "convnet")):
        assert known in reg.names()
        with pytest.raises(UnknownNameError, match=known):
            reg.get("no_such_thing")


def test_import_submodules_imports_every_module_of_a_package(tmp_path, monkeypatch):
    from datadistill.registry import Registry, import_submodules

    pkg = tmp_path / "plugpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from datadistill.registry import Registry\nTHINGS = Registry('thing')\n")
    for name in ("b_second", "a_first"):
        (pkg / f"{name}.py").write_text(f"from plugpkg import THINGS\nTHINGS.register('{name}')(object())\n")
    (pkg / "notes.txt").write_text("not a module")
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugpkg

    assert import_submodules("plugpkg", plugpkg.__path__) == ["a_first", "b_second"]
    assert isinstance(plugpkg.THINGS, Registry) and plugpkg.THINGS.names() == ["a_first", "b_second"]

