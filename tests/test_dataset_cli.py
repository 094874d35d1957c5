"""Datasets through the command line: distil then evaluate on every layout (metrics, class counts,
balanced accuracy, the set's mean/std and size carried to ``evaluate``), the default output folder,
clean failures (one error line, exit status 2, nothing written) for broken layouts and bad names,
``data info`` and the dataset-name checks."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import datadistill.api as api
import datadistill.api.runs as api_runs
from datadistill.cli import main
from datadistill.data import check_dataset_name, load_dataset, load_dataset_of
from datadistill.errors import ConfigError, UnknownNameError
from datadistill.io import load_synthetic_set
from broken_layouts import System, cifar_case, corrupt_length, mhist_case, svhn_case, tin_case
from helpers import assert_clean_failure
from layout_fixtures import (
    mhist_split_rows,
    numpy_stats,
    random_rgb,
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_mhist,
    write_pickle,
    write_svhn,
    write_tinyimagenet,
)

pytestmark = pytest.mark.usefixtures("isolated_cache_home")

FAST = ["--ipc", "1", "--iterations", "2", "--num-eval", "1", "--eval-epochs", "1", "--batch-real", "2", "--quiet"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def clean_failure(result, *needles):
    """One ``error:`` line naming every needle, exit status 2, no traceback."""
    line = assert_clean_failure(result, *needles)
    assert result.exit_code == 2, result.output
    return line


# =========================================================================== distil + evaluate
def _mhist32(root):
    w = write_mhist(root, size=32)
    return "mhist", {"train": [6, 3], "test": [3, 1]}, w


def _mhist48(root):
    w = write_mhist(root, size=48)
    return "mhist", {"train": [6, 3], "test": [3, 1]}, w


def _cifar10(root):
    w = write_cifar10(root, per_batch=4, n_test=10)
    return "cifar10", {"train": np.bincount(w["train_labels"], minlength=10).tolist(), "test": [1] * 10}, w


def _cifar100(root):
    w = write_cifar100(root, n_train=100, n_test=100)
    return "cifar100", {"train": [1] * 100, "test": [1] * 100}, w


def _svhn(root):
    root.mkdir(parents=True)
    w = write_svhn(root, n_train=20, n_test=10)
    return "svhn", {"train": [2] * 10, "test": [1] * 10}, w


def _tinyimagenet(root):
    w = write_tinyimagenet(root, per_class=2, val_per_class=1)
    return "tinyimagenet", {"train": [2, 2, 2], "test": [1, 1, 1]}, w


def _folder_flat(root):
    write_image_folder(root / "imgs", {"a": 10, "b": 10}, size=16)
    return f"imagefolder:{root / 'imgs'}", {"train": [9, 9], "test": [1, 1]}, None


def _folder_split(root):
    write_image_folder(root / "imgs" / "train", {"x": 3, "y": 3, "z": 3}, size=16, seed=3)
    write_image_folder(root / "imgs" / "test", {"x": 1, "y": 1, "z": 1}, size=16, seed=4)
    return f"imagefolder:{root / 'imgs'}", {"train": [3, 3, 3], "test": [1, 1, 1]}, None


E2E = [
    # id, builder, distill flags, evaluation model, expected (C, H, W)
    ("mhist-stream-on", _mhist32, ["--method", "dm", "--stream", "on"], "convnet", (3, 32, 32)),
    ("mhist-resized-48-to-32", _mhist48, ["--method", "datadam", "--image-size", "32"], "convnet", (3, 32, 32)),
    ("cifar10", _cifar10, ["--method", "dm"], "convnet", (3, 32, 32)),
    ("cifar100", _cifar100, ["--method", "dm", "--model", "convnet_w32", "--batch-real", "1"], "convnet_w32",
     (3, 32, 32)),
    ("svhn", _svhn, ["--method", "datadam"], "convnet", (3, 32, 32)),
    ("tinyimagenet-stream-on", _tinyimagenet, ["--method", "dm", "--stream", "on", "--num-workers", "0"], "convnet",
     (3, 64, 64)),
    ("imagefolder-flat", _folder_flat, ["--method", "dm"], "convnet", (3, 16, 16)),
    ("imagefolder-train-test", _folder_split, ["--method", "datadam", "--stream", "on"], "convnet", (3, 16, 16)),
]


@pytest.mark.parametrize("builder, flags, eval_model, shape", [e[1:] for e in E2E], ids=[e[0] for e in E2E])
def test_distill_then_evaluate_through_the_cli(tmp_path, monkeypatch, builder, flags, eval_model, shape):
    root = tmp_path / "data"
    dataset, counts, written = builder(root)
    out = tmp_path / "run"
    result = run("distill", "--dataset", dataset, "--data-root", root, "--out", out, *FAST, *flags)
    assert result.exit_code == 0, result.output + repr(result.exception)
    m = json.loads((out / "metrics.json").read_text())
    k = len(counts["train"])
    assert m["dataset"] == dataset and m["iterations"] == 2 and len(m["accuracies"]) == 1
    assert m["class_counts"] == counts
    assert 0 <= m["accuracy_mean"] <= 100
    present = [a for a in m["per_class_accuracy_mean"] if a is not None]
    assert len(m["per_class_accuracy_mean"]) == k
    assert m["balanced_accuracy_mean"] == pytest.approx(sum(present) / len(present))
    syn = load_synthetic_set(out / "synthetic.safetensors")
    assert tuple(syn.images.shape) == (k, *shape) and syn.labels.tolist() == list(range(k))
    meta = syn.metadata
    size = int(flags[flags.index("--image-size") + 1]) if "--image-size" in flags else None
    reference = load_dataset(dataset, root, image_size=size, stream="on", num_workers=0).spec  # cached stats
    assert meta["dataset"] == reference.name and meta["image_size"] == list(shape[1:])
    assert meta["mean"] == pytest.approx(list(reference.mean)) and meta["std"] == pytest.approx(list(reference.std))
    assert meta["class_names"] == list(reference.class_names)
    if dataset == "mhist":  # computed from the training images, at the set's size
        train_px = [written["pixels"][n] for n, _ in mhist_split_rows(written, "train")]
        native_mean, native_std = numpy_stats(train_px)
        if size is None:
            np.testing.assert_allclose(meta["mean"], native_mean, atol=1e-6)
            np.testing.assert_allclose(meta["std"], native_std, atol=1e-6)
        else:
            assert all(s < 0.95 * n for s, n in zip(meta["std"], native_std))  # resizing averages the noise

    seen = []

    def spy(metadata, data_root=None, **options):
        data = load_dataset_of(metadata, data_root, **options)
        seen.append(data)
        return data

    monkeypatch.setattr(api_runs, "load_dataset_of", spy)
    result = run("evaluate", out / "synthetic.safetensors", "--data-root", root, "--num-eval", "1",
                 "--eval-epochs", "1", "--models", eval_model)
    assert result.exit_code == 0, result.output + repr(result.exception)
    (data,) = seen
    assert data.test.image_shape == shape and data.spec.image_size == shape[1:]  # re-read at the set's size
    assert data.spec.mean == pytest.approx(tuple(meta["mean"])) and data.spec.std == pytest.approx(tuple(meta["std"]))
    assert len(data.test) == sum(counts["test"])
    balanced = [line for line in result.stdout.splitlines() if "balanced accuracy" in line]
    assert len(balanced) == (1 if k == 2 else 0), result.stdout


def test_evaluate_prints_balanced_accuracy_for_two_classes(tmp_path):
    root = tmp_path / "data"
    write_mhist(root, size=16)
    out = tmp_path / "run"
    result = run("distill", "--dataset", "mhist", "--data-root", root, "--out", out, *FAST, "--method", "dm",
                 "--num-eval", "0")
    assert result.exit_code == 0, result.output + repr(result.exception)
    args = ["evaluate", out / "synthetic.safetensors", "--data-root", root, "--num-eval", "2", "--eval-epochs", "1"]
    text, as_json = run(*args), run(*args, "--json")
    assert text.exit_code == 0 and as_json.exit_code == 0, text.output + as_json.output
    row = json.loads(as_json.stdout)["rows"][0]
    per = row["per_class_accuracies"]
    assert len(per) == 2 and all(len(r) == 2 for r in per)
    assert row["balanced_accuracies"] == pytest.approx([(a + b) / 2 for a, b in per])
    # the test set holds 3 HP and 1 SSA image: accuracy is the image-weighted mean, balanced the class mean
    assert row["accuracies"] == pytest.approx([(3 * a + 1 * b) / 4 for a, b in per])
    (line,) = [ln for ln in text.stdout.splitlines() if "balanced accuracy" in ln]
    assert f"balanced accuracy {row['balanced_accuracy_mean']:.2f} ± {row['balanced_accuracy_std']:.2f} %" in line
    assert f"HP {row['per_class_accuracy_mean'][0]:.2f}" in line and f"SSA {row['per_class_accuracy_mean'][1]:.2f}" in line


def test_imagefolder_default_out_folder_is_named_after_the_folder(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "pets", {"cat": 4, "dog": 4}, size=12)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["distill", "--dataset", f"imagefolder:{tmp_path / 'pets'}", "--method", "random",
                                       "--ipc", "1", "--num-eval", "0", "--num-workers", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "imagefolder_pets_random_ipc1" / "synthetic.safetensors").is_file()


# =========================================================================== clean failures
def _cli_mhist_label(root, marker):
    mhist_case("unknown label", root)
    return ["distill", "--dataset", "mhist"], ["annotations.csv", "line 6", "'TA'"]


def _cli_cifar_missing(root, marker):
    cifar_case("missing batch", root)
    return ["distill", "--dataset", "cifar10"], ["data_batch_3", "not found"]


def _cli_cifar_malicious(root, marker):
    w = write_cifar10(root, per_batch=2, n_test=2)
    write_pickle(w["folder"] / "data_batch_5", {"data": w["train"][:2], "labels": [0, 1],
                                                "filenames": System(f"touch {marker}")})
    return ["distill", "--dataset", "cifar10"], ["data_batch_5", "refusing"]


def _cli_cifar_damaged(root, marker):
    w = write_cifar10(root, per_batch=2, n_test=2)
    (w["folder"] / "test_batch").write_bytes(corrupt_length(w["folder"]))
    return ["distill", "--dataset", "cifar10"], ["test_batch"]


def _cli_svhn_shape(root, marker):
    svhn_case("wrong X shape", root)
    return ["data", "info", "svhn"], ["test_32x32.mat", "(32, 32, 3, N)"]


def _cli_svhn_empty(root, marker):
    svhn_case("empty file", root)
    return ["data", "info", "svhn"], ["test_32x32.mat"]


def _cli_tin_wnid(root, marker):
    tin_case("unknown wnid", root)
    return ["data", "info", "tinyimagenet"], ["val_annotations.txt", "line 3", "n00000042"]


def _tin_many_mixed(root, workers):
    """64 training images (enough for the DataLoader to decode with workers), one of them 48×48."""
    w = write_tinyimagenet(root, wnids=("n01", "n02"), per_class=32, val_per_class=1)
    bad = w["folder"] / "train" / "n02" / "images" / "n02_7.JPEG"
    Image.fromarray(random_rgb(np.random.default_rng(1), 48)).save(bad)
    return (["data", "info", "tinyimagenet", "--stream", "off", "--num-workers", str(workers)],
            ["n02_7.JPEG", "48×48", "--image-size"])


def _cli_tin_mixed_no_workers(root, marker):
    return _tin_many_mixed(root, 0)


def _cli_tin_mixed_workers(root, marker):
    return _tin_many_mixed(root, 2)


def _cli_folder_missing(root, marker):
    return ["distill", "--dataset", f"imagefolder:{root / 'nowhere'}"], ["nowhere", "does not exist"]


def _cli_zca_streamed(root, marker):
    write_mhist(root, size=16)
    return ["distill", "--dataset", "mhist", "--stream", "on", "--zca-eps", "0.1"], ["zca", "streamed", "mhist"]


def _cli_no_path(root, marker):
    return ["distill", "--dataset", "imagefolder"], ["imagefolder:/path/to/folder"]


def _cli_needless_path(root, marker):
    return ["distill", "--dataset", "mnist:/x"], ["mnist", "takes no path", "--data-root"]


def _cli_unknown(root, marker):
    return ["data", "info", "mhistt"], ["mhistt", "mhist", "tinyimagenet", "imagefolder"]


CLI_FAILURES = [
    ("mhist-unknown-label", _cli_mhist_label),
    ("cifar-missing-batch", _cli_cifar_missing),
    ("cifar-malicious-pickle", _cli_cifar_malicious),
    ("cifar-damaged-batch", _cli_cifar_damaged),
    ("svhn-wrong-shape", _cli_svhn_shape),
    ("svhn-empty-file", _cli_svhn_empty),
    ("tinyimagenet-unknown-wnid", _cli_tin_wnid),
    ("tinyimagenet-mixed-sizes-0-workers", _cli_tin_mixed_no_workers),
    ("tinyimagenet-mixed-sizes-2-workers", _cli_tin_mixed_workers),
    ("imagefolder-missing", _cli_folder_missing),
    ("zca-on-streamed", _cli_zca_streamed),
    ("imagefolder-without-path", _cli_no_path),
    ("mnist-with-path", _cli_needless_path),
    ("unknown-dataset", _cli_unknown),
]


@pytest.mark.parametrize("case", [c[1] for c in CLI_FAILURES], ids=[c[0] for c in CLI_FAILURES])
def test_cli_dataset_failures_are_clean(tmp_path, monkeypatch, case):
    root = tmp_path / "data"
    marker = tmp_path / "pwned"
    args, needles = case(root, marker)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = work / "out"
    if args[0] == "distill":
        args = [*args, "--data-root", root, "--out", out, *FAST]
    else:
        args = [*args, "--data-root", root]
    result = run(*args)
    clean_failure(result, *needles)
    assert os.listdir(work) == []  # no output folder, no runs/ folder
    assert result.stdout == ""
    assert not marker.exists()


# =========================================================================== data info and dataset names
def test_data_info_mhist_prints_counts_and_imbalance(tmp_path):
    root = tmp_path / "m"
    write_mhist(root, size=16)
    result = run("data", "info", "mhist", "--data-root", root, "--num-workers", "0")
    assert result.exit_code == 0, result.output + repr(result.exception)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("mhist: 9 train / 4 test images of 3×16×16, 2 classes, in memory")
    assert lines[1] == "train images per class: HP 6, SSA 3 (imbalance 2.00:1)"
    assert f"{9 * 3 * 16 * 16 * 4 / 2 ** 20:,.1f} MiB" in lines[2]
    d = json.loads(run("data", "info", "mhist", "--data-root", root, "--json", "--stream", "on").stdout)
    assert d["class_counts"] == {"train": [6, 3], "test": [3, 1]} and d["streamed"] is True
    assert d["image_size"] == [16, 16] and d["class_names"] == ["HP", "SSA"]
    resized = json.loads(run("data", "info", "mhist", "--data-root", root, "--json", "--image-size", "8").stdout)
    assert resized["image_size"] == [8, 8] and resized["train_bytes"] == 9 * 3 * 8 * 8 * 4


def test_imbalance_line_with_many_classes(tmp_path):
    write_cifar100(tmp_path, n_train=100, n_test=100)
    line = api.dataset_info("cifar100", str(tmp_path))["imbalance"]
    assert line.startswith("train images per class: fine00 1, fine01 1") and "(100 classes)" in line
    assert line.endswith("(imbalance 1.00:1)")


@pytest.mark.parametrize("name, error, needle", [
    ("imagefolder", ConfigError, "needs a folder"),
    ("imagefolder:", ConfigError, "needs a folder"),
    ("mnist:/x", ConfigError, "takes no path"),
    ("cifar10:/data/cifar", ConfigError, "takes no path"),
    ("nosuchset", UnknownNameError, "mhist"),
    ("imagefolderx:/x", UnknownNameError, "imagefolder"),
])
def test_check_dataset_name_errors(name, error, needle):
    with pytest.raises(error, match=needle):
        check_dataset_name(name)


@pytest.mark.parametrize("name", ["mhist", "MHIST", "imagefolder:/some/folder", "cifar100", "svhn", "tinyimagenet"])
def test_check_dataset_name_accepts(name):
    check_dataset_name(name)
