"""Plugins: a method added from outside the package (entry points), the capabilities every method states
about itself, and the model table (one entry per model)."""

from __future__ import annotations

import json
import math
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import datadistill
import datadistill.methods as methods_pkg
from datadistill.api import distill
from datadistill.config import DistillConfig, build_config
from datadistill.errors import ConfigError, UnknownNameError
from datadistill.methods import (ENTRY_POINT_GROUP, INITS, METHODS, describe_inits, load_plugins,
                                 method_config)
from datadistill.models import (DEFAULT_EVAL_LR, MODELS, ModelEntry, build_model, default_eval_lr, list_models,
                                searchable_models)
from helpers import TINY_MODEL, write_fake_mnist

SRC = Path(datadistill.__file__).resolve().parents[1]
COMPARE_BASE = {"dataset": "mnist", "iterations": 2, "num_eval": 1, "eval_epochs": 1, "eval_model": "convnet_w32",
                "model": "convnet_w32", "device": "cpu", "batch_real": 4}

CORESETS = [n for n in METHODS.names() if not METHODS.get(n).learns]
LEARNERS = [n for n in METHODS.names() if METHODS.get(n).learns]

# A third-party package: one module, two methods. ``tiny_plugin`` registers itself with the decorator
# (the entry names the module); ``FirstImages`` is a coreset-like selection registered by the entry
# point (the entry names the class).
PLUGIN_MODULE = '''
"""A method package outside datadistill (test fixture)."""
from dataclasses import dataclass

import torch

from datadistill.methods import Distiller, MethodConfig, register_method
from datadistill.methods.coreset import CoresetConfig, CoresetMethod


@dataclass
class TinyConfig(MethodConfig):
    pull: float = 1.0


@register_method("tiny_plugin")
class TinyPlugin(Distiller):
    """Pull each class's synthetic mean towards a real batch's mean."""

    config_class = TinyConfig

    def step(self):
        real, syn = self.matching_batches(self.config.batch_real)
        loss = self.config.pull * ((real.mean(1) - syn.mean(1)) ** 2).sum()
        self.check_finite(loss, self.iteration)
        self.optimiser.zero_grad()
        loss.backward()
        self.optimiser.step()
        return {"loss": float(loss)}


class FirstImages(CoresetMethod):
    """The first ``ipc`` training images of every class."""

    config_class = CoresetConfig

    def initialise(self, init=""):
        idx = torch.cat([ids[: self.ipc] for ids in self.real.indices_by_class])
        self.images = self.real.take(idx).detach().clone().to(self.device).requires_grad_(True)
        self.labels = torch.arange(self.spec.num_classes, device=self.device).repeat_interleave(self.ipc)
        self.iteration = 0
        self._setup_optimiser()
'''


def write_plugin(root: Path, entries: str, module: str = PLUGIN_MODULE, dist: str = "ddplugin_tiny") -> Path:
    """A module and a ``<dist>-0.1.dist-info`` (METADATA + entry_points.txt) in ``root``: what pip
    would install, enough for importlib.metadata once ``root`` is on the path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{dist}.py").write_text(textwrap.dedent(module), encoding="utf-8")
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entries}\n", encoding="utf-8")
    return root


def cli(plugin_dir: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    """``datadistill ARGS`` in a fresh interpreter whose path holds the plugin folder."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "datadistill.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


