"""ZCA whitening: fit, whiten → unwhiten round trip, storage in the synthetic-set file, evaluation, grids."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from kornia.enhance import ZCAWhitening

from datadistill.data import DatasetSpec, LabelledImages, SplitDataset
from datadistill.errors import ConfigError, SyntheticSetFileError
from datadistill.evaluation import EvalSettings, evaluate_synthetic_set, protocol
from datadistill.io import SyntheticSet, load_synthetic_set, save_grid, save_synthetic_set
from datadistill.preprocess import ZCA
from datadistill.preprocess.dataset import fit_zca, whiten_dataset
from helpers import TINY_MODEL

META = {"dataset": "tiny", "channels": 1, "image_size": [28, 28], "class_names": ["zero", "one", "two"],
        "num_classes": 3, "mean": [0.5], "std": [0.25], "method": "dm", "ipc": 2}


def correlated(n: int, shape=(2, 2, 2), seed: int = 0) -> torch.Tensor:
    """n images whose D = prod(shape) pixels are correlated, with covariance eigenvalues in about [1, 10]."""
    gen = torch.Generator().manual_seed(seed)
    d = int(np.prod(shape))
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    mix = q * torch.linspace(1.0, 10.0, d, dtype=torch.float64).sqrt()  # Σ = q diag(1..10) qᵀ
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) @ mix.T + 3.0
    return x.float().reshape(n, *shape)


def structured(n: int = 24, size: int = 8) -> torch.Tensor:
    """n small 3-channel images: gradients, a square and stripes at varying positions (rank-deficient)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for i in range(n):
        square = ((yy * size).long() // 3 == i % 3) & ((xx * size).long() // 3 == (i // 3) % 3)
        stripes = torch.sin(xx * (i % 5 + 1) * 3.14)
        out.append(torch.stack([xx * (i % 4), square.float(), stripes]))
    imgs = torch.stack(out)
    return (imgs - imgs.mean(dim=(0, 2, 3), keepdim=True)) / imgs.std(dim=(0, 2, 3), keepdim=True)


def whitened_cov(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(x.shape[0], -1).double()
    return torch.cov(flat.T)


# --- fit, whiten, unwhiten -------------------------------------------------------------------------

def test_fit_shapes_dtypes_and_export():
    x = correlated(100)
    zca = ZCA.fit(x)
    assert zca.eps == 0.1 and zca.shape == (2, 2, 2)
    assert zca.mean.shape == (1, 8) and zca.transform.shape == zca.inverse.shape == (8, 8)
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in (zca.mean, zca.transform, zca.inverse))
    assert torch.allclose(zca.mean, x.reshape(100, -1).mean(0, keepdim=True), atol=1e-5)
    assert torch.allclose(zca.transform @ zca.inverse, torch.eye(8), atol=1e-4)


def test_roundtrip_random_data():
    x = correlated(200, seed=1)
    zca = ZCA.fit(x, eps=0.1)
    w = zca.whiten(x)
    assert w.shape == x.shape and w.dtype == torch.float32
    assert not torch.allclose(w, x, atol=0.1)
    assert torch.allclose(zca.unwhiten(w), x, atol=1e-4)
    other = correlated(30, seed=2) * 2  # data it was not fitted on
    assert torch.allclose(zca.unwhiten(zca.whiten(other)), other, atol=1e-4)
    assert torch.allclose(zca.whiten(zca.unwhiten(other)), other, atol=1e-4)


def test_roundtrip_structured_images_rank_deficient():
    x = structured()  # 24 images, D = 192: covariance of rank < 24
    zca = ZCA.fit(x, eps=0.1)
    w = zca.whiten(x)
    assert w.shape == (24, 3, 8, 8)
    assert torch.allclose(zca.unwhiten(w), x, atol=1e-4)


def test_whitened_covariance_is_identity_when_eps_is_small():
    x = correlated(4000, seed=3)
    assert whitened_cov(x).sub(torch.eye(8, dtype=torch.float64)).abs().max() > 0.5  # correlated to begin with
    cov = whitened_cov(ZCA.fit(x, eps=1e-4).whiten(x))
    off = cov - torch.diag(torch.diag(cov))
    assert off.abs().max() < 1e-3
    assert (torch.diag(cov) - 1).abs().max() < 1e-3


def test_eps_is_added_to_the_covariance_eigenvalues():
    """kornia: transform = U (S + eps)^(-1/2) Uᵀ, so cov(whitened) = U S/(S + eps) Uᵀ: shrunk for eps ~ S."""
    x = correlated(2000, seed=4)
    s, u = torch.linalg.eigh(whitened_cov(x))
    cov = whitened_cov(ZCA.fit(x, eps=1.0).whiten(x))
    expected = u @ torch.diag(s / (s + 1.0)) @ u.T
    assert torch.allclose(cov, expected, atol=1e-4)
    assert (cov - torch.eye(8, dtype=torch.float64)).abs().max() > 0.05  # not white: eps matters


def test_whiten_in_chunks_matches_one_pass():
    x = correlated(50, seed=5)
    zca = ZCA.fit(x)
    assert torch.allclose(zca.whiten(x, chunk=7), zca.whiten(x), atol=1e-6)
    assert torch.allclose(zca.unwhiten(x, chunk=1), zca.unwhiten(x), atol=1e-6)
    with pytest.raises(ConfigError, match="chunk"):
        zca.whiten(x, chunk=0)


def test_whiten_keeps_float64_and_the_device():
    x = correlated(20).double()
    zca = ZCA.fit(x.float())
    assert zca.whiten(x).dtype == torch.float64
    assert torch.allclose(zca.unwhiten(zca.whiten(x)), x, atol=1e-4)


@pytest.mark.cuda
def test_whiten_on_cuda():
    x = correlated(20)
    zca = ZCA.fit(x)
    w = zca.whiten(x.cuda())
    assert w.is_cuda and torch.allclose(w.cpu(), zca.whiten(x), atol=1e-4)
    assert zca.to("cuda").transform.is_cuda and torch.allclose(zca.unwhiten(w).cpu(), x, atol=1e-4)


@pytest.mark.parametrize("eps", [0.0, -0.1, float("nan"), float("inf")])
def test_fit_rejects_bad_eps(eps):
    with pytest.raises(ConfigError, match="eps"):
        ZCA.fit(correlated(10), eps=eps)


def test_fit_rejects_one_image_and_wrong_dims():
    with pytest.raises(ConfigError, match="at least 2"):
        ZCA.fit(correlated(1))
    with pytest.raises(ConfigError, match=r"\(N, C, H, W\)"):
        ZCA.fit(torch.randn(10, 8))


def test_whiten_rejects_other_shapes():
    zca = ZCA.fit(correlated(10))
    with pytest.raises(ConfigError, match=r"\(N, 2, 2, 2\).*\(3, 1, 2, 2\)"):
        zca.whiten(torch.randn(3, 1, 2, 2))
    with pytest.raises(ValueError, match=r"\(3, 8\)"):
        zca.unwhiten(torch.randn(3, 8))


def test_tensors_and_from_tensors():
    zca = ZCA.fit(correlated(10))
    t = zca.tensors()
    assert set(t) == {"zca_mean", "zca_transform", "zca_inverse"}
    assert all(v.dtype == torch.float32 and v.is_contiguous() and v.device.type == "cpu" for v in t.values())
    back = ZCA.from_tensors({**t, "images": torch.zeros(1)}, 0.1, (2, 2, 2))
    assert torch.equal(back.transform, zca.transform) and back.shape == (2, 2, 2) and back.eps == 0.1
    with pytest.raises(SyntheticSetFileError, match="zca_inverse"):
        ZCA.from_tensors({k: v for k, v in t.items() if k != "zca_inverse"}, 0.1, (2, 2, 2))
    with pytest.raises(SyntheticSetFileError, match="zca_mean.*shape"):
        ZCA.from_tensors({**t, "zca_mean": torch.zeros(1, 7)}, 0.1, (2, 2, 2))
    with pytest.raises(SyntheticSetFileError, match=r"zca_mean.*\(1, 2, 2\)"):
        ZCA.from_tensors(t, 0.1, (1, 2, 2))
    with pytest.raises(SyntheticSetFileError, match="zca_transform"):
        ZCA.from_tensors({**t, "zca_transform": torch.zeros(8, 7)}, 0.1, (2, 2, 2))
    with pytest.raises(SyntheticSetFileError, match="eps"):
        ZCA.from_tensors(t, 0.0, (2, 2, 2))


# --- on pixels, as MTT/DATM: the reference's kornia ZCAWhitening -------------------------------------

PIX_MEAN, PIX_STD = (0.49, 0.48, 0.45), (0.2, 0.21, 0.19)


def pixel_images(n: int, seed: int = 0) -> torch.Tensor:
    """n images (3, 4, 4) of correlated pixels in [0, 1] (D = 48 < n: a full-rank covariance)."""
    return (correlated(n, shape=(3, 4, 4), seed=seed) / 20 + 0.35).clamp(0, 1)


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    view = (1, -1, 1, 1)
    return (pixels - torch.tensor(PIX_MEAN).view(view)) / torch.tensor(PIX_STD).view(view)


def test_matches_kornia_zca_whitening_on_raw_pixels():
    """No normalisation: ours is kornia's ZCAWhitening(eps, compute_inv=True) fitted on the same images."""
    pixels, other = pixel_images(300), pixel_images(20, seed=1)
    ref = ZCAWhitening(eps=0.1, compute_inv=True).fit(pixels)
    zca = ZCA.fit(pixels, eps=0.1)
    for x in (pixels, other):
        assert torch.allclose(zca.whiten(x), ref(x), atol=1e-5)
        assert torch.allclose(zca.unwhiten(ref(x)), ref.inverse_transform(ref(x)), atol=1e-5)
        assert torch.allclose(zca.unwhiten(zca.whiten(x)), x, atol=1e-5)


def test_fit_with_normalisation_whitens_the_pixels():
    """MTT/DATM drop Normalize with --zca: given normalised images and the normalisation, the whitened
    images are kornia's ZCAWhitening(eps) fitted on and applied to the pixels; unwhiten gives back the
    normalised images. Fitting on the normalised images themselves (before #21) is another whitening."""
    pixels, other = pixel_images(300), pixel_images(20, seed=2)
    ref = ZCAWhitening(eps=0.1, compute_inv=True).fit(pixels)
    zca = ZCA.fit(normalise(pixels), eps=0.1, norm_mean=PIX_MEAN, norm_std=PIX_STD)
    assert zca.norm_mean == PIX_MEAN and zca.norm_std == PIX_STD
    assert torch.allclose(zca.mean, pixels.reshape(300, -1).mean(0, keepdim=True), atol=1e-6)
    for x in (pixels, other):
        assert torch.allclose(zca.whiten(normalise(x)), ref(x), atol=1e-5)
        assert torch.allclose(zca.unwhiten(ref(x)), normalise(x), atol=1e-4)
    old = ZCA.fit(normalise(pixels), eps=0.1)  # the pre-#21 fit: eps 0.1 on pixels / σ
    assert not torch.allclose(old.whiten(normalise(pixels)), ref(pixels), atol=1e-2)


def test_whiten_dataset_fits_on_the_pixels_of_the_training_set():
    spec = DatasetSpec(name="px", channels=3, image_size=(4, 4), class_names=("a", "b"), mean=PIX_MEAN,
                       std=PIX_STD, dsa_strategy="none")
    train, test = pixel_images(300), pixel_images(30, seed=3)
    data = SplitDataset(spec, LabelledImages(normalise(train), torch.arange(300) % 2),
                        LabelledImages(normalise(test), torch.arange(30) % 2))
    white, zca = whiten_dataset(data, 0.1)
    ref = ZCAWhitening(eps=0.1, compute_inv=True).fit(train)
    assert torch.allclose(white.train.images, ref(train), atol=1e-5)
    assert torch.allclose(white.test.images, ref(test), atol=1e-5)
    assert zca.metadata() == {"eps": 0.1, "normalisation": {"mean": list(PIX_MEAN), "std": list(PIX_STD)}}
    assert fit_zca(data, 0.1).metadata() == zca.metadata()


@pytest.mark.parametrize("mean, std", [((0.5,), None), ((0.5, 0.5), (0.2, 0.2)), ((0.5,) * 3, (0.2, 0.0, 0.2)),
                                       ((0.5, float("nan"), 0.5), (0.2,) * 3)])
def test_fit_rejects_a_bad_normalisation(mean, std):
    with pytest.raises(ConfigError, match="normalisation"):
        ZCA.fit(pixel_images(10), norm_mean=mean, norm_std=std)


def test_normalisation_survives_the_file_and_old_files_read_as_written(tmp_path):
    zca = ZCA.fit(normalise(pixel_images(100)), eps=0.1, norm_mean=PIX_MEAN, norm_std=PIX_STD)
    meta = {**META, "channels": 3, "image_size": [4, 4], "mean": list(PIX_MEAN), "std": list(PIX_STD)}
    x = normalise(pixel_images(6, seed=4))
    syn = SyntheticSet(zca.whiten(x), torch.tensor([0, 0, 1, 1, 2, 2]), None, meta, zca)
    back = load_synthetic_set(save_synthetic_set(syn, tmp_path / "s.safetensors"))
    assert back.metadata["zca"] == zca.metadata() and back.zca.norm_std == PIX_STD
    assert torch.equal(back.zca.whiten(x), zca.whiten(x)) and torch.allclose(back.unwhitened(), x, atol=1e-4)
    # a file of before #21: metadata zca {"eps"} only, matrices acting on the normalised images
    tensors = {"images": syn.images.contiguous(), "labels": syn.labels, **zca.tensors()}
    file_meta = {**meta, "format": "datadistill.synthetic_set", "format_version": 1, "label_kind": "hard"}
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={"datadistill": json.dumps(
        {**file_meta, "zca": {"eps": 0.1}})})
    old = load_synthetic_set(tmp_path / "old.safetensors")
    assert old.zca.norm_mean is None and old.metadata["zca"] == {"eps": 0.1}
    assert torch.allclose(old.zca.whiten(x), linear(x, zca), atol=1e-5)
    for bad in ({"eps": 0.1, "normalisation": {"mean": [0.5]}}, {"eps": 0.1, "normalisation": {"mean": [0.5] * 3,
                                                                                              "std": [0.0] * 3}},
                {"eps": 0.1, "other": 1}):
        save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={"datadistill": json.dumps(
            {**file_meta, "zca": bad})})
        with pytest.raises(SyntheticSetFileError, match="bad.safetensors.*(normalisation|zca)"):
            load_synthetic_set(tmp_path / "bad.safetensors")


