"""Experiment trackers (``--log-to``, ``log_to``; datadistill.io.tracking, datadistill.api.tracking).

What each tracker wrote is read back with the tracker's own reader: TensorBoard's EventAccumulator,
MLflow's MlflowClient on the file store, and the W&B offline run file through wandb's protobuf
``Record`` (wandb 0.31 has no Python reader of its ``.wandb`` file left, so its record framing, the
LevelDB log format with wandb's CRC, is read by the few lines of ``wandb_records``). Each time: the
loss series has one point per iteration, the grid is there (pixel for pixel the run's PNG grids),
and so is the configuration."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from datadistill.api.tracking import RunTracking
from datadistill.cli import main
from datadistill.config import DistillConfig
from datadistill.io.tracking import CSVTracker, TensorBoardTracker, open_trackers
from helpers import assert_clean_failure
from trajectory_helpers import small_args

ITERATIONS, GRID_EVERY = 5, 2
GRID_STEPS = [0, 2, 4, 5]  # the initial set, every 2 iterations, the final set
FLAGS = ["--iterations", str(ITERATIONS), "--ipc", "1", "--batch-real", "4", "--model", "convnet_w32",
         "--num-eval", "2", "--eval-epochs", "1", "--quiet"]
ENV_DIRS = ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR")


@pytest.fixture(scope="module")
def tracker_env(tmp_path_factory):
    """wandb's own folders (config, cache) kept out of the user's home; MLflow's file store allowed."""
    home = tmp_path_factory.mktemp("tracker_home")
    with pytest.MonkeyPatch.context() as mp:
        for name in ENV_DIRS:
            mp.setenv(name, str(home / name.lower()))
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield


@pytest.fixture(scope="module")
def tracked(fake_mnist_root, tmp_path_factory, tracker_env):
    """One `datadistill distill` process logging to all four trackers: (out folder, stdout, stderr)."""
    out = tmp_path_factory.mktemp("tracked") / "run"
    args = [sys.executable, "-m", "datadistill", "distill", "--data-root", str(fake_mnist_root), "--out", str(out), *FLAGS,
            "--log-grid-every", str(GRID_EVERY)]
    for name in ("tensorboard", "mlflow", "wandb", "csv"):
        args += ["--log-to", name]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def metrics(tracked):
    return json.loads((tracked[0] / "metrics.json").read_text())


def png_pixels(data: bytes | Path) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data) if isinstance(data, bytes) else data).convert("RGB"))


def grids(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """The initial and final grids the run wrote (init.png, synthetic.png)."""
    return png_pixels(out / "init.png"), png_pixels(out / "synthetic.png")


# ------------------------------------------------------------------------------------------- the run


def test_the_run_is_unchanged_by_its_trackers(tracked, fake_mnist_root, tmp_path):
    out, stdout, stderr = tracked
    plain = tmp_path / "plain"
    result = CliRunner().invoke(main, ["distill", "--data-root", str(fake_mnist_root), "--out", str(plain), *FLAGS])
    assert result.exit_code == 0, result.output
    for name in ("synthetic.safetensors", "synthetic.png", "init.png", "config.yaml"):
        assert (out / name).read_bytes() == (plain / name).read_bytes(), name
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (out, plain))
    assert a["loss_history"] == b["loss_history"] and a["accuracies"] == b["accuracies"]
    assert "log_to" not in (out / "config.yaml").read_text()  # how the run was watched is not its settings
    # a clean terminal: the summary ends stdout, nothing from the trackers on stderr
    assert stdout.splitlines()[-1] == (f"logged to tensorboard ({out / 'tensorboard'}), mlflow ({out / 'mlruns'}), "
                                       f"wandb ({out / 'wandb'}), csv ({out / 'log.csv'})")
    assert stderr.strip() == "", stderr


# ------------------------------------------------------------------------------------------- TensorBoard


