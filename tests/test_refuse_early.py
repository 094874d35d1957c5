"""Issue 19 item 7: bad input is refused before any work, as one ``error:`` line and exit status 2.

The five inputs of the issue through the command line (``--out /proc/x``; synthetic sets with non-finite
pixels, labels outside the classes, float16 images; an image folder of one class), spies proving nothing
was read or trained first; then the output check of every command, ``fsutil.check_writable_folder`` /
``check_writable_file``, ``SyntheticSet.validate`` (each bad tensor) and the two-class rule of the loaders.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from click.testing import CliRunner

from datadistill.cli import main
from datadistill.data import DATASETS, load_dataset
from datadistill.data.base import check_class_count
from datadistill.data.torchvision_sets import MNIST_SPEC
from datadistill.errors import ConfigError, DatasetLayoutError, SyntheticSetFileError
from datadistill import fsutil
from datadistill.fsutil import check_output_folder, check_writable_file, check_writable_folder
from datadistill.io import SyntheticSet, load_synthetic_set, synthetic_set_metadata
from datadistill.io.synthetic_set import FORMAT, FORMAT_VERSION
from datadistill.io.tensor_file import write_tensor_file
from datadistill.methods.base import Distiller
from helpers import write_fake_mnist
from layout_fixtures import write_image_folder

pytestmark = pytest.mark.usefixtures("isolated_cache_home")

REPO = Path(__file__).resolve().parents[1]
PROC = Path("/proc/x")  # /proc exists on Linux and no file can be created in it, even by root
needs_proc = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
# tiny but complete settings: were the checks late, these would train networks
FAST = ["--iterations", "2", "--num-eval", "1", "--eval-epochs", "1", "--ipc", "1", "--batch-real", "4", "--quiet"]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A data root holding a fake MNIST (200 train / 100 test images, 10 classes)."""
    path = tmp_path_factory.mktemp("data")
    write_fake_mnist(path)
    return path


@pytest.fixture
def spy(monkeypatch) -> SimpleNamespace:
    """Counts the datasets read and the distillers built while a command runs."""
    record = SimpleNamespace(datasets=[], distillers=[])
    for name in ("mnist", "imagefolder"):
        loader = DATASETS._items[name]

        def counted(root, options, _loader=loader, _name=name):
            record.datasets.append(_name)
            return _loader(root, options)

        monkeypatch.setitem(DATASETS._items, name, counted)
    init = Distiller.__init__

    def counted_init(self, *args, **kwargs):
        record.distillers.append(type(self).__name__)
        init(self, *args, **kwargs)

    monkeypatch.setattr(Distiller, "__init__", counted_init)
    return record


def mnist_meta(**extra) -> dict:
    return synthetic_set_metadata(MNIST_SPEC, method="dm", ipc=1, **extra)


def write_set(path: Path, images: torch.Tensor, labels: torch.Tensor, meta: dict | None = None,
              learned_lr: torch.Tensor | None = None) -> Path:
    """A synthetic-set file holding exactly these tensors (``save_synthetic_set`` would cast the images)."""
    tensors = {"images": images, "labels": labels}
    if learned_lr is not None:
        tensors["learned_lr"] = learned_lr
    return write_tensor_file(path, tensors, meta if meta is not None else mnist_meta(), FORMAT, FORMAT_VERSION)


