"""The synthetic set in users' code (issue #23, item 4): ``SyntheticSet.to_dataset``, ``export`` to an
image folder / npz / Hugging Face dataset, and ``import`` of the three back.

Round trips: npz bit for bit (ZCA included); Hugging Face bit for bit in float32 (normalised images
are stored; a ZCA set is stored un-whitened); image folder within half a grey level (0.5 / 255) of the
set's pixels, the 8-bit rounding of the PNG files.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch.utils.data import DataLoader

from datadistill.cli import main
from datadistill.cli.export import FORMATS
from datadistill.data.torchvision_sets import FASHION_MNIST_SPEC, MNIST_SPEC
from datadistill.errors import ConfigError, SyntheticSetFileError
from datadistill.io import (EXPORT_FORMATS, SyntheticSet, export_synthetic_set, import_reference, load_synthetic_set,
                            save_synthetic_set, synthetic_set_metadata)
from datadistill.io import export as export_module
from datadistill.preprocess import ZCA
from helpers import assert_clean_failure

datasets = pytest.importorskip("datasets")
HALF_LEVEL = 0.5 / 255 + 1e-6  # the PNG rounding, plus float error of un-normalising


def make_set(spec=MNIST_SPEC, labels="hard", lr=0.01, n_per_class=2, seed=0, zca=None) -> SyntheticSet:
    gen = torch.Generator().manual_seed(seed)
    k, n = spec.num_classes, spec.num_classes * n_per_class
    images = torch.randn(n, spec.channels, *spec.image_size, generator=gen)
    lab = torch.arange(n) % k if labels == "hard" else torch.randn(n, k, generator=gen)
    meta = synthetic_set_metadata(spec, method="dm", ipc=n_per_class, seed=3, iterations=5, config={"lr_img": 1.0})
    if labels != "hard":
        meta["label_kind"] = "soft_logits"
    return SyntheticSet(zca.whiten(images) if zca else images, lab, lr, meta, zca)


def saved(syn: SyntheticSet, tmp_path) -> SyntheticSet:
    """The set as a user has it: written by datadistill and read back (float32 learned lr, format keys)."""
    return load_synthetic_set(save_synthetic_set(syn, tmp_path / "set.safetensors"))


def small_zca(spec=MNIST_SPEC) -> ZCA:
    """A ZCA as datadistill fits one: on the pixels of normalised images (the normalisation undone)."""
    gen = torch.Generator().manual_seed(7)
    return ZCA.fit(torch.randn(64, spec.channels, *spec.image_size, generator=gen), eps=0.1,
                   norm_mean=spec.mean, norm_std=spec.std)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# --------------------------------------------------------------------------- to_dataset
def test_to_dataset_normalised_hard_labels_feeds_a_dataloader():
    syn = make_set()
    ds = syn.to_dataset()
    assert len(ds) == len(syn)
    image, label = ds[3]
    assert torch.equal(image, syn.images[3]) and isinstance(label, int) and label == 3
    images, labels = next(iter(DataLoader(ds, batch_size=8, shuffle=False)))
    assert images.shape == (8, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.tolist() == syn.labels[:8].tolist()


def test_to_dataset_pixels_and_soft_labels():
    syn = make_set(labels="soft")
    pixels, labels = next(iter(DataLoader(syn.to_dataset(normalised=False), batch_size=len(syn))))
    assert pixels.min() >= 0 and pixels.max() <= 1
    assert torch.allclose(pixels, (syn.images * 0.3081 + 0.1307).clamp(0, 1), atol=1e-6)
    assert labels.shape == (len(syn), 10) and labels.dtype == torch.float32 and torch.equal(labels, syn.labels)


def test_to_dataset_pixels_undo_the_zca():
    zca = small_zca()
    plain = make_set()
    whitened = make_set(zca=zca)
    assert not torch.allclose(whitened.images, plain.images, atol=1e-2)
    assert torch.allclose(whitened.to_dataset(normalised=False).images, plain.pixels(), atol=1e-4)
    assert torch.equal(whitened.to_dataset(normalised=True).images, whitened.images)  # as stored: whitened


def test_to_dataset_with_a_transforms_v2_pipeline():
    v2 = pytest.importorskip("torchvision.transforms.v2")
    syn = make_set()
    pipeline = v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.Normalize(mean=[0.1307], std=[0.3081])])
    ds = syn.to_dataset(normalised=False, transform=pipeline, target_transform=lambda c: c + 100)
    images, labels = next(iter(DataLoader(ds, batch_size=4, num_workers=0)))
    want = ((syn.pixels()[:4] - 0.1307) / 0.3081).flip(-1)
    assert images.shape == (4, 1, 28, 28) and torch.allclose(images, want, atol=1e-5)
    assert labels.tolist() == [100, 101, 102, 103]
    to_pil = syn.to_dataset(normalised=False, transform=v2.ToPILImage())
    assert to_pil[0][0].size == (28, 28)


# --------------------------------------------------------------------------- npz
@pytest.mark.parametrize("kind", ["hard", "soft", "zca"])
def test_npz_round_trip_is_bit_exact(tmp_path, kind):
    syn = saved(make_set(labels="soft" if kind == "soft" else "hard", zca=small_zca() if kind == "zca" else None),
                tmp_path)
    out = export_synthetic_set(syn, tmp_path / "set.npz", "npz")
    with np.load(out, allow_pickle=False) as npz:
        assert npz["images"].dtype == np.float32 and np.array_equal(npz["images"], syn.images.numpy())
        meta = json.loads(str(npz["metadata"]))
    assert meta["export"]["format"] == "npz" and meta["method"] == "dm" and meta["class_names"][3] == "3"
    back = import_reference(out, MNIST_SPEC)
    assert torch.equal(back.images, syn.images) and torch.equal(back.labels, syn.labels)
    assert back.learned_lr == syn.learned_lr and back.label_kind == syn.label_kind
    assert back.metadata["method"] == "dm" and back.metadata["seed"] == 3 and back.metadata["source_format"] == "npz"
    if kind == "zca":
        assert back.zca is not None and back.zca.metadata() == syn.zca.metadata() == meta["zca"]
        assert all(torch.equal(a, b) for a, b in zip(back.zca.tensors().values(), syn.zca.tensors().values()))
    else:
        assert back.zca is None


def test_npz_import_refusals(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, images=np.zeros((2, 1, 28, 28), np.float32), labels=np.zeros(2, np.int64))
    with pytest.raises(SyntheticSetFileError, match="not an npz written by datadistill export"):
        import_reference(foreign, MNIST_SPEC)
    out = export_synthetic_set(make_set(), tmp_path / "set.npz", "npz")
    with pytest.raises(SyntheticSetFileError, match="without --zca-eps"):
        import_reference(out, MNIST_SPEC, zca=small_zca())
    with pytest.raises(SyntheticSetFileError, match="class names"):
        import_reference(out, FASHION_MNIST_SPEC)
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(SyntheticSetFileError, match="not a readable .npz file"):
        import_reference(tmp_path / "broken.npz", MNIST_SPEC)


# --------------------------------------------------------------------------- image folder
def test_image_folder_round_trip_within_half_a_grey_level(tmp_path):
    syn = saved(make_set(FASHION_MNIST_SPEC), tmp_path)
    out = export_synthetic_set(syn, tmp_path / "folder", "imagefolder")
    names = sorted(p.name for p in out.iterdir())
    assert "T-shirt_top" in names and "Ankle boot" in names and "datadistill.json" in names  # "/" made "_"
    assert sorted(os.listdir(out / "Trouser")) == ["000001.png", "000011.png"]
    with Image.open(out / "Trouser" / "000001.png") as png:
        assert png.mode == "L" and png.size == (28, 28)
    back = import_reference(out, FASHION_MNIST_SPEC)
    assert torch.equal(back.labels, syn.labels)  # the original order, by file name
    assert (back.pixels() - syn.pixels()).abs().max() <= HALF_LEVEL
    assert back.learned_lr == syn.learned_lr and back.metadata["method"] == "dm"
    assert back.metadata["source_format"] == "imagefolder" and back.metadata["class_names"][0] == "T-shirt/top"
    torchvision = pytest.importorskip("torchvision")
    assert len(torchvision.datasets.ImageFolder(str(out))) == len(syn)


def test_image_folder_of_a_zca_set_holds_pixels_and_rewhitens_on_import(tmp_path):
    zca = small_zca()
    syn = make_set(zca=zca)
    out = export_synthetic_set(syn, tmp_path / "folder", "imagefolder")
    assert json.loads((out / "datadistill.json").read_text())["export"]["zca_undone"] == {
        "eps": 0.1, "normalisation": {"mean": list(MNIST_SPEC.mean), "std": list(MNIST_SPEC.std)}}
    plain = import_reference(out, MNIST_SPEC)
    assert plain.zca is None and (plain.pixels() - syn.pixels()).abs().max() <= HALF_LEVEL + 1e-4
    whitened = import_reference(out, MNIST_SPEC, zca=zca)
    assert whitened.zca is zca and torch.allclose(whitened.images, zca.whiten(plain.images))


def test_soft_labels_are_refused_for_an_image_folder(tmp_path):
    with pytest.raises(SyntheticSetFileError, match="soft labels .*--format npz or hf"):
        export_synthetic_set(make_set(labels="soft"), tmp_path / "folder", "imagefolder")
    assert not (tmp_path / "folder").exists()


def test_an_image_folder_made_elsewhere(tmp_path):
    folder = tmp_path / "mine"
    rng = np.random.default_rng(0)
    for name, count in (("0", 2), ("7", 1)):
        (folder / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).save(folder / name / f"im{i}.png")
    (folder / "0" / "notes.txt").write_text("ignored")
    syn = import_reference(folder, MNIST_SPEC)
    assert syn.labels.tolist() == [0, 7, 0] and syn.metadata["method"] == "imported:imagefolder"
    assert syn.metadata["ipc"] is None and syn.images.shape == (3, 1, 28, 28)  # RGB read as grey
    grey = np.asarray(Image.open(folder / "7" / "im0.png").convert("L"), np.float32) / 255
    assert torch.allclose(syn.pixels()[1, 0], torch.from_numpy(grey), atol=1e-6)


@pytest.mark.parametrize("case, needle", [("unknown class", "['cat'] that are not a class of dataset 'mnist'"),
                                          ("wrong size", "image of 14×14 pixels; dataset 'mnist' has 28×28"),
                                          ("not an image", "is not a readable image"),
                                          ("no image", "hold no image file")])
def test_image_folder_refusals(tmp_path, case, needle):
    folder = tmp_path / "mine"
    (folder / ("cat" if case == "unknown class" else "3")).mkdir(parents=True)
    target = next(folder.iterdir()) / "a.png"
    if case == "not an image":
        target.write_bytes(b"garbage")
    elif case != "no image":
        Image.fromarray(np.zeros((14, 14) if case == "wrong size" else (28, 28), np.uint8)).save(target)
    with pytest.raises(SyntheticSetFileError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        import_reference(folder, MNIST_SPEC)


# --------------------------------------------------------------------------- Hugging Face
@pytest.mark.parametrize("labels", ["hard", "soft"])
def test_hf_round_trip_is_bit_exact_in_float32(tmp_path, labels):
    syn = saved(make_set(FASHION_MNIST_SPEC, labels=labels), tmp_path)
    out = export_synthetic_set(syn, tmp_path / "hf", "hf")
    ds = datasets.load_from_disk(str(out))
    assert ds.features["label"].names == list(FASHION_MNIST_SPEC.class_names)
    assert ds.features["image"].dtype == "float32" and ds.features["image"].shape == (1, 28, 28)
    torch_ds = ds.with_format("torch")[:]
    assert torch.equal(torch_ds["image"], syn.images) and torch.equal(torch_ds["label"], syn.hard_labels)
    meta = json.loads(ds.info.description)
    assert meta["method"] == "dm" and meta["label_kind"] == syn.label_kind and meta["export"]["format"] == "hf"
    back = import_reference(out, FASHION_MNIST_SPEC)
    assert torch.equal(back.images, syn.images) and torch.equal(back.labels, syn.labels)
    assert back.label_kind == syn.label_kind and back.learned_lr == syn.learned_lr
    assert back.metadata["source_format"] == "hf" and back.metadata["seed"] == 3


def test_hf_of_a_zca_set_holds_unwhitened_images(tmp_path):
    syn = make_set(zca=small_zca())
    out = export_synthetic_set(syn, tmp_path / "hf", "hf")
    back = import_reference(out, MNIST_SPEC)
    assert back.zca is None and torch.equal(back.images, syn.unwhitened())


def test_a_hf_dataset_made_elsewhere(tmp_path):
    rng = np.random.default_rng(1)
    pictures = [Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(3)]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["9", "0", "5"])})
    ds = datasets.Dataset.from_dict({"img": pictures, "label": [0, 1, 2]}, features=features)
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "hf"))
    syn = import_reference(tmp_path / "hf", MNIST_SPEC)
    assert syn.labels.tolist() == [9, 0, 5] and syn.metadata["method"] == "imported:hf"  # mapped by name
    assert torch.allclose(syn.pixels()[0, 0], torch.from_numpy(np.asarray(pictures[0], np.float32) / 255), atol=1e-6)
    arrays = datasets.Dataset.from_dict({"image": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), "labels": [4, 2]})
    arrays.save_to_disk(str(tmp_path / "arrays"))
    syn = import_reference(tmp_path / "arrays", MNIST_SPEC)
    assert syn.labels.tolist() == [4, 2] and syn.images.shape == (2, 1, 28, 28)
    wrong = datasets.Dataset.from_dict({"image": pictures[:1], "label": [0]},
                                       features=datasets.Features({"image": datasets.Image(),
                                                                   "label": datasets.ClassLabel(names=["cat"])}))
    wrong.save_to_disk(str(tmp_path / "wrong"))
    with pytest.raises(SyntheticSetFileError, match=r"label names \['cat'\] are not classes of dataset 'mnist'"):
        import_reference(tmp_path / "wrong", MNIST_SPEC)


def test_missing_datasets_package_is_one_clear_error(tmp_path, monkeypatch):
    out = export_synthetic_set(make_set(), tmp_path / "hf", "hf")
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets raises ImportError
    with pytest.raises(ConfigError, match=r"pip install datadistill\[hf\]"):
        export_synthetic_set(make_set(), tmp_path / "hf2", "hf")
    with pytest.raises(ConfigError, match=r"pip install datadistill\[hf\]"):
        import_reference(out, MNIST_SPEC)
    assert not (tmp_path / "hf2").exists()


# --------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_an_existing_output_is_refused_but_an_empty_folder_is_used(tmp_path, fmt):
    out = tmp_path / ("set.npz" if fmt == "npz" else "out")
    if fmt == "npz":
        out.write_bytes(b"old")
        with pytest.raises(ConfigError, match="already exists"):
            export_synthetic_set(make_set(), out, fmt)
        assert out.read_bytes() == b"old"
        return
    out.mkdir()
    assert export_synthetic_set(make_set(), out, fmt) == out and any(out.iterdir())
    with pytest.raises(ConfigError, match="exists and is not empty"):
        export_synthetic_set(make_set(), out, fmt)


def test_other_output_refusals(tmp_path):
    with pytest.raises(ConfigError, match="must be a file name ending in .npz"):
        export_synthetic_set(make_set(), tmp_path / "set.np", "npz")
    with pytest.raises(ConfigError, match="unknown export format 'zip'; accepted: imagefolder, npz, hf"):
        export_synthetic_set(make_set(), tmp_path / "x", "zip")
    assert os.listdir(tmp_path) == []
    assert FORMATS == EXPORT_FORMATS  # the CLI's choices are the formats


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_an_interrupted_export_leaves_nothing(tmp_path, monkeypatch, fmt):
    def fail(syn, meta, target):
        (target.parent / target.name).write_bytes(b"partial") if fmt == "npz" else (target / "part").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, {"npz": "_write_npz", "imagefolder": "_write_imagefolder",
                                        "hf": "_write_hf"}[fmt], fail)
    with pytest.raises(KeyboardInterrupt):
        export_synthetic_set(make_set(), tmp_path / ("s.npz" if fmt == "npz" else "out"), fmt)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- CLI
@pytest.fixture
def set_file(tmp_path):
    return save_synthetic_set(make_set(), tmp_path / "set.safetensors")


@pytest.mark.parametrize("fmt, name", [("npz", "s.npz"), ("imagefolder", "folder"), ("hf", "hf")])
def test_cli_export_then_import(mnist_root, tmp_path, set_file, fmt, name):
    out = tmp_path / name
    result = run("export", set_file, "--format", fmt, out)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"exported 20 images (hard labels) from {set_file} as {fmt}: {out}"
    assert result.stderr == ""  # no progress bar of datasets
    back_file = tmp_path / "back.safetensors"
    result = run("import", out, "--dataset", "mnist", "--data-root", mnist_root, "--out", back_file)
    assert result.exit_code == 0, result.output
    assert f"imported 20 images (hard labels, learned lr 0.01) from {out}" in result.stdout
    original, back = load_synthetic_set(set_file), load_synthetic_set(back_file)
    assert torch.equal(back.labels, original.labels) and back.metadata["method"] == "dm"
    if fmt == "imagefolder":
        assert (back.pixels() - original.pixels()).abs().max() <= HALF_LEVEL
    else:
        assert torch.equal(back.images, original.images)


def test_cli_export_errors(tmp_path, set_file, monkeypatch):
    result = run("export", set_file, "--format", "zip", tmp_path / "x")
    assert_clean_failure(result, "'zip' is not one of", "imagefolder")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert_clean_failure(run("export", set_file, "--format", "hf", tmp_path / "full"), "exists and is not empty")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    soft = save_synthetic_set(make_set(labels="soft"), tmp_path / "soft.safetensors")
    assert_clean_failure(run("export", soft, "--format", "imagefolder", tmp_path / "f"), "soft labels", "npz or hf")
    assert_clean_failure(run("export", tmp_path / "nope.safetensors", "--format", "npz", tmp_path / "s.npz"),
                         "nope.safetensors")
    monkeypatch.setitem(sys.modules, "datasets", None)
    assert_clean_failure(run("export", set_file, "--format", "hf", tmp_path / "hf"), "pip install datadistill[hf]")
    assert sorted(os.listdir(tmp_path)) == ["full", "set.safetensors", "soft.safetensors"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc, a folder that takes no new file")
@pytest.mark.parametrize("fmt, name", [("npz", "s.npz"), ("imagefolder", "out"), ("hf", "out")])
def test_cli_export_refuses_an_unwritable_output_before_reading(tmp_path, fmt, name):
    result = run("export", tmp_path / "not-read.safetensors", "--format", fmt, f"/proc/{name}")
    assert_clean_failure(result, f"/proc/{name}", "not writable")


def test_cli_import_of_a_folder_of_another_dataset(mnist_root, tmp_path):
    out = export_synthetic_set(make_set(FASHION_MNIST_SPEC), tmp_path / "folder", "imagefolder")
    result = run("import", out, "--dataset", "mnist", "--data-root", mnist_root, "--out", tmp_path / "s.safetensors")
    assert_clean_failure(result, "not a class of dataset 'mnist'", "'Ankle boot'")
    assert not (tmp_path / "s.safetensors").exists()