def linear(x: torch.Tensor, zca: ZCA) -> torch.Tensor:
    """(x - zca.mean) @ zca.transform on the flattened images: the stored matrices applied as they are."""
    return ((x.reshape(len(x), -1) - zca.mean) @ zca.transform).reshape(x.shape)


# --- the synthetic-set file ------------------------------------------------------------------------

def zca_set(seed: int = 0) -> SyntheticSet:
    gen = torch.Generator().manual_seed(seed)
    zca = ZCA.fit(torch.randn(40, 1, 28, 28, generator=gen), eps=0.05)
    images = zca.whiten(torch.randn(6, 1, 28, 28, generator=gen))
    return SyntheticSet(images, torch.tensor([0, 0, 1, 1, 2, 2]), None, dict(META), zca)


def test_file_roundtrip_keeps_zca_exactly(tmp_path):
    syn = zca_set()
    back = load_synthetic_set(save_synthetic_set(syn, tmp_path / "s.safetensors"))
    assert back.zca is not None
    for name in ("mean", "transform", "inverse"):
        assert torch.equal(getattr(back.zca, name), getattr(syn.zca, name))
    assert back.zca.eps == 0.05 and back.zca.shape == (1, 28, 28)
    assert back.metadata["zca"] == {"eps": 0.05}
    assert torch.equal(back.images, syn.images)
    # saving again keeps it
    again = load_synthetic_set(save_synthetic_set(back, tmp_path / "t.safetensors"))
    assert torch.equal(again.zca.transform, syn.zca.transform)