def good_tensors(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.arange(n) % 10


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result, *needles) -> str:
    """Exit status 2, no traceback, and stderr is exactly one ``error:`` line naming every needle."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- the five inputs of item 7
@needs_proc
def test_1_distill_into_an_uncreatable_folder_is_refused_before_any_work(root, spy):
    result = run("distill", "--data-root", root, "--out", PROC, *FAST)
    one_error_line(result, str(PROC), "cannot be created", "/proc is not writable")
    assert spy.datasets == [] and spy.distillers == []  # no data read, no distiller built
    assert not PROC.exists()


@needs_proc
def test_1_as_a_user_runs_it_exit_2_in_a_fraction_of_a_distillation(root, tmp_path):
    """``python -m datadistill distill --out /proc/x`` with the default settings (1000 iterations and
    3 × 300 evaluation epochs: minutes of work) ends at once with one error line and status 2."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "datadistill", "distill", "--data-root", str(root), "--out", str(PROC),
                           "--quiet"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    seconds = time.perf_counter() - start
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(PROC) in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert seconds < 60, seconds  # the start of Python and torch, no distillation
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("case, needles", [
    ("nan", ["non-finite", "image 3"]),
    ("labels", ["class 10", "0..9"]),
    ("float16", ["float16", "expected float32"]),
])
def test_2_3_4_bad_synthetic_set_files_are_refused_before_evaluation(root, tmp_path, spy, case, needles):
    images, labels = good_tensors()
    if case == "nan":
        images[3, 0, 5, 5] = float("nan")
        images[7, 0, 1, 2] = float("inf")
    elif case == "labels":
        labels[4] = 10
    else:
        images = images.half()
    path = write_set(tmp_path / f"{case}.safetensors", images, labels)
    result = run("evaluate", path, "--data-root", root, "--num-eval", "1", "--eval-epochs", "1")
    one_error_line(result, str(path), *needles)
    assert spy.datasets == []  # refused at loading, before the test set was read or a network trained


def test_5_an_image_folder_of_one_class_is_refused_before_distilling(tmp_path, spy):
    folder = tmp_path / "one_class"
    write_image_folder(folder, {"cat": 6})
    out = tmp_path / "out"
    result = run("distill", "--dataset", f"imagefolder:{folder}", "--out", out, *FAST)
    one_error_line(result, str(folder.resolve()), "1 class", "'cat'", "at least two classes")
    assert spy.distillers == []
    assert not out.exists()


# --------------------------------------------------------------------------- every command that writes
@pytest.fixture
def good_file(tmp_path) -> Path:
    return write_set(tmp_path / "good.safetensors", *good_tensors())


@needs_proc
@pytest.mark.parametrize("command", ["distill", "evaluate --out", "evaluate --save-models", "baseline", "experts",
                                     "scores", "import", "compare", "nas", "continual", "federated", "report"])
def test_every_command_that_writes_refuses_an_unwritable_output_first(root, tmp_path, good_file, spy, command):
    target = PROC / "out.safetensors" if command in ("scores", "import") else PROC
    data = ["--data-root", root]
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"base": {"iterations": 2, "num_eval": 1, "eval_epochs": 1, "data_root": str(root)},
                                    "methods": ["dm"], "ipc": [1], "init": ["real"], "seeds": [0]}))
    args = {
        "distill": ["distill", *data, "--out", target, *FAST],
        "evaluate --out": ["evaluate", good_file, *data, "--num-eval", "1", "--eval-epochs", "1", "--out", target],
        "evaluate --save-models": ["evaluate", good_file, *data, "--num-eval", "1", "--eval-epochs", "1",
                                   "--save-models", target],
        "baseline": ["baseline", *data, "--epochs", "1", "--out", target],
        "experts": ["experts", *data, "--num-experts", "1", "--epochs", "1", "--out", target],
        "scores": ["scores", *data, "--score", "el2n", "--num-networks", "1", "--epochs", "1", "--out", target],
        "import": ["import", tmp_path / "images_best.pt", "--dataset", "mnist", *data, "--out", target],
        "compare": ["compare", "--config", grid, "--out", target],
        "nas": ["nas", "--synthetic", good_file, "--space", REPO / "configs" / "nas" / "mlp_mnist.yaml", *data,
                "--workers", "0", "--out", target],
        "continual": ["continual", *data, "--memory-method", "random", "--steps", "2", "--orders", "1",
                      "--out", target],
        "federated": ["federated", *data, "--clients", "2", "--out", target],
        "report": ["report", tmp_path, "--out", PROC / "report.html"],
    }[command]
    one_error_line(run(*args), str(PROC))
    assert spy.datasets == [] and spy.distillers == []
    assert not PROC.exists()


