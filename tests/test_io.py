import json
import math
import os

import pytest

import datadistill.io.tensor_file as tensor_file_module
import torch
from PIL import Image
from safetensors.torch import save_file

from datadistill.errors import SyntheticSetFileError
from datadistill.io import SyntheticSet, atomic_write_bytes, atomic_write_text, load_synthetic_set, save_grid, save_synthetic_set
from datadistill.io import synthetic_set as synthetic_set_module

META = {"dataset": "mnist", "channels": 1, "image_size": [28, 28], "class_names": ["0", "1", "2"],
        "num_classes": 3, "mean": [0.1307], "std": [0.3081], "method": "dm", "ipc": 2, "seed": 5,
        "iterations": 7, "config": {"lr_img": 1.0, "nested": {"a": [1, 2]}, "none": None}}


def make_set(labels="hard", learned_lr=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(6, 1, 28, 28, generator=gen)
    if labels == "hard":
        lab = torch.tensor([0, 0, 1, 1, 2, 2])
    else:
        lab = torch.randn(6, 3, generator=gen)
    return SyntheticSet(images, lab, learned_lr, dict(META))


def assert_same(a: SyntheticSet, b: SyntheticSet):
    assert torch.equal(a.images, b.images) and a.images.dtype == b.images.dtype == torch.float32
    assert torch.equal(a.labels, b.labels) and a.labels.dtype == b.labels.dtype
    assert a.learned_lr == b.learned_lr
    for k, v in a.metadata.items():
        assert b.metadata[k] == v, k


def test_roundtrip_hard_labels(tmp_path):
    syn = make_set()
    path = save_synthetic_set(syn, tmp_path / "s.safetensors")
    assert path == tmp_path / "s.safetensors"
    loaded = load_synthetic_set(path)
    assert_same(syn, loaded)
    assert loaded.labels.dtype == torch.int64
    assert loaded.learned_lr is None
    assert loaded.label_kind == "hard"
    assert loaded.metadata["format"] == "datadistill.synthetic_set"
    assert loaded.metadata["label_kind"] == "hard"
    assert len(loaded) == 6


def test_roundtrip_soft_labels(tmp_path):
    syn = make_set("soft")
    assert syn.labels.dtype == torch.float32 and syn.labels.shape == (6, 3)
    loaded = load_synthetic_set(save_synthetic_set(syn, tmp_path / "soft.safetensors"))
    assert_same(syn, loaded)
    assert loaded.label_kind == "soft_logits"
    assert torch.equal(loaded.hard_labels, syn.labels.argmax(1))


def test_soft_label_kind_from_metadata_roundtrips(tmp_path):
    syn = make_set("soft")
    syn.metadata["label_kind"] = "soft_probabilities"
    loaded = load_synthetic_set(save_synthetic_set(syn, tmp_path / "p.safetensors"))
    assert loaded.label_kind == "soft_probabilities"


@pytest.mark.parametrize("lr", [0.015625, 0.25, 3.0])
def test_roundtrip_learned_lr_exact(tmp_path, lr):
    syn = make_set(learned_lr=lr)
    loaded = load_synthetic_set(save_synthetic_set(syn, tmp_path / "lr.safetensors"))
    assert_same(syn, loaded)
    assert isinstance(loaded.learned_lr, float)


def test_learned_lr_stored_as_float32(tmp_path):
    """The format stores learned_lr as float32, so a float64 value comes back float32-rounded."""
    syn = make_set(learned_lr=0.01)
    loaded = load_synthetic_set(save_synthetic_set(syn, tmp_path / "lr.safetensors"))
    assert loaded.learned_lr == pytest.approx(0.01, rel=1e-7)
    assert loaded.learned_lr == float(torch.tensor(0.01, dtype=torch.float32))


def test_roundtrip_of_non_contiguous_and_grad_tensors(tmp_path):
    base = torch.randn(1, 28, 28, 6)
    images = base.permute(3, 0, 1, 2).requires_grad_(True)  # non-contiguous leaf
    syn = SyntheticSet(images, torch.tensor([0, 0, 1, 1, 2, 2]), metadata=dict(META))
    loaded = load_synthetic_set(save_synthetic_set(syn, tmp_path / "nc.safetensors"))
    assert torch.equal(loaded.images, images.detach())


def test_save_is_atomic_no_leftovers(tmp_path):
    folder = tmp_path / "out"
    save_synthetic_set(make_set(), folder / "a.safetensors")  # creates the folder
    save_synthetic_set(make_set(seed=1), folder / "a.safetensors")  # overwrite
    assert sorted(os.listdir(folder)) == ["a.safetensors"]
    assert torch.equal(load_synthetic_set(folder / "a.safetensors").images, make_set(seed=1).images)


def test_failing_save_leaves_no_file(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tensor_file_module, "save_file", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_synthetic_set(make_set(), tmp_path / "x.safetensors")
    assert os.listdir(tmp_path) == []


def test_failing_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "x.safetensors"
    save_synthetic_set(make_set(), path)
    before = path.read_bytes()

    def half_write(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("interrupted")

    monkeypatch.setattr(tensor_file_module, "save_file", half_write)
    with pytest.raises(OSError):
        save_synthetic_set(make_set(seed=3), path)
    assert os.listdir(tmp_path) == ["x.safetensors"]
    assert path.read_bytes() == before


def test_atomic_text_and_bytes(tmp_path):
    atomic_write_text(tmp_path / "sub" / "a.txt", "héllo\n")
    atomic_write_bytes(tmp_path / "sub" / "b.bin", b"\x00\x01")
    assert (tmp_path / "sub" / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path / "sub")) == ["a.txt", "b.bin"]


def _load_error(path) -> str:
    with pytest.raises(SyntheticSetFileError) as info:
        load_synthetic_set(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "\n" not in msg
    return msg


def test_load_missing_file(tmp_path):
    assert "does not exist" in _load_error(tmp_path / "nope.safetensors")


def test_load_random_bytes(tmp_path):
    path = tmp_path / "random.safetensors"
    path.write_bytes(bytes(range(256)) * 8)
    assert "not a readable safetensors" in _load_error(path)


def test_load_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    assert "safetensors" in _load_error(path)


def test_load_truncated_file(tmp_path):
    path = tmp_path / "t.safetensors"
    save_synthetic_set(make_set(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "not a readable safetensors" in _load_error(path)


def test_load_foreign_safetensors(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(path))
    assert "not a datadistill synthetic set" in _load_error(path)
    save_file({"images": torch.zeros(2, 1, 28, 28), "labels": torch.zeros(2, dtype=torch.int64)}, str(path),
              metadata={"other": "x"})
    assert "not a datadistill synthetic set" in _load_error(path)


def test_load_wrong_format_or_newer_version(tmp_path):
    path = tmp_path / "f.safetensors"
    tensors = {"images": torch.zeros(2, 1, 28, 28), "labels": torch.zeros(2, dtype=torch.int64)}
    save_file(tensors, str(path), metadata={"datadistill": json.dumps({**META, "format": "other"})})
    assert "format" in _load_error(path)
    save_file(tensors, str(path), metadata={"datadistill": json.dumps(
        {**META, "format": "datadistill.synthetic_set", "format_version": 99})})
    assert "version" in _load_error(path)
    save_file(tensors, str(path), metadata={"datadistill": "{not json"})
    assert "JSON" in _load_error(path)


def test_load_missing_tensor_or_metadata_field(tmp_path):
    path = tmp_path / "m.safetensors"
    meta = {**META, "format": "datadistill.synthetic_set", "format_version": 1}
    save_file({"images": torch.zeros(2, 1, 28, 28)}, str(path), metadata={"datadistill": json.dumps(meta)})
    assert "labels" in _load_error(path)
    del meta["ipc"]
    save_file({"images": torch.zeros(2, 1, 28, 28), "labels": torch.zeros(2, dtype=torch.int64)}, str(path),
              metadata={"datadistill": json.dumps(meta)})
    assert "ipc" in _load_error(path)


def test_load_images_not_matching_metadata(tmp_path):
    path = tmp_path / "shape.safetensors"
    meta = {**META, "format": "datadistill.synthetic_set", "format_version": 1}
    save_file({"images": torch.zeros(2, 3, 28, 28), "labels": torch.zeros(2, dtype=torch.int64)}, str(path),
              metadata={"datadistill": json.dumps(meta)})
    assert "do not match" in _load_error(path)
    save_file({"images": torch.zeros(2, 1, 28, 28), "labels": torch.zeros(3, dtype=torch.int64)}, str(path),
              metadata={"datadistill": json.dumps(meta)})
    with pytest.raises(SyntheticSetFileError):
        load_synthetic_set(path)


def test_load_metadata_json_not_an_object(tmp_path):
    """Valid JSON that is not an object (e.g. a list) is still a corrupt file: SyntheticSetFileError."""
    path = tmp_path / "list.safetensors"
    save_file({"images": torch.zeros(2, 1, 28, 28), "labels": torch.zeros(2, dtype=torch.int64)}, str(path),
              metadata={"datadistill": "[1, 2, 3]"})
    _load_error(path)


def test_synthetic_set_validation():
    with pytest.raises(SyntheticSetFileError):
        SyntheticSet(torch.zeros(2, 28, 28), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(SyntheticSetFileError):
        SyntheticSet(torch.zeros(2, 1, 28, 28), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(SyntheticSetFileError):
        SyntheticSet(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.int32))


@pytest.mark.parametrize("upscale", [1, 2, 3])
def test_save_grid_one_row_per_class(tmp_path, upscale):
    syn = make_set()  # 3 classes × 2 images of 28×28
    path = save_grid(syn.images, syn.labels, META["mean"], META["std"], tmp_path / "g.png", upscale=upscale)
    assert path == tmp_path / "g.png"
    assert os.listdir(tmp_path) == ["g.png"]
    img = Image.open(path)
    assert img.format == "PNG"
    side, pad = 28 * upscale, 2
    assert img.size == (2 * (side + pad) + pad, 3 * (side + pad) + pad)  # (width, height)


def test_save_grid_unequal_classes_pads_rows(tmp_path):
    images = torch.randn(5, 3, 8, 8)
    labels = torch.tensor([2, 0, 0, 0, 1])  # class 0 has 3 images → 3 columns, 3 rows
    path = save_grid(images, labels, [0.5, 0.5, 0.5], [0.2, 0.2, 0.2], tmp_path / "u.png", upscale=1)
    img = Image.open(path)
    assert img.size == (3 * 10 + 2, 3 * 10 + 2)
    assert img.mode == "RGB"


def test_save_grid_content_is_denormalised(tmp_path):
    # class 0: pixel value 0 → black; class 1: value 1 → white (mean 0.5, std 0.5)
    images = torch.cat([torch.full((1, 1, 4, 4), -1.0), torch.full((1, 1, 4, 4), 1.0)])
    path = save_grid(images, torch.tensor([1, 0]), [0.5], [0.5], tmp_path / "c.png", upscale=1)
    img = Image.open(path).convert("L")
    # first row (class 0) holds the white image, second row (class 1) the black one
    assert img.getpixel((2 + 1, 2 + 1)) == 255
    assert img.getpixel((2 + 1, 2 + 6 + 1)) == 0
    assert math.isclose(img.size[1], 2 * 6 + 2)


def test_saved_files_get_the_usual_permissions(tmp_path):
    """A synthetic-set file is readable like any file the user creates (0666 minus the umask), not 0600."""
    umask = os.umask(0)
    os.umask(umask)
    path = save_synthetic_set(make_set(), tmp_path / "x.safetensors")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
