"""The files and report sections of ``continual`` and ``federated``, re-rendered from the results
committed under ``docs/`` (real runs): the CSV and markdown are byte-identical to the committed
files, the figures are PNGs, and each package's report section is the one ``datadistill report``
shows for its folder. Also the shared pieces they use: the seed schemes
(:mod:`datadistill.experiments.seeds`) and the synthetic-set metadata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from datadistill.errors import ConfigError
from datadistill.experiments import continual, federated
from datadistill.experiments.federated import settings as fed_settings
from datadistill.experiments.seeds import derived_rng, derived_seed, offset_seed
from datadistill.io.plots import png_bytes
from datadistill.io.report import REPORT_SECTIONS, render_report

REPO = Path(__file__).resolve().parents[1]
CONTINUAL = REPO / "docs" / "continual"
FEDERATED = [REPO / "docs" / "federated" / "mnist_iid_c20", REPO / "docs" / "federated" / "mnist_noniid2_c20"]
PNG = b"\x89PNG\r\n\x1a\n"


def test_continual_files_are_rendered_as_committed():
    report = json.loads((CONTINUAL / "continual.json").read_text(encoding="utf-8"))
    assert continual.render_csv(report) == (CONTINUAL / "continual.csv").read_text(encoding="utf-8")
    assert continual.render_markdown(report) == (CONTINUAL / "continual.md").read_text(encoding="utf-8")
    assert png_bytes(continual.continual_figure(report)).startswith(PNG)
    records = [r for m in report["methods"].values() for o in m["orders"] for r in o["steps"]]
    assert continual.last_step_verdict(continual.summarize(records)) == report["last_step"]


@pytest.mark.parametrize("folder", FEDERATED, ids=lambda p: p.name)
def test_federated_files_are_rendered_as_committed(folder):
    summary = json.loads((folder / "federated.json").read_text(encoding="utf-8"))
    assert federated.render_csv(summary["fedavg"]["rows"]) == (folder / "federated.csv").read_text(encoding="utf-8")
    assert federated.render_markdown(summary) == (folder / "federated.md").read_text(encoding="utf-8")
    assert federated.compare_runs(summary["fedd3"], summary["fedavg"]) == summary["comparison"]
    assert png_bytes(federated.comparison_figure(summary)).startswith(PNG)


@pytest.mark.parametrize("package, source", [(continual, CONTINUAL), (federated, FEDERATED[1])],
                         ids=["continual", "federated"])
def test_the_package_registers_its_report_section(package, source, tmp_path):
    name = package.__name__.rsplit(".", 1)[1]
    assert REPORT_SECTIONS[name] is package.SECTION
    for suffix in ("json", "md", "png"):
        shutil.copy(source / f"{name}.{suffix}", tmp_path / f"{name}.{suffix}")
    page = render_report(tmp_path)
    assert f"<h2>{package.SECTION.title}</h2>" in page and '<img src="data:image/png;base64,' in page
    (tmp_path / f"{name}.png").unlink()
    assert f"No {name}.png in this folder." in render_report(tmp_path)


def test_write_outputs_writes_the_files_atomically_and_refuses_a_file(tmp_path):
    report = json.loads((CONTINUAL / "continual.json").read_text(encoding="utf-8"))
    paths = continual.write_outputs(report, tmp_path / "out")
    assert [p.name for p in paths] == ["continual.json", "continual.csv", "continual.md", "continual.png"]
    assert json.loads(paths[0].read_text(encoding="utf-8")) == report
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)  # no temp files
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        continual.write_outputs(report, tmp_path / "file")


# ------------------------------------------------------------------------------------------- seeds


def test_the_seed_schemes_are_the_documented_formulas():
    assert offset_seed(7, 0) == 7 and offset_seed(7, 13) == 20
    assert continual.step_seed(7, 2, 1, 5) == offset_seed(7, 2 * 5 + 1)
    for keys in [(0, 3, 0), (3, 4, 2, 1), (12345, 5)]:
        word = int(np.random.SeedSequence(list(keys)).generate_state(1)[0])
        assert derived_seed(*keys) == word % 2**31 and derived_seed(*keys, bits=32) == word
    expected = np.random.default_rng(np.random.SeedSequence([4, 2, 7])).permutation(20)
    assert np.array_equal(derived_rng(4, 2, 7).permutation(20), expected)
    assert federated.local_seed(3, 2, 1) == derived_seed(3, fed_settings.LOCAL_STREAM, 2, 1)


def test_federated_streams_are_distinct():
    streams = [fed_settings.PARTITION_STREAM, fed_settings.SELECTION_STREAM, fed_settings.FEDD3_STREAM,
               fed_settings.LOCAL_STREAM, fed_settings.INIT_STREAM]
    assert sorted(streams) == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------------------------- shared helpers


def test_memory_metadata_has_the_dataset_keys_first():
    from datadistill.data import DatasetSpec

    spec = DatasetSpec(name="tiny", channels=1, image_size=(28, 28), class_names=("a", "b"), mean=(0.5,),
                       std=(0.25,), dsa_strategy="none")
    mem = continual.memory_set(spec, torch.zeros(2, 1, 28, 28), torch.tensor([0, 1]), "dm", 1)
    assert list(mem.metadata) == ["dataset", "channels", "image_size", "class_names", "num_classes", "mean", "std",
                                  "method", "ipc", "continual_memory"]
    assert mem.metadata["image_size"] == [28, 28] and mem.metadata["continual_memory"] is True