def test_an_output_folder_below_a_file_is_refused(root, tmp_path, spy):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder\n")
    result = run("distill", "--data-root", root, "--out", blocker / "run", *FAST)
    one_error_line(result, str(blocker / "run"), f"{blocker} is a file")
    assert spy.datasets == []
    assert blocker.read_text() == "not a folder\n"


# --------------------------------------------------------------------------- check_writable_folder / _file
@needs_proc
def test_an_unwritable_parent_is_refused_naming_path_and_reason():
    with pytest.raises(ConfigError, match=f"^output folder {PROC / 'a'} cannot be created: /proc is not writable "
                                          "\\(it takes no new file\\)$"):
        check_writable_folder(PROC / "a", "output folder")


def test_a_folder_that_refuses_files_is_refused_and_nothing_is_left(tmp_path, monkeypatch):
    """A read-only folder (simulated: root may write anywhere) is refused; the probe leaves nothing."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fsutil.tempfile, "mkstemp", refuse)
    with pytest.raises(ConfigError, match=f"^run folder {tmp_path} is not writable \\(Permission denied\\)$"):
        check_writable_folder(tmp_path, "run folder")
    with pytest.raises(ConfigError, match="cannot be created: .* is not writable \\(Permission denied\\)"):
        check_output_folder(tmp_path / "new")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="not writable"):
            check_writable_folder(locked / "out")
    finally:
        locked.chmod(0o700)
    assert os.listdir(locked) == []


def test_an_existing_file_in_the_way_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=f"^output folder {blocker} exists and is not a folder$"):
        check_writable_folder(blocker)
    with pytest.raises(ConfigError, match=f"^output folder {blocker / 'a' / 'b'} cannot be created: {blocker} is a "
                                          "file, not a folder$"):
        check_writable_folder(blocker / "a" / "b")
    with pytest.raises(ConfigError, match=f"^scores file {tmp_path} is a folder; expected a file name$"):
        check_writable_file(tmp_path, "scores file")
    with pytest.raises(ConfigError, match=f"^scores file {blocker / 's.safetensors'} cannot be written: folder "
                                          f"{blocker} exists and is not a folder$"):
        check_writable_file(blocker / "s.safetensors", "scores file")
    assert os.listdir(tmp_path) == ["file"] and blocker.read_text() == "x"
    (tmp_path / "link").symlink_to(tmp_path / "missing")
    with pytest.raises(ConfigError, match="link to a missing target"):
        check_writable_folder(tmp_path / "link" / "out")


def test_writable_locations_pass_and_nothing_is_created(tmp_path, monkeypatch):
    deep = tmp_path / "a" / "b" / "c"
    assert check_writable_folder(str(deep)) == deep
    assert check_writable_folder(tmp_path) == tmp_path
    assert check_writable_file(deep / "x.safetensors") == deep / "x.safetensors"
    (tmp_path / "old.safetensors").write_text("old")
    assert check_writable_file(tmp_path / "old.safetensors") == tmp_path / "old.safetensors"  # replaced later
    monkeypatch.chdir(tmp_path)
    assert check_writable_folder("relative/out") == Path("relative/out")
    assert sorted(os.listdir(tmp_path)) == ["old.safetensors"]  # no folder, no probe file left


# --------------------------------------------------------------------------- SyntheticSet.validate on loading
def _load_error(path: Path) -> str:
    with pytest.raises(SyntheticSetFileError) as info:
        load_synthetic_set(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    return msg


def _soft(n: int = 10, k: int = 10) -> torch.Tensor:
    return torch.randn(n, k)


@pytest.mark.parametrize("change, needles", [
    (lambda t: {**t, "images": t["images"].half()}, ["images are float16; expected float32"]),
    (lambda t: {**t, "images": t["images"].double()}, ["images are float64; expected float32"]),
    (lambda t: {**t, "images": t["images"].to(torch.bfloat16)}, ["bfloat16"]),
    (lambda t: {**t, "images": t["images"].index_fill(0, torch.tensor([2]), float("nan"))},
     ["images hold 784 non-finite value(s)", "image 2"]),
    (lambda t: {**t, "images": t["images"].index_fill(0, torch.tensor([9]), float("-inf"))}, ["non-finite", "image 9"]),
    (lambda t: {**t, "images": t["images"][:, :, :14]}, ["do not match metadata", "image_size=[28, 28]"]),
    (lambda t: {**t, "images": t["images"].repeat(1, 3, 1, 1)}, ["do not match metadata", "channels=1"]),
    (lambda t: {**t, "images": t["images"][0]}, ["(N, C, H, W)"]),
    (lambda t: {"images": t["images"][:0], "labels": t["labels"][:0]}, ["no image"]),
    (lambda t: {**t, "labels": t["labels"].index_fill(0, torch.tensor([1]), 10)}, ["class 10", "0..9"]),
    (lambda t: {**t, "labels": t["labels"].index_fill(0, torch.tensor([1]), -1)}, ["class -1"]),
    (lambda t: {**t, "labels": t["labels"].int()}, ["int64", "int32"]),
    (lambda t: {**t, "labels": t["labels"][:9]}, ["10 images but 9 labels"]),
    (lambda t: {**t, "labels": t["labels"][0]}, ["0-d"]),
    (lambda t: {**t, "labels": t["labels"].view(10, 1, 1)}, ["labels of shape (10, 1, 1)"]),
    (lambda t: {**t, "labels": _soft(k=7)}, ["soft labels of shape (10, 7)", "expected 10"]),
    (lambda t: {**t, "labels": _soft().half()}, ["soft labels are float16; expected float32"]),
    (lambda t: {**t, "labels": _soft().index_fill(0, torch.tensor([4]), float("nan"))}, ["soft labels", "row 4"]),
    (lambda t: {**t, "learned_lr": torch.tensor(0.0)}, ["learned_lr is 0.0", "> 0"]),
    (lambda t: {**t, "learned_lr": torch.tensor(-0.5)}, ["learned_lr is -0.5"]),
    (lambda t: {**t, "learned_lr": torch.tensor(float("nan"))}, ["learned_lr is nan"]),
    (lambda t: {**t, "learned_lr": torch.tensor(float("inf"))}, ["learned_lr is inf"]),
    (lambda t: {**t, "learned_lr": torch.tensor([0.01, 0.02])}, ["learned_lr holds 2 values"]),
])
def test_each_bad_tensor_is_refused_naming_the_file_and_the_value(tmp_path, change, needles):
    images, labels = good_tensors()
    tensors = change({"images": images, "labels": labels})
    path = tmp_path / "bad.safetensors"
    write_tensor_file(path, tensors, mnist_meta(), FORMAT, FORMAT_VERSION)
    msg = _load_error(path)
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_labels_are_checked_against_the_class_names_when_num_classes_is_absent(tmp_path):
    meta = mnist_meta()
    del meta["num_classes"]
    images, labels = good_tensors()
    assert load_synthetic_set(write_set(tmp_path / "ok.safetensors", images, labels, meta)).labels.equal(labels)
    meta["class_names"] = meta["class_names"][:5]
    assert "0..4" in _load_error(write_set(tmp_path / "five.safetensors", images, labels, meta))


def test_good_sets_load_and_validate_returns_the_set(tmp_path):
    images, labels = good_tensors()
    hard = load_synthetic_set(write_set(tmp_path / "h.safetensors", images, labels, learned_lr=torch.tensor(0.01)))
    assert hard.images.equal(images) and hard.labels.equal(labels) and hard.learned_lr == pytest.approx(0.01)
    soft = load_synthetic_set(write_set(tmp_path / "s.safetensors", images, _soft(),
                                        mnist_meta(label_kind="soft_logits")))
    assert soft.label_kind == "soft_logits" and soft.labels.shape == (10, 10)
    assert hard.validate() is hard
    assert SyntheticSet(images, labels, None, {}).validate() is not None  # no metadata: only the tensors' rules
    with pytest.raises(SyntheticSetFileError, match="^learned_lr is -1.0; expected a finite number > 0$"):
        SyntheticSet(images, labels, -1.0, mnist_meta()).validate()  # no file name: the loader adds it
    with pytest.raises(SyntheticSetFileError, match="num_classes is 0"):
        SyntheticSet(images, labels, None, mnist_meta(num_classes=0)).validate()


def test_the_importers_validate_their_output(tmp_path, monkeypatch):
    """import_mtt and import_vico hand back a validated set; a rule they did not check themselves
    (here a learned lr made invalid behind their back) still stops the import with the file's name."""
    from datadistill.io import importers

    images, labels = good_tensors()
    (run_dir := tmp_path / "run").mkdir()
    torch.save(images, run_dir / "images_best.pt")
    torch.save(labels, run_dir / "labels_best.pt")
    torch.save(torch.tensor(0.01), run_dir / "lr_best.pt")
    assert importers.import_mtt(run_dir, MNIST_SPEC).learned_lr == pytest.approx(0.01)
    monkeypatch.setattr(importers, "_check_lr", lambda path, obj: float("nan"))
    with pytest.raises(SyntheticSetFileError, match=f"^{run_dir / 'images_best.pt'}: learned_lr is nan"):
        importers.import_mtt(run_dir, MNIST_SPEC)
    vico = tmp_path / "res_DM_MNIST_ConvNet_1ipc.pt"
    torch.save({"data": [[images, labels]], "accs_all_exps": {}}, vico)
    assert len(importers.import_vico(vico, MNIST_SPEC)) == 10


