"""Result tables (``datadistill.experiments.tables``) and the bundle writer (``experiments.outputs``).

The expected texts were produced by the experiments' own renderers before they shared these
functions (compare's ``_csv``, continual's and federated's ``render_csv``, nas's ``_csv_value``), so
the shared code keeps their files byte-identical."""

from __future__ import annotations

import json

import pytest

from datadistill.errors import ConfigError
from datadistill.experiments.outputs import render_output, write_bundle
from datadistill.experiments.tables import (DASH, csv_value, exact_floats, fixed_floats, fmt, md_row, md_rule,
                                            md_table, mean_std, render_csv, render_json)

COMPARE_ROW = {"cell": "dm_ipc1", "label": "dm", "iterations": 12.5, "distill_seconds": 3.14159,
               "accuracy_mean": 51.123456, "accuracies": [50.0, 52.25], "status": "done", "error": None, "ipc": 1}
CONTINUAL_ROW = {"method": "dm", "order": 0, "step": 1, "classes": [3, 1], "seen_classes": [3, 1],
                 "memory_images": 20, "test_images": 100, "seed": 0, "iterations": 5, "accuracy_mean": 40.5,
                 "accuracy_std": 1.25, "accuracies": [39.25, 41.75], "condense_seconds": 1.23456,
                 "train_seconds": 0.5, "eval_seconds": 0.75}
FEDAVG_ROW = {"round": 1, "clients": [0, 2], "accuracy": 12.345678901, "bytes_uploaded": 100,
              "cumulative_bytes_uploaded": 100, "bytes_downloaded": 100, "cumulative_bytes_downloaded": 100,
              "round_seconds": 0.1, "cumulative_seconds": 0.30000000000000004}


def test_fixed_format_matches_compare_csv():
    columns = ("cell", "label", "ipc", "iterations", "distill_seconds", "accuracy_mean", "accuracies", "status",
               "error")
    assert render_csv([COMPARE_ROW], columns) == (
        "cell,label,ipc,iterations,distill_seconds,accuracy_mean,accuracies,status,error\n"
        "dm_ipc1,dm,1,12.5,3.14,51.1235,50.0000;52.2500,done,\n")


def test_fixed_format_matches_continual_csv():
    assert render_csv([CONTINUAL_ROW], list(CONTINUAL_ROW)) == (
        "method,order,step,classes,seen_classes,memory_images,test_images,seed,iterations,accuracy_mean,"
        "accuracy_std,accuracies,condense_seconds,train_seconds,eval_seconds\n"
        "dm,0,1,3;1,3;1,20,100,0,5,40.5000,1.2500,39.2500;41.7500,1.23,0.50,0.75\n")


def test_exact_format_matches_federated_and_nas_csv():
    assert render_csv([FEDAVG_ROW], list(FEDAVG_ROW), exact_floats) == (
        "round,clients,accuracy,bytes_uploaded,cumulative_bytes_uploaded,bytes_downloaded,"
        "cumulative_bytes_downloaded,round_seconds,cumulative_seconds\n"
        "1,0;2,12.345678901,100,100,100,100,0.1,0.30000000000000004\n")
    assert csv_value("x", [1.5, None, 2, 0.1 + 0.2], exact_floats) == "1.5;;2;0.30000000000000004"
    assert csv_value("x", None, exact_floats) == "" and csv_value("x", 3.0, exact_floats) == "3.0"


@pytest.mark.parametrize("key, value, text", [
    ("accuracy_mean", 1 / 3, "0.3333"), ("eval_seconds", 2.005, "2.00"), ("iterations", 7.25, "7.2"),
    ("iterations", 7, "7"), ("flag", True, "True"), ("error", None, ""), ("accuracies", (1.0, 2.5), "1.0000;2.5000"),
])
def test_csv_values(key, value, text):
    assert csv_value(key, value) == text
    if isinstance(value, float):
        assert fixed_floats(key, value) == text


def test_csv_quotes_commas_and_leaves_missing_keys_empty():
    assert render_csv([{"a": "x,y"}], ("a", "b")) == 'a,b\n"x,y",\n'


def test_json_is_indented_with_a_final_newline():
    assert render_json({"b": 1, "a": [1.5]}) == '{\n  "b": 1,\n  "a": [\n    1.5\n  ]\n}\n'


def test_markdown_pieces():
    assert md_row(["method", "IPC 1", "IPC 10"]) == "| method | IPC 1 | IPC 10 |"
    assert md_row(["", "FedD3 (one-shot)", "FedAvg"]) == "| | FedD3 (one-shot) | FedAvg |"
    assert md_rule("l", 3) == "|---|---|---|"
    assert md_rule("rrl") == "|---:|---:|---|"
    assert md_table(["a", "b"], [[1, "x"]], align="rl") == ["| a | b |", "|---:|---|", "| 1 | x |"]
    assert md_table(["a", "b"], []) == ["| a | b |", "|---|---|"]
    assert mean_std(51.234, 0.5) == "51.23 ± 0.50" and mean_std(1, 2, 1) == "1.0 ± 2.0"
    assert fmt(None) == DASH and fmt(0.12345, 3) == "0.123"


# ------------------------------------------------------------------------------------------- outputs
def test_bundle_renders_everything_then_writes_each_file(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1])
    called = []
    paths = write_bundle(tmp_path / "out", {
        "r.json": {"a": 1}, "r.csv": "a\n1\n", "r.md": "# t\n", "r.png": fig, "raw.bin": b"\x00\x01",
        "custom.txt": lambda p: (called.append(p), p.write_text("w"))})
    out = tmp_path / "out"
    assert [p.name for p in paths] == ["r.json", "r.csv", "r.md", "r.png", "raw.bin", "custom.txt"]
    assert json.loads((out / "r.json").read_text()) == {"a": 1}
    assert (out / "r.json").read_text() == render_json({"a": 1})
    assert (out / "r.csv").read_bytes() == b"a\n1\n" and (out / "raw.bin").read_bytes() == b"\x00\x01"
    assert (out / "r.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert called == [out / "custom.txt"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temporary files


def test_bundle_writes_nothing_when_rendering_fails(tmp_path):
    with pytest.raises(TypeError, match="cannot render"):
        write_bundle(tmp_path / "out", {"a.txt": "x", "b.json": object()})
    assert not (tmp_path / "out").exists()
    with pytest.raises(TypeError):
        render_output("table.csv", {"not": "json-named"})


def test_bundle_refuses_a_file_as_its_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="output path .*f exists and is not a folder"):
        write_bundle(tmp_path / "f", {"a.txt": "x"})