# --------------------------------------------------------------------------- a method from another package
def test_a_method_from_another_package_in_list_distill_and_compare(tmp_path):
    plugin = write_plugin(tmp_path / "site", "tiny_plugin = ddplugin_tiny\ntiny_pick = ddplugin_tiny:FirstImages")
    data = tmp_path / "data"
    write_fake_mnist(data)

    listed = cli(plugin, "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "  tiny_plugin: lr_img=1.0, momentum_img=0.5, batch_real=64, pull=1.0" in listed.stdout
    assert "  tiny_pick: lr_img=1.0" in listed.stdout and "feature_epochs=1" in listed.stdout
    assert "dm:" in listed.stdout  # the package's own methods are still there
    assert "Warning" not in listed.stderr

    out = tmp_path / "run"
    run = cli(plugin, "distill", "--dataset", "mnist", "--data-root", data, "--method", "tiny_plugin", "--ipc", "1",
              "--iterations", "2", "--batch-real", "4", "--num-eval", "0", "--device", "cpu", "--quiet",
              "--method-arg", "pull=0.5", "--out", out, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "tiny_plugin" and metrics["iterations"] == 2
    assert len(metrics["loss_history"]) == 2 and all(math.isfinite(v) for _, v in metrics["loss_history"])
    assert (out / "synthetic.safetensors").is_file()

    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"out": str(tmp_path / "compare"), "base": {**COMPARE_BASE, "data_root": str(data)},
                                "methods": ["tiny_plugin", "tiny_pick"], "ipc": [1], "init": ["real", "noise"]}))
    compared = cli(plugin, "compare", "--config", grid, cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    rows = {r["cell"]: r for r in json.loads((tmp_path / "compare" / "results.json").read_text())}
    # the learning plugin gets one cell per init; the selection one cell, its init its own name, no iterations
    assert set(rows) == {"tiny_plugin_ipc1_real_seed0", "tiny_plugin_ipc1_noise_seed0", "tiny_pick_ipc1_tiny_pick_seed0"}
    assert all(r["status"] == "done" and r["accuracy_mean"] is not None for r in rows.values()), rows
    assert rows["tiny_pick_ipc1_tiny_pick_seed0"]["iterations"] == 0
    assert rows["tiny_plugin_ipc1_real_seed0"]["iterations"] == 2


def test_the_compare_grid_rejects_a_fixed_init_other_than_the_selection(tmp_path):
    plugin = write_plugin(tmp_path / "site", "tiny_pick = ddplugin_tiny:FirstImages")
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"out": str(tmp_path / "compare"), "base": COMPARE_BASE,
                                "methods": [{"method": "tiny_pick", "init": "real"}], "ipc": [1]}))
    result = cli(plugin, "compare", "--config", grid, "--no-run", cwd=tmp_path)
    assert result.returncode == 2
    assert "methods[0].init = 'real' is invalid: tiny_pick is a coreset method" in result.stderr


def test_a_broken_plugin_warns_and_is_left_out(tmp_path, monkeypatch):
    site = write_plugin(tmp_path / "site", "broken_method = ddplugin_broken", dist="ddplugin_broken",
                        module="raise ImportError('missing dependency')\n")
    monkeypatch.syspath_prepend(str(site))
    before = METHODS.names()
    with pytest.warns(RuntimeWarning, match="'broken_method'.*missing dependency"):
        assert "broken_method" not in load_plugins()
    assert METHODS.names() == before


def test_every_module_of_the_methods_package_is_imported():
    names = [m.name for m in pkgutil.iter_modules(methods_pkg.__path__)]
    assert "dm" in names and "coreset" in names
    for name in names:
        assert f"datadistill.methods.{name}" in sys.modules
    for name in METHODS.names():  # every built-in method comes from a module of the package
        assert METHODS.get(name).__module__.split(".")[-1] in names


# --------------------------------------------------------------------------- capabilities
@pytest.mark.parametrize("method", CORESETS)
def test_coresets_resolve_to_their_selection_without_iterations(method):
    assert set(CORESETS) >= {"random", "herding", "k_center", "el2n", "grand", "forgetting", "uncertainty"}
    cls = METHODS.get(method)
    run = DistillConfig(method=method, init="real", iterations=50, max_seconds=10.0, ipc=3)
    resolved = cls.resolve_run_config(run)
    assert (resolved.init, resolved.iterations, resolved.max_seconds) == (method, 0, None)
    assert resolved.ipc == 3 and run.iterations == 50  # the rest kept, the given config untouched
    assert cls.run_overrides() == {"init": method, "iterations": 0, "max_seconds": None}
    assert cls.accepted_inits() == (method,) and not cls.needs_experts
    cls.check_init(resolved.init)
    with pytest.raises(ConfigError, match=f"init = 'real' is invalid for {method}"):
        cls.check_init("real")


@pytest.mark.parametrize("method", LEARNERS)
def test_learning_methods_run_the_config_as_given(method):
    cls = METHODS.get(method)
    run = DistillConfig(method=method, iterations=50, max_seconds=10.0)
    assert cls.run_overrides() == {} and cls.resolve_run_config(run) is run
    assert cls.accepted_inits()[: len(INITS)] == INITS
    for init in INITS:
        cls.check_init(init)