def test_file_without_zca_loads_none(tmp_path):
    syn = zca_set()
    plain = SyntheticSet(syn.images, syn.labels, None, {**syn.metadata, "zca": {"eps": 0.05}})  # stale key
    back = load_synthetic_set(save_synthetic_set(plain, tmp_path / "s.safetensors"))
    assert back.zca is None and "zca" not in back.metadata


def test_file_with_zca_metadata_but_missing_tensor(tmp_path):
    syn = zca_set()
    tensors = {"images": syn.images.contiguous(), "labels": syn.labels, **syn.zca.tensors()}
    del tensors["zca_transform"]
    meta = {**META, "format": "datadistill.synthetic_set", "format_version": 1, "label_kind": "hard",
            "zca": {"eps": 0.05}}
    path = tmp_path / "broken.safetensors"
    save_file(tensors, str(path), metadata={"datadistill": json.dumps(meta)})
    with pytest.raises(SyntheticSetFileError, match="zca_transform"):
        load_synthetic_set(path)
    meta["zca"] = "yes"
    save_file({**tensors, "zca_transform": syn.zca.transform}, str(path), metadata={"datadistill": json.dumps(meta)})
    with pytest.raises(SyntheticSetFileError, match="zca"):
        load_synthetic_set(path)


def test_synthetic_set_rejects_zca_of_another_shape():
    zca = ZCA.fit(correlated(10))
    with pytest.raises(SyntheticSetFileError, match="ZCA"):
        SyntheticSet(torch.randn(2, 1, 28, 28), torch.tensor([0, 1]), None, dict(META), zca)


