"""Importing synthetic sets saved by the reference code of DC/DSA/DM/DataDAM (VICO) and MTT/DATM/PAD."""

import dataclasses
import os

import numpy as np
import pytest
import torch

from datadistill import __version__
from datadistill.data import DatasetSpec
from datadistill.errors import SyntheticSetFileError
from datadistill.io import (SyntheticSet, import_mtt, import_reference, import_vico, load_synthetic_set,
                            save_synthetic_set)
from datadistill.preprocess import ZCA

SPEC = DatasetSpec(name="tiny", channels=2, image_size=(4, 4), class_names=("a", "b", "c"),
                   mean=(0.5, 0.4), std=(0.25, 0.2), dsa_strategy="none")


def images(n=6, seed=0):
    return torch.randn(n, 2, 4, 4, generator=torch.Generator().manual_seed(seed))


def hard(n=6):
    return torch.arange(3).repeat_interleave(n // 3)


def expected_meta(method, source, ipc=2):
    return {"dataset": "tiny", "channels": 2, "image_size": [4, 4], "class_names": ["a", "b", "c"],
            "num_classes": 3, "mean": [0.5, 0.4], "std": [0.25, 0.2], "method": method, "ipc": ipc,
            "init": None, "model": None, "seed": None, "iterations": None, "config": {},
            "package_version": __version__, "source_file": str(source)}


def error(fn, *args, **kwargs) -> str:
    with pytest.raises(SyntheticSetFileError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def assert_roundtrip(syn: SyntheticSet, tmp_path):
    loaded = load_synthetic_set(save_synthetic_set(syn, tmp_path / "roundtrip.safetensors"))
    assert torch.equal(loaded.images, syn.images) and torch.equal(loaded.labels, syn.labels)
    assert loaded.labels.dtype == syn.labels.dtype
    assert loaded.learned_lr == syn.learned_lr
    assert loaded.label_kind == syn.label_kind
    for key, value in syn.metadata.items():
        assert loaded.metadata[key] == value, key
    return loaded


# --- VICO-UoE DatasetCondensation / DataDAM ---------------------------------------------------------------------


def write_vico(path, data, accs=None):
    """The structure main.py of DC/DSA/DM saves; its accuracies are numpy float64 scalars."""
    accs = {"ConvNet": [np.float64(0.25), np.float64(0.5)]} if accs is None else accs
    torch.save({"data": data, "accs_all_exps": accs}, path)
    return path


@pytest.fixture
def vico_file(tmp_path):
    data = [[images(seed=0), hard()], [images(seed=1), torch.tensor([2, 1, 0, 0, 1, 2])]]
    return write_vico(tmp_path / "res_DM_tiny_ConvNet_2ipc.pt", data), data


def test_vico_experiment_1(vico_file, tmp_path):
    path, data = vico_file
    syn = import_vico(path, SPEC, experiment=1)
    assert torch.equal(syn.images, data[1][0]) and syn.images.dtype == torch.float32
    assert torch.equal(syn.labels, data[1][1]) and syn.labels.dtype == torch.int64
    assert syn.learned_lr is None and syn.zca is None and syn.label_kind == "hard"
    assert syn.metadata == {**expected_meta("imported:vico", path), "source_experiment": 1}
    assert_roundtrip(syn, tmp_path)
    assert torch.equal(import_vico(path, SPEC).images, data[0][0])  # experiment 0 by default


def test_import_reference_dispatches_res_files(vico_file):
    path, data = vico_file
    syn = import_reference(path, SPEC, experiment=1)
    assert syn.metadata["method"] == "imported:vico"
    assert torch.equal(syn.labels, data[1][1])


def test_vico_file_pickled_by_numpy_1(tmp_path):
    """numpy 1.x pickles scalars as numpy.core.multiarray.scalar (numpy 2: numpy._core)."""
    path = tmp_path / "res_DC_tiny_ConvNet_2ipc.pt"
    torch.save({"data": [[images(), hard()]], "accs_all_exps": {"ConvNet": [np.float64(0.5)]}}, path,
               _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    renamed = raw.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
    assert renamed.count(b"numpy.core.multiarray\nscalar") == 1
    path.write_bytes(renamed)
    assert torch.equal(import_vico(path, SPEC).images, images())


@pytest.mark.parametrize("experiment", [2, -1, 7, True, "1"])
def test_vico_experiment_out_of_range(vico_file, experiment):
    path, _ = vico_file
    msg = error(import_vico, path, SPEC, experiment=experiment)
    assert str(path) in msg and "2 experiment(s)" in msg and "0..1" in msg


def test_vico_image_shape_mismatch(tmp_path):
    path = write_vico(tmp_path / "res_DM_x.pt", [[torch.zeros(6, 3, 4, 4), hard()]])
    msg = error(import_vico, path, SPEC)
    assert str(path) in msg and "(6, 3, 4, 4)" in msg and "(N, 2, 4, 4)" in msg


class MarkerPayload:
    """Unpickling this runs os.mkdir(marker): a stand-in for arbitrary code in a hostile .pt file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@dataclasses.dataclass
class Record:
    value: int


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / "marker"
    path = write_vico(tmp_path / "res_DM_evil.pt", [[images(), hard()]], accs=MarkerPayload(marker))
    msg = error(import_vico, path, SPEC)
    assert str(path) in msg and "weights_only" in msg and "mkdir" in msg
    assert not marker.exists()
    error(import_reference, path, SPEC)
    assert not marker.exists()
    with open(path, "rb") as fh:  # the payload is live: a plain unpickler would have run it
        torch.load(fh, weights_only=False)
    assert marker.is_dir()


def test_pickled_custom_class_is_refused(tmp_path):
    path = write_vico(tmp_path / "res_DM_record.pt", [[images(), hard()]], accs=Record(3))
    assert "Record" in error(import_vico, path, SPEC)


@pytest.mark.parametrize("payload, needle", [
    ([images(), hard()], "expected a dict with key 'data'"),
    ({"images": images()}, "keys ['images']"),
    ({"data": []}, "non-empty list"),
    ({"data": [images()]}, "pair"),
    ({"data": [[images().numpy().tolist(), hard()]]}, "float tensor"),
    ({"data": [[images(), hard().float()]]}, "int (N,) class indices in 0..2"),
    ({"data": [[images(), torch.tensor([0, 1, 2, 3, 0, 1])]]}, "class 3 out of range"),
    ({"data": [[images(), torch.tensor([0, 1, -1, 2, 0, 1])]]}, "class -1 out of range"),
    ({"data": [[images(), hard(3)]]}, "3 labels for 6 images"),
    ({"data": [[torch.full((6, 2, 4, 4), float("nan")), hard()]]}, "non-finite"),
    ({"data": [[images(0)[:0], hard()[:0]]]}, "no image"),
])
def test_vico_bad_structure(tmp_path, payload, needle):
    path = tmp_path / "res_bad.pt"
    torch.save(payload, path)
    msg = error(import_vico, path, SPEC)
    assert str(path) in msg and needle in msg, msg


def test_vico_missing_or_unreadable_file(tmp_path):
    assert "does not exist" in error(import_vico, tmp_path / "res_none.pt", SPEC)
    path = tmp_path / "res_junk.pt"
    path.write_bytes(bytes(range(256)) * 4)
    msg = error(import_vico, path, SPEC)
    assert str(path) in msg and "not a readable PyTorch file" in msg


def test_vico_unbalanced_set_has_no_ipc(tmp_path):
    path = write_vico(tmp_path / "res_DC_u.pt", [[images(), torch.tensor([0, 0, 0, 1, 1, 2])]])
    syn = import_vico(path, SPEC)
    assert syn.metadata["ipc"] is None
    assert_roundtrip(syn, tmp_path)


# --- MTT / DATM / PAD -----------------------------------------------------------------------------------------


def write_run(folder, imgs, labels, lr=None, suffix="best", prefix=""):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(imgs, folder / f"{prefix}images_{suffix}.pt")
    torch.save(labels, folder / f"{prefix}labels_{suffix}.pt")
    if lr is not None:
        torch.save(lr, folder / f"{prefix}lr_{suffix}.pt")
    return folder


def test_mtt_folder_hard_labels_and_lr(tmp_path):
    run = write_run(tmp_path / "run", images(), hard(), torch.tensor(0.015625))
    syn = import_mtt(run, SPEC)
    assert torch.equal(syn.images, images()) and torch.equal(syn.labels, hard())
    assert syn.label_kind == "hard" and syn.learned_lr == 0.015625 and syn.zca is None
    assert syn.metadata == expected_meta("imported:mtt", run / "images_best.pt")
    assert_roundtrip(syn, tmp_path)
    assert import_reference(run, SPEC).learned_lr == 0.015625


def test_datm_normal_subfolder_soft_labels(tmp_path):
    noise = torch.randn(6, 3, generator=torch.Generator().manual_seed(2)) * 0.1
    logits = (torch.nn.functional.one_hot(hard(), 3) * 4.0 + noise).requires_grad_(True)
    run = tmp_path / "CIFAR10" / "run"
    write_run(run / "Normal", images(), logits, torch.tensor([0.03125]).requires_grad_(True))
    syn = import_reference(run, SPEC)
    assert syn.label_kind == "soft_logits" and syn.labels.shape == (6, 3) and syn.labels.dtype == torch.float32
    assert torch.equal(syn.labels, logits.detach()) and not syn.labels.requires_grad
    assert syn.learned_lr == 0.03125
    assert syn.metadata["source_file"] == str(run / "Normal" / "images_best.pt")
    assert syn.metadata == expected_meta("imported:mtt", run / "Normal" / "images_best.pt", ipc=2)
    loaded = assert_roundtrip(syn, tmp_path)
    assert loaded.label_kind == "soft_logits"


def test_mtt_lr_saved_as_python_number(tmp_path):
    run = write_run(tmp_path / "run", images(), hard(), 0.5)  # some forks save syn_lr.item()
    assert import_mtt(run, SPEC).learned_lr == 0.5


def test_mtt_missing_lr_file(tmp_path):
    syn = import_mtt(write_run(tmp_path / "run", images(), hard()), SPEC)
    assert syn.learned_lr is None
    assert load_synthetic_set(save_synthetic_set(syn, tmp_path / "s.safetensors")).learned_lr is None


@pytest.mark.parametrize("lr", [torch.tensor(-0.01), torch.tensor(0.0), torch.tensor(float("nan")),
                                torch.tensor(float("inf")), -1.0])
def test_mtt_bad_lr(tmp_path, lr):
    run = write_run(tmp_path / "run", images(), hard(), lr)
    msg = error(import_mtt, run, SPEC)
    assert str(run / "lr_best.pt") in msg and "finite number > 0" in msg


def test_mtt_lr_of_wrong_shape(tmp_path):
    run = write_run(tmp_path / "run", images(), hard(), torch.tensor([0.01, 0.02]))
    assert "0-d or 1-element" in error(import_mtt, run, SPEC)


def test_mtt_images_file_form(tmp_path):
    run = write_run(tmp_path / "run", images(seed=0), hard(), torch.tensor(0.25))
    labels_500 = torch.tensor([2, 2, 1, 1, 0, 0])
    write_run(run, images(seed=5), labels_500, torch.tensor(0.125), suffix="500")
    syn = import_reference(run / "images_500.pt", SPEC)
    assert torch.equal(syn.images, images(seed=5)) and torch.equal(syn.labels, labels_500)
    assert syn.learned_lr == 0.125
    assert syn.metadata["source_file"] == str(run / "images_500.pt")
    best = import_mtt(run / "images_best.pt", SPEC)
    assert torch.equal(best.images, images(seed=0)) and best.learned_lr == 0.25


def test_datm_ema_files(tmp_path):
    run = write_run(tmp_path / "run" / "ema", images(seed=3), hard(), torch.tensor(0.5), prefix="ema_")
    syn = import_reference(run / "ema_images_best.pt", SPEC)
    assert torch.equal(syn.images, images(seed=3)) and syn.learned_lr == 0.5


def test_mtt_unwhitened_images_file(tmp_path):
    run = write_run(tmp_path / "run", images(seed=0), hard(), suffix="1000")
    pixels = images(seed=9).mul(0.2).add(0.5).clamp(0, 1)  # the reference's ZCA inverse: pixels, no Normalize
    torch.save(pixels, run / "images_zca_1000.pt")
    syn = import_reference(run / "images_zca_1000.pt", SPEC)
    assert torch.equal(syn.labels, hard()) and syn.zca is None
    assert torch.allclose(syn.pixels(), pixels, atol=1e-6)  # normalised with SPEC's mean/std on import
    zca = ZCA.fit(torch.randn(50, 2, 4, 4, generator=torch.Generator().manual_seed(4)))
    assert "without ZCA" in error(import_reference, run / "images_zca_1000.pt", SPEC, zca=zca)


def test_mtt_with_zca_keeps_it(tmp_path):
    zca = ZCA.fit(torch.randn(50, 2, 4, 4, generator=torch.Generator().manual_seed(4)), eps=0.1)
    run = write_run(tmp_path / "run", images(), hard(), torch.tensor(0.01))
    syn = import_reference(run, SPEC, zca=zca)
    assert syn.zca is zca
    loaded = assert_roundtrip(syn, tmp_path)
    assert loaded.zca is not None and loaded.zca.eps == 0.1
    assert torch.equal(loaded.zca.transform, zca.transform) and torch.equal(loaded.zca.mean, zca.mean)


def test_mtt_zca_of_other_shape(tmp_path):
    zca = ZCA.fit(torch.randn(50, 1, 4, 4, generator=torch.Generator().manual_seed(4)))
    run = write_run(tmp_path / "run", images(), hard())
    assert "ZCA" in error(import_mtt, run, SPEC, zca=zca)


def test_vico_refuses_zca(vico_file):
    path, _ = vico_file
    zca = ZCA.fit(torch.randn(50, 2, 4, 4, generator=torch.Generator().manual_seed(4)))
    assert "without ZCA" in error(import_reference, path, SPEC, zca=zca)


@pytest.mark.parametrize("labels, needle", [
    (torch.randn(6, 4), "float (N, 3) soft labels"),
    (torch.randn(6, 3).double().long(), "int (N,) class indices"),
    (hard(3), "3 labels for 6 images"),
    (torch.full((6, 3), float("inf")), "non-finite"),
    (torch.tensor([0, 1, 2, 3, 0, 1]), "out of range"),
    ([0, 1, 2, 0, 1, 2], "found a list"),
])
def test_mtt_bad_labels(tmp_path, labels, needle):
    run = write_run(tmp_path / "run", images(), labels)
    msg = error(import_mtt, run, SPEC)
    assert str(run / "labels_best.pt") in msg and needle in msg, msg


def test_mtt_bad_images(tmp_path):
    run = write_run(tmp_path / "run", torch.zeros(6, 2, 5, 4), hard())
    assert "do not match" in error(import_mtt, run, SPEC)
    run = write_run(tmp_path / "run2", images().half(), hard())
    assert import_mtt(run, SPEC).images.dtype == torch.float32  # float16 is widened
    write_run(tmp_path / "run3", images().long(), hard())
    assert "float tensor" in error(import_mtt, tmp_path / "run3", SPEC)


def test_mtt_missing_files(tmp_path):
    (tmp_path / "empty").mkdir()
    msg = error(import_mtt, tmp_path / "empty", SPEC)
    assert "no images_best.pt" in msg and str(tmp_path / "empty") in msg
    run = tmp_path / "run"
    run.mkdir()
    torch.save(images(), run / "images_best.pt")
    assert "labels_best.pt is missing" in error(import_reference, run, SPEC)
    assert "does not exist" in error(import_mtt, tmp_path / "nowhere", SPEC)


def test_import_reference_unknown_form(tmp_path):
    path = tmp_path / "synthetic.pt"
    torch.save({"data": [[images(), hard()]]}, path)
    msg = error(import_reference, path, SPEC)
    assert str(path) in msg and "res_<method>" in msg and "images_best.pt" in msg
    assert "does not exist" in error(import_reference, tmp_path / "res_missing.pt", SPEC)


def test_mtt_pickled_object_in_labels_is_refused(tmp_path):
    marker = tmp_path / "marker"
    run = write_run(tmp_path / "run", images(), MarkerPayload(marker))
    msg = error(import_mtt, run, SPEC)
    assert str(run / "labels_best.pt") in msg and "weights_only" in msg
    assert not marker.exists()


def test_every_load_is_weights_only_on_cpu(tmp_path, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    run = write_run(tmp_path / "run", images(), hard(), torch.tensor(0.5))
    assert import_mtt(run, SPEC).learned_lr == 0.5
    import_vico(write_vico(tmp_path / "res_x.pt", [[images(), hard()]]), SPEC)
    assert len(calls) == 4
    assert all(c.get("weights_only") is True and c.get("map_location") == "cpu" for c in calls), calls
