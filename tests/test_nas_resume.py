"""``nas`` resumes through its run record (issue 19, item 5): an interrupted search rerun into the same
folder trains only the candidates not finished (both searches) and writes the results of an
uninterrupted search; a rerun with other settings is refused, naming the keys that differ."""

from __future__ import annotations

import json

import pytest

from datadistill.errors import ConfigError
from datadistill.experiments.nas import run as nas_run
from datadistill.experiments.nas import run_nas
from datadistill.io import save_synthetic_set
from helpers import make_tiny_dataset, without_keys
from test_nas import RUN_ARGS, TINY_SPACE, tiny_synthetic


class Interrupted(Exception):
    """Stands for a kill."""


def without_seconds(value):
    return without_keys(value, lambda k: "seconds" in k or "ratio" in k)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The synthetic file and the nas.json of an uninterrupted search."""
    folder = tmp_path_factory.mktemp("nas_resume")
    path = folder / "synthetic.safetensors"
    save_synthetic_set(tiny_synthetic(), path)
    run_nas(path, TINY_SPACE, folder / "whole", dataset=make_tiny_dataset(), workers=0, **RUN_ARGS)
    return path, json.loads((folder / "whole" / "nas.json").read_text())


def counted(monkeypatch):
    calls = {"synthetic": 0, "real": 0}
    for phase, name in (("synthetic", "_synthetic_task"), ("real", "_real_task")):
        real = getattr(nas_run, name)

        def wrapper(*args, _real=real, _phase=phase, **kwargs):
            calls[_phase] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(nas_run, name, wrapper)
    return calls


@pytest.mark.parametrize("stop_at,trained", [(("synthetic", 2), {"synthetic": 2, "real": 4}),
                                             (("real", 1), {"synthetic": 0, "real": 3})])
def test_an_interrupted_search_trains_only_the_rest_and_gives_the_same_results(whole, tmp_path, monkeypatch,
                                                                               stop_at, trained):
    path, expected = whole
    out = tmp_path / "out"

    def kill(phase, done, total, row):
        if (phase, done) == stop_at:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_nas(path, TINY_SPACE, out, dataset=make_tiny_dataset(), workers=0, progress=kill, **RUN_ARGS)
    assert not (out / "nas.json").exists()
    record = json.loads((out / "nas_run.json").read_text())
    assert len(record["units"]) == 8 - sum(trained.values())  # the finished trainings (of 2 × 4)
    calls = counted(monkeypatch)
    seen = []
    run_nas(path, TINY_SPACE, out, dataset=make_tiny_dataset(), workers=0, progress=lambda *a: seen.append(a[:3]),
            **RUN_ARGS)
    assert calls == trained
    assert sorted(seen) == sorted([("synthetic", k, 4) for k in (1, 2, 3, 4)] + [("real", k, 4) for k in (1, 2, 3, 4)])
    resumed = json.loads((out / "nas.json").read_text())
    assert without_seconds(resumed) == without_seconds(expected)
    # a rerun of the finished folder trains nothing and writes the same results again
    calls = counted(monkeypatch)
    run_nas(path, TINY_SPACE, out, dataset=make_tiny_dataset(), workers=0, **RUN_ARGS)
    assert calls == {"synthetic": 0, "real": 0}
    assert without_seconds(json.loads((out / "nas.json").read_text())) == without_seconds(resumed)


def test_other_settings_are_refused_naming_the_keys_and_workers_may_differ(whole, tmp_path, monkeypatch):
    path, _ = whole
    out = tmp_path / "out"

    def kill(phase, done, total, row):
        raise Interrupted

    with pytest.raises(Interrupted):
        run_nas(path, TINY_SPACE, out, dataset=make_tiny_dataset(), workers=0, progress=kill, **RUN_ARGS)
    before = (out / "nas_run.json").read_text()
    with pytest.raises(ConfigError) as info:
        run_nas(path, {**TINY_SPACE, "depth": [1]}, out, dataset=make_tiny_dataset(), workers=0,
                **{**RUN_ARGS, "epochs": 3, "seed": 4})
    message = str(info.value)
    assert "epochs = 2 there, 3 here" in message and "seed = 3 there, 4 here" in message
    assert "space.depth" in message and "nas_run.json" in message and "workers" not in message
    assert (out / "nas_run.json").read_text() == before and not (out / "nas.json").exists()
    calls = counted(monkeypatch)
    run_nas(path, TINY_SPACE, out, dataset=make_tiny_dataset(), workers=1, **RUN_ARGS)  # workers: resumable
    assert calls == {"synthetic": 3, "real": 4}