# --- evaluation and grids --------------------------------------------------------------------------

def spy_accuracy(monkeypatch) -> list[torch.Tensor]:
    """Records the images every accuracy pass sees (train accuracy, then the per-class test pass)."""
    seen = []
    for name in ("accuracy", "class_correct"):
        original = getattr(protocol, name)

        def spy(net, data, device, *args, _original=original, **kwargs):
            seen.append(data.images.clone())
            return _original(net, data, device, *args, **kwargs)

        monkeypatch.setattr(protocol, name, spy)
    return seen


@pytest.mark.parametrize("with_zca", [True, False])
def test_evaluation_whitens_the_test_set(tiny_dataset, tiny_model, monkeypatch, with_zca):
    seen = spy_accuracy(monkeypatch)
    syn = zca_set()
    if not with_zca:
        syn = SyntheticSet(syn.images, syn.labels, None, dict(META))
    settings = EvalSettings(model=TINY_MODEL, num_eval=1, epochs=1, batch_size=4, dsa_strategy="none")
    res = evaluate_synthetic_set(syn, tiny_dataset.test, settings, torch.device("cpu"))
    assert len(res.accuracies) == 1 and len(seen) == 2
    train_seen, test_seen = seen
    assert torch.equal(train_seen, syn.images)  # the set is trained and scored as it is
    expected = syn.zca.whiten(tiny_dataset.test.images) if with_zca else tiny_dataset.test.images
    assert torch.allclose(test_seen, expected, atol=1e-5)
    if with_zca:
        assert not torch.allclose(test_seen, tiny_dataset.test.images, atol=0.1)


def test_save_grid_unwhitens(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 28, 28, generator=gen)
    zca = ZCA.fit(torch.randn(40, 1, 28, 28, generator=gen) * 0.5 + x[0], eps=0.1)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    w = zca.whiten(x)
    a = save_grid(w, labels, [0.5], [0.25], tmp_path / "a.png", zca=zca)
    b = save_grid(zca.unwhiten(w), labels, [0.5], [0.25], tmp_path / "b.png")
    c = save_grid(x, labels, [0.5], [0.25], tmp_path / "c.png")
    w_plain = save_grid(w, labels, [0.5], [0.25], tmp_path / "w.png")
    assert a.read_bytes() == b.read_bytes()
    pa, pc, pw = (np.asarray(Image.open(p), dtype=np.int16) for p in (a, c, w_plain))
    assert np.abs(pa - pc).max() <= 1  # the original images, up to rounding
    assert np.abs(pw - pc).max() > 10  # whitened images displayed as they are look different