def test_datm_and_pad_accept_samples_predicted_correctly_and_others_do_not():
    for name in ("datm", "pad"):
        assert "samples_predicted_correctly" in METHODS.get(name).accepted_inits()
        METHODS.get(name).check_init("samples_predicted_correctly")
    for name in ("mtt", "dm", "datadam", "dc"):
        with pytest.raises(ConfigError, match="samples_predicted_correctly.*expected one of real, noise"):
            METHODS.get(name).check_init("samples_predicted_correctly")
    assert describe_inits() == ("real, noise, random, herding, k_center, or "
                                "samples_predicted_correctly (datm, pad)")


def test_the_mtt_family_needs_experts():
    assert {n for n in METHODS.names() if METHODS.get(n).needs_experts} == {"mtt", "datm", "pad"}


def test_config_from_run_takes_shared_settings_then_method_args():
    run = build_config(None, {"method": "dm", "lr_img": "0.5", "batch_real": 8, "method_args": {"layers": "all"}})
    cfg = METHODS.get("dm").config_from_run(run)
    assert (cfg.lr_img, cfg.batch_real, cfg.layers) == (0.5, 8, "all")
    assert cfg == method_config(run)
    default = METHODS.get("dm").config_from_run(build_config(None, {"method": "dm"}))
    assert default == METHODS.get("dm").config_class()  # unset run settings keep the method's defaults
    with pytest.raises(ConfigError, match="unknown setting 'nosuch'"):
        METHODS.get("dm").config_from_run(build_config(None, {"method": "dm", "method_args": {"nosuch": 1}}))
    with pytest.raises(UnknownNameError):
        method_config(build_config(None, {"method": "nosuch"}))


def test_a_coreset_run_records_its_selection_and_the_requested_budget(tiny_dataset, tiny_model):
    cfg = build_config(None, {"method": "random", "init": "noise", "ipc": 2, "iterations": 7, "max_seconds": 5,
                              "model": TINY_MODEL, "num_eval": 0, "device": "cpu"})
    res = distill(cfg, dataset=tiny_dataset)
    meta = res.synthetic_set.metadata
    assert res.iterations_run == 0 and meta["iterations"] == 0 and meta["init"] == "random"
    assert meta["config"]["iterations"] == 7 and meta["config"]["max_seconds"] == 5


# --------------------------------------------------------------------------- models: one entry each
def test_every_model_has_one_entry_with_a_builder_and_an_eval_lr():
    assert len(list_models()) >= 21
    for name in list_models():
        entry = MODELS.get(name)
        assert isinstance(entry, ModelEntry) and entry.name == name and callable(entry.builder)
        assert entry.eval_lr > 0 and math.isfinite(entry.eval_lr)
        assert default_eval_lr(name) == entry.eval_lr == DEFAULT_EVAL_LR  # the reference code: 0.01 for all
    with pytest.raises(UnknownNameError):
        default_eval_lr("nosuch")


def test_an_entry_builds_like_its_builder():
    torch.manual_seed(0)
    a = build_model("mlp", 1, 10, (28, 28), width=8, depth=1)
    torch.manual_seed(0)
    b = MODELS.get("mlp").builder(1, 10, (28, 28), width=8, depth=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_search_knobs_live_on_the_entries():
    from datadistill.experiments.nas import FAMILY_KEYS
    from datadistill.models.convnet import ACTIVATIONS, NORMS, POOLINGS

    knobs = searchable_models()
    assert knobs == {"convnet": {"depth": int, "width": int, "activation": ACTIVATIONS, "norm": NORMS,
                                 "pooling": POOLINGS},
                     "mlp": {"depth": int, "width": int}}
    assert FAMILY_KEYS == {"convnet": ("depth", "width", "activation", "norm", "pooling"), "mlp": ("depth", "width")}
    for key in ("activation", "norm", "pooling"):  # every listed value builds
        for value in knobs["convnet"][key]:
            build_model("convnet", 1, 3, (8, 8), width=4, depth=1, **{key: value})


def test_a_bare_builder_in_the_registry_still_builds_with_the_default_lr(monkeypatch):
    from datadistill.models import ConvNet

    monkeypatch.setitem(MODELS._items, "test_bare", lambda c, k, size, **kw: ConvNet(c, k, size, width=4, depth=1))
    assert build_model("test_bare", 1, 3, (8, 8)).classifier.out_features == 3
    assert default_eval_lr("test_bare") == DEFAULT_EVAL_LR
    assert "test_bare" not in searchable_models()