def test_tensorboard(tracked, metrics):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tracked[0]
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    loss = acc.Scalars("loss")
    assert [e.step for e in loss] == list(range(1, ITERATIONS + 1))
    assert [e.value for e in loss] == pytest.approx([v for _, v in metrics["loss_history"]], rel=1e-6)
    [mean] = acc.Scalars("eval/accuracy_mean")
    assert (mean.step, mean.value) == (ITERATIONS, pytest.approx(metrics["accuracy_mean"]))
    assert [e.value for e in (acc.Scalars("eval/accuracy_0")[0], acc.Scalars("eval/accuracy_1")[0])] == \
        pytest.approx(metrics["accuracies"])
    images = acc.Images("synthetic")
    assert [e.step for e in images] == GRID_STEPS
    init, final = grids(out)
    assert np.array_equal(png_pixels(images[0].encoded_image_string), init)
    assert np.array_equal(png_pixels(images[-1].encoded_image_string), final)
    [text] = acc.Tensors("config/text_summary")
    config = text.tensor_proto.string_val[0].decode()
    assert "method: datadam" in config and "attention_power:" in config and f"iterations: {ITERATIONS}" in config
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")  # the settings as hparams too


# ------------------------------------------------------------------------------------------- MLflow


def test_mlflow(tracked, metrics, tmp_path):
    from mlflow.tracking import MlflowClient

    out = tracked[0]
    client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("datadistill")
    [run] = client.search_runs([experiment.experiment_id])
    run_id = run.info.run_id
    assert run.info.status == "FINISHED" and run.info.run_name == out.name
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == list(range(1, ITERATIONS + 1))
    assert [m.value for m in history] == pytest.approx([v for _, v in metrics["loss_history"]], rel=1e-6)
    assert run.data.metrics["eval/accuracy_mean"] == pytest.approx(metrics["accuracy_mean"])
    params = run.data.params
    assert params["method"] == "datadam" and params["iterations"] == str(ITERATIONS) and params["ipc"] == "1"
    assert "method_args.attention_power" in params and params["log_grid_every"] == str(GRID_EVERY)
    files = {a.path for a in client.list_artifacts(run_id)}
    assert {"synthetic.safetensors", "synthetic.png", "init.png", "metrics.json", "config.yaml", "distill.log"} <= files
    pngs = {}
    for a in client.list_artifacts(run_id, "images"):
        match = re.fullmatch(r"images/synthetic\+step\+(\d+)\+.*(?<!compressed)\.png", a.path)
        if match:
            pngs[int(match.group(1))] = a.path
    assert sorted(pngs) == GRID_STEPS
    init, final = grids(out)
    for step, expected in ((0, init), (ITERATIONS, final)):
        local = client.download_artifacts(run_id, pngs[step], str(tmp_path))
        assert np.array_equal(png_pixels(Path(local)), expected)


# ------------------------------------------------------------------------------------------- W&B


