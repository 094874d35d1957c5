"""``federated`` resumes through its run record (issue 19, item 5): finished FedD3 clients, server
networks and FedAvg rounds are reused on a rerun into the same folder with the same settings, and the
outputs equal an uninterrupted run's; other settings are refused, naming the keys that differ."""

from __future__ import annotations

import json

import pytest
import torch

from datadistill.errors import ConfigError
from datadistill.evaluation import protocol
from datadistill.experiments.federated import fedavg as fedavg_module
from datadistill.experiments.federated import fedd3 as fedd3_module
from datadistill.experiments.federated import run_federated
from datadistill.experiments.federated.resume import FederatedRecord
from datadistill.io import load_synthetic_set
from helpers import make_tiny_dataset, without_keys
from test_federated import tiny_config

SETTINGS = {"partition": "noniid:2", "rounds": 3, "client_fraction": 0.67, "server_num_eval": 2}


class Interrupted(Exception):
    """Stands for a kill."""


def without_seconds(value):
    return without_keys(value, lambda k: "seconds" in k)


def count(monkeypatch, module, name) -> list:
    calls = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("fed") / "whole"
    run_federated(tiny_config(**SETTINGS), out, dataset=make_tiny_dataset(per_class=10))
    return out


def kill_at(stage: str, text: str):
    def progress(s, message):
        if s == stage and text in message:
            raise Interrupted
    return progress


@pytest.mark.parametrize("stage,text,trained", [
    ("fedd3", "client 1:", {"clients": 1, "server": 2, "updates": 6}),      # after 2 of 3 clients
    ("fedavg", "round 2/3", {"clients": 0, "server": 0, "updates": 2}),     # after FedAvg round 2 of 3
])
def test_an_interrupted_run_resumes_and_writes_the_same_outputs(whole, tmp_path, monkeypatch, stage, text, trained):
    out = tmp_path / "out"
    data = make_tiny_dataset(per_class=10)
    with pytest.raises(Interrupted):
        run_federated(tiny_config(**SETTINGS), out, dataset=data, progress=kill_at(stage, text))
    assert not (out / "federated.json").exists() and (out / "federated_run.json").is_file()
    calls = {"clients": count(monkeypatch, fedd3_module, "fedd3_client"),
             "server": count(monkeypatch, protocol, "train_network"),
             "updates": count(monkeypatch, fedavg_module, "client_update")}
    stages = []
    run_federated(tiny_config(**SETTINGS), out, dataset=data, progress=lambda s, m: stages.append(m))
    assert {k: len(v) for k, v in calls.items()} == trained
    assert any(m.startswith("resuming") for m in stages)
    a, b = (json.loads((d / "federated.json").read_text()) for d in (whole, out))
    assert without_seconds(a) == without_seconds(b)
    x, y = (load_synthetic_set(d / "fedd3_synthetic.safetensors") for d in (whole, out))
    assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)
    # only the last round's global weights are kept
    assert sorted(p.name for p in (out / "federated_parts").glob("fedavg_round_*")) == ["fedavg_round_3.safetensors"]


def test_other_settings_are_refused_and_nothing_is_overwritten(whole, tmp_path):
    before = (whole / "federated_run.json").read_text()
    with pytest.raises(ConfigError) as info:
        run_federated(tiny_config(**{**SETTINGS, "rounds": 4, "workers": 2}), whole,
                      dataset=make_tiny_dataset(per_class=10))
    message = str(info.value)
    assert "rounds = 3 there, 4 here" in message and "workers" not in message and "federated_run.json" in message
    assert (whole / "federated_run.json").read_text() == before


def test_an_empty_upload_is_kept_and_reused(tmp_path):
    record = FederatedRecord(tmp_path, tiny_config(), "cpu", (30, 30))
    record.resume()
    empty = {"client": 0, "classes": [], "skipped_classes": [1], "distill_seconds": 0.0, "iterations": 0,
             "images": torch.empty(0, 1, 28, 28), "labels": torch.empty(0, dtype=torch.int64)}
    record.client_finished(0, empty)
    again = FederatedRecord(tmp_path, tiny_config(), "cpu", (30, 30))
    again.resume()
    got = again.clients()[0]
    assert got["images"].shape == (0, 1, 28, 28) and got["labels"].dtype == torch.int64
    assert {k: v for k, v in got.items() if k not in ("images", "labels")} == \
        {k: v for k, v in empty.items() if k not in ("images", "labels")}