# --------------------------------------------------------------------------- at least two classes
def test_a_dataset_of_one_class_is_refused_at_load_time(tmp_path, spy):
    folder = tmp_path / "single"
    write_image_folder(folder, {"only": 4})
    with pytest.raises(DatasetLayoutError) as info:
        load_dataset(f"imagefolder:{folder}")
    msg = str(info.value)
    assert f"imagefolder:{folder.resolve()}" in msg and "1 class ('only')" in msg and "at least two" in msg
    assert spy.datasets == ["imagefolder"]
    split = tmp_path / "split"
    write_image_folder(split / "train", {"a": 3})
    write_image_folder(split / "test", {"a": 2})
    with pytest.raises(DatasetLayoutError, match="1 class"):
        load_dataset(f"imagefolder:{split}")
    write_image_folder(tmp_path / "two", {"a": 3, "b": 3})
    assert load_dataset(f"imagefolder:{tmp_path / 'two'}").spec.num_classes == 2


def test_any_registered_loader_is_held_to_two_classes(tmp_path, monkeypatch):
    from datadistill.data import DatasetSpec, LabelledImages, SplitDataset

    spec = DatasetSpec("lonely", 1, (8, 8), ("one",), (0.0,), (1.0,), "none")
    part = LabelledImages(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.int64))
    monkeypatch.setitem(DATASETS._items, "lonely", lambda root, options: SplitDataset(spec, part, part))
    with pytest.raises(DatasetLayoutError, match="^dataset lonely has 1 class \\('one'\\): at least two classes are "
                                                 "needed$"):
        load_dataset("lonely", tmp_path)
    with pytest.raises(DatasetLayoutError, match="has 0 class: "):
        check_class_count("empty", ())
    check_class_count("pair", ("a", "b"))