def wandb_records(path: Path) -> list:
    """The records of a ``.wandb`` file as ``wandb.proto.wandb_internal_pb2.Record`` messages. The file:
    a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then LevelDB-log framed chunks in 32 KiB blocks
    (each: CRC-32 of its type byte and data, length, type 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:7] == b":W&B" + struct.pack("<HB", 0xBEE1, 0)
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # no room for a chunk header: the block's tail is padding
            pos += 32768 - pos % 32768
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        assert crc == zlib.crc32(chunk, zlib.crc32(bytes([kind]))), f"corrupt chunk at byte {pos}"
        pos += 7 + length
        pending += chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_offline(tracked, metrics):
    out = tracked[0]
    [run_dir] = (out / "wandb").glob("offline-run-*")
    [run_file] = run_dir.glob("run-*.wandb")
    records = wandb_records(run_file)
    kinds = [r.WhichOneof("record_type") for r in records]
    assert kinds[0] == "header" and "run" in kinds
    rows = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
            rows.append(row)
    losses = [(row["_step"], row["loss"]) for row in rows if "loss" in row]
    assert [s for s, _ in losses] == list(range(1, ITERATIONS + 1))
    assert [v for _, v in losses] == pytest.approx([v for _, v in metrics["loss_history"]], rel=1e-6)
    images = {row["_step"]: row["synthetic/path"] for row in rows if "synthetic/path" in row}
    assert sorted(images) == GRID_STEPS
    assert rows[-1]["eval/accuracy_mean"] == pytest.approx(metrics["accuracy_mean"])
    init, final = grids(out)
    assert np.array_equal(png_pixels(run_dir / "files" / images[0]), init)
    assert np.array_equal(png_pixels(run_dir / "files" / images[ITERATIONS]), final)
    config = {i.key: json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "config"
              for i in r.config.update}
    assert config["method"] == "datadam" and config["iterations"] == ITERATIONS
    assert "attention_power" in config["method_args"] and config["log_to"] == ["tensorboard", "mlflow", "wandb", "csv"]
    saved = {f.path for r in records if r.WhichOneof("record_type") == "files" for f in r.files.files}
    assert {"synthetic.safetensors", "metrics.json", "config.yaml"} <= saved
    assert (run_dir / "files" / "synthetic.safetensors").read_bytes() == (out / "synthetic.safetensors").read_bytes()
    [exit_record] = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit_code == 0


# ------------------------------------------------------------------------------------------- CSV


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def test_csv(tracked, metrics):
    columns, rows = read_csv(tracked[0] / "log.csv")
    assert columns[:2] == ["iteration", "loss"]
    assert {"eval/accuracy_mean", "eval/accuracy_std", "eval/accuracy_0", "eval/accuracy_1",
            "distill_seconds"} <= set(columns)
    assert [int(r["iteration"]) for r in rows] == list(range(1, ITERATIONS + 1))
    assert [float(r["loss"]) for r in rows] == [v for _, v in metrics["loss_history"]]  # repr: exact
    assert float(rows[-1]["eval/accuracy_mean"]) == metrics["accuracy_mean"] and rows[0]["eval/accuracy_mean"] == ""


def test_log_to_in_yaml(fake_mnist_root, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("log_to: csv\nlog_grid_every: 0\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["distill", "--data-root", str(fake_mnist_root), "--out", str(out), *FLAGS,
                                       "--num-eval", "0", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    columns, rows = read_csv(out / "log.csv")
    assert columns[:2] == ["iteration", "loss"] and len(rows) == ITERATIONS
    assert not (out / "tensorboard").exists() and not (out / "mlruns").exists()
    assert DistillConfig.build(cfg).log_to == ["csv"]


def test_mtt_logs_its_learned_lr(experts, tiny_dataset, tiny_model, tmp_path):
    from datadistill.api import distill

    config = DistillConfig(method="mtt", model=tiny_model, ipc=1, iterations=3, num_eval=0, device="cpu",
                           method_args={"experts": str(experts), **small_args("mtt")}, log_to=["csv"],
                           log_grid_every=0)
    with RunTracking(config, tmp_path) as tracking:
        result = distill(config, dataset=tiny_dataset, set_callbacks=tracking.set_callbacks)
        tracking.finish(result)
    columns, rows = read_csv(tmp_path / "log.csv")
    assert {"loss", "lr", "start_epoch", "skipped", "learned_lr"} <= set(columns) and len(rows) == 3
    assert float(rows[-1]["lr"]) == pytest.approx(result.synthetic_set.learned_lr)
    assert float(rows[-1]["learned_lr"]) == pytest.approx(result.synthetic_set.learned_lr)


# ------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("tracker", ["tensorboard", "mlflow", "wandb"])
def test_a_missing_package_is_one_line_before_the_run(tracker, fake_mnist_root, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, tracker, None)  # `import <tracker>` raises ImportError
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["distill", "--data-root", str(fake_mnist_root), "--out", str(out), *FLAGS,
                                       "--log-to", "csv", "--log-to", tracker])
    line = assert_clean_failure(result, f"--log-to {tracker}", f"pip install 'datadistill[{tracker}]'")
    assert line.startswith("error: ")
    assert not out.exists() or not any(out.iterdir())  # refused before any work


def test_an_unknown_tracker_is_refused(fake_mnist_root, tmp_path):
    result = CliRunner().invoke(main, ["distill", "--data-root", str(fake_mnist_root), "--out", str(tmp_path), "--log-to", "tb"])
    assert_clean_failure(result, "tb", "tensorboard")
    with pytest.raises(Exception, match="log_to"):
        DistillConfig(log_to=["csv", "comet"])


# ------------------------------------------------------------------------------------------- resuming


def test_a_resumed_csv_keeps_the_rows_up_to_where_it_goes_on(tmp_path):
    first = CSVTracker(tmp_path, "run", 0)
    for step in range(1, 6):
        first.log_metrics({"loss": float(step)}, step)
    first.close()  # killed after step 5, resumed from the checkpoint of step 3
    second = CSVTracker(tmp_path, "run", 3)
    for step in range(4, 7):
        second.log_metrics({"loss": 10.0 + step, "lr": 0.5}, step)
    second.close()
    columns, rows = read_csv(tmp_path / "log.csv")
    assert columns == ["iteration", "loss", "lr"]
    assert [(r["iteration"], r["loss"], r["lr"]) for r in rows] == [
        ("1", "1.0", ""), ("2", "2.0", ""), ("3", "3.0", ""), ("4", "14.0", "0.5"), ("5", "15.0", "0.5"),
        ("6", "16.0", "0.5")]
    CSVTracker(tmp_path, "run", 0).close()  # a fresh start empties it
    assert read_csv(tmp_path / "log.csv") == (["iteration"], [])


def test_a_resumed_tensorboard_run_drops_what_the_interrupted_session_wrote_past_the_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for start, steps, offset in ((0, range(1, 6), 0.0), (3, range(4, 7), 10.0)):
        tracker = TensorBoardTracker(tmp_path, "run", start)
        for step in steps:
            tracker.log_metrics({"loss": offset + step}, step)
        tracker.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 14.0), (5, 15.0),
                                                                (6, 16.0)]


def test_a_run_stopped_by_sigint_and_resumed_logs_every_iteration_once(fake_mnist_root, tiny_model, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from datadistill.api import run_distill
    from datadistill.errors import RunInterrupted

    config = DistillConfig(method="dm", ipc=2, iterations=6, batch_real=4, model=tiny_model, num_eval=0,
                           device="cpu", data_root=str(fake_mnist_root), checkpoint_every=1, log_to=["csv", "tensorboard"],
                           log_grid_every=2)

    def interrupt(it, metrics):
        if it == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the run ends step 4, writes its checkpoint and stops

    out = tmp_path / "out"
    with pytest.raises(RunInterrupted):
        run_distill(config, out, [interrupt])
    result = run_distill(config, out)
    columns, rows = read_csv(out / "log.csv")
    assert [(int(r["iteration"]), float(r["loss"])) for r in rows] == result.loss_history
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(i, pytest.approx(v)) for i, v in result.loss_history]
    assert [e.step for e in acc.Images("synthetic")] == [0, 2, 4, 6]


# ------------------------------------------------------------------------------------------- evaluate


def test_evaluate_logs_its_results(tracked, fake_mnist_root, tmp_path, tracker_env):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    file = tracked[0] / "synthetic.safetensors"
    out = tmp_path / "eval"
    result = CliRunner().invoke(main, ["evaluate", str(file), "--data-root", str(fake_mnist_root), "--models", "convnet_w32",
                                       "--num-eval", "2", "--eval-epochs", "1", "--out", str(out),
                                       "--log-to", "tensorboard", "--log-to", "csv"])
    assert result.exit_code == 0, result.output
    row = json.loads((out / "evaluation.json").read_text())["rows"][0]
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    [mean] = acc.Scalars("eval/convnet_w32/accuracy_mean")
    assert mean.value == pytest.approx(row["accuracy_mean"])
    [image] = acc.Images("synthetic")
    assert np.array_equal(png_pixels(image.encoded_image_string), png_pixels(tracked[0] / "synthetic.png"))
    [text] = acc.Tensors("config/text_summary")
    assert str(file) in text.tensor_proto.string_val[0].decode()
    columns, rows = read_csv(out / "log.csv")
    assert float(rows[0]["eval/convnet_w32/accuracy_1"]) == row["accuracies"][1]
    missing_out = CliRunner().invoke(main, ["evaluate", str(file), "--data-root", str(fake_mnist_root), "--log-to", "csv"])
    assert_clean_failure(missing_out, "--out")


def test_open_trackers_closes_those_opened_when_one_fails(tmp_path, monkeypatch):
    from datadistill.io import tracking

    closed = []
    monkeypatch.setattr(tracking.CSVTracker, "close", lambda self, failed=False: closed.append(failed))

    def refuse(*args):
        raise OSError("no room")

    monkeypatch.setitem(tracking.BACKENDS, "tensorboard", refuse)
    with pytest.raises(OSError, match="no room"):
        open_trackers(["csv", "tensorboard"], tmp_path)
    assert closed == [True]
