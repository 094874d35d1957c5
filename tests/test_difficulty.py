"""Difficulty scores (EL2N, GraNd, forgetting, uncertainty), their files, and the score-based coreset methods."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

import datadistill.methods.difficulty  # noqa: F401  (registers el2n, grand, forgetting, uncertainty)
from datadistill.data import DatasetSpec, LabelledImages
from datadistill.errors import ConfigError, ScoresFileError, UnknownNameError
from datadistill.io import SyntheticSet, save_synthetic_set
from datadistill.methods import METHODS
from datadistill.methods.difficulty import DifficultyConfig
from datadistill.models import build_model
from datadistill.runtime import make_generator
from datadistill.selection import (SCORES, DifficultyScores, ScoreSettings, compute_scores, el2n, forgetting_events,
                                   grand, load_scores, save_scores, uncertainty)
from datadistill.selection.difficulty import FORMAT, train_scoring_network
from helpers import TINY_MODEL, make_distiller, make_tiny_dataset

CPU = torch.device("cpu")
LN3 = math.log(3.0)
SPEC8 = DatasetSpec(name="tiny8", channels=1, image_size=(8, 8), class_names=("a", "b", "c"),
                    mean=(0.5,), std=(0.25,), dsa_strategy="color_crop_cutout_scale_rotate")


@pytest.fixture
def data8(tiny_model):
    """30 images 1×8×8 (10 per class, classes interleaved) and the tiny width-8 ConvNet registered."""
    return make_tiny_dataset(per_class=10, test_size=3, spec=SPEC8)


def fast_settings(**kw):
    return ScoreSettings(**{"model": TINY_MODEL, "num_networks": 2, "epochs": 1, "batch_size": 8, **kw})


# --------------------------------------------------------------------------- EL2N and uncertainty by hand
def test_el2n_hand_values():
    logits = torch.tensor([[0.0, 0.0], [LN3, 0.0], [LN3, 0.0], [100.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 0])
    # softmax: (.5, .5) → ‖(−.5, .5)‖ = √.5; (.75, .25) → ‖(−.25, .25)‖ = √.125 (label 0),
    # ‖(.75, −.75)‖ = √1.125 (label 1); a confident correct prediction → 0
    expected = torch.tensor([math.sqrt(0.5), math.sqrt(0.125), math.sqrt(1.125), 0.0])
    out = el2n(logits, labels)
    assert out.dtype == torch.float32 and out.shape == (4,)
    assert torch.allclose(out, expected, atol=1e-6)
    # 3 classes, uniform prediction: ‖(1/3, 1/3, −2/3)‖ = √6 / 3
    assert el2n(torch.zeros(1, 3), torch.tensor([2])).item() == pytest.approx(math.sqrt(6) / 3, abs=1e-6)
    # confidently wrong: ‖(1, −1)‖ = √2, the maximum
    assert el2n(torch.tensor([[100.0, 0.0]]), torch.tensor([1])).item() == pytest.approx(math.sqrt(2), abs=1e-6)


def test_uncertainty_hand_values():
    logits = torch.tensor([[0.0, 0.0], [LN3, 0.0], [0.0, LN3], [100.0, 0.0]])
    out = uncertainty(logits)
    assert torch.allclose(out, torch.tensor([0.5, 0.25, 0.25, 0.0]), atol=1e-6)
    assert uncertainty(torch.zeros(2, 3)).tolist() == pytest.approx([2 / 3, 2 / 3], abs=1e-6)


# --------------------------------------------------------------------------- GraNd
def _closed_form_grand(layer: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # CE(Wx + b, y): ∂/∂W = (p − e_y) xᵀ, ∂/∂b = p − e_y, so ‖∇‖² = ‖p − e_y‖² (‖x‖² + 1)
    with torch.no_grad():
        r = torch.softmax(layer(x), dim=1) - F.one_hot(y, layer.out_features).float()
    return r.norm(dim=1) * (x.pow(2).sum(dim=1) + 1).sqrt()


def test_grand_on_a_linear_model_matches_the_closed_form():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    x = torch.randn(7, 5)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 2])
    expected = _closed_form_grand(layer, x, y)
    for chunk in (1, 3, 64):
        out = grand(layer, x, y, chunk=chunk)
        assert out.dtype == torch.float32 and out.shape == (7,)
        assert torch.allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in layer.parameters())  # no side effects on the network


def test_grand_with_flatten_and_image_inputs():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    x = torch.randn(3, 1, 2, 2)
    y = torch.tensor([1, 0, 1])
    assert torch.allclose(grand(net, x, y), _closed_form_grand(net[1], x.flatten(1), y), rtol=1e-5, atol=1e-6)


def test_grand_on_convnet_matches_per_sample_autograd(tiny_model):
    torch.manual_seed(2)
    net = build_model(TINY_MODEL, 1, 3, (8, 8)).eval()
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 1])
    expected = []
    for i in range(4):
        grads = torch.autograd.grad(F.cross_entropy(net(x[i:i + 1]), y[i:i + 1]), list(net.parameters()))
        expected.append(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
    assert torch.allclose(grand(net, x, y, chunk=3), torch.stack(expected), rtol=1e-4, atol=1e-6)


def test_grand_rejects_bad_arguments():
    layer = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="chunk"):
        grand(layer, torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), chunk=0)
    with pytest.raises(ValueError, match="labels"):
        grand(layer, torch.zeros(2, 2), torch.zeros(1, dtype=torch.long))


# --------------------------------------------------------------------------- forgetting
def test_forgetting_events_hand_histories():
    hist = torch.tensor([
        # samples: always right, flip-flop, never learned, learned then forgotten, forgotten then relearned
        [1, 1, 0, 0, 1],
        [1, 0, 0, 1, 0],
        [1, 1, 0, 1, 0],
        [1, 0, 0, 0, 1],
    ], dtype=torch.bool)
    out = forgetting_events(hist)
    assert out.dtype == torch.float32
    assert out.tolist() == [0.0, 2.0, 5.0, 1.0, 1.0]  # never learned: T + 1 = 5
    assert forgetting_events(hist, never_learned=99).tolist() == [0.0, 2.0, 99.0, 1.0, 1.0]


def test_forgetting_events_per_sample_sequences():
    seqs = [[True, False, True], [], [False], [True], [False, True, False, True, False]]
    # longest sequence T = 5 → never learned (the empty and the all-wrong one) get 6
    assert forgetting_events(seqs).tolist() == [1.0, 6.0, 6.0, 0.0, 2.0]
    # the tensor and the sequence forms agree
    hist = torch.tensor([[1, 0], [0, 0], [1, 1]], dtype=torch.bool)
    assert forgetting_events(hist).tolist() == forgetting_events(hist.T.tolist()).tolist()
    with pytest.raises(ValueError, match="T, N"):
        forgetting_events(torch.zeros(3, dtype=torch.bool))


# --------------------------------------------------------------------------- orderings and selection
def _toy_scores():
    values = torch.tensor([0.5, 0.1, 0.5, 0.3, 0.1, 0.9])
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    return DifficultyScores("el2n", values, labels, {})


def test_order_by_class_is_ascending_and_stable():
    orders = _toy_scores().order_by_class(3)
    # class 0: indices 0, 2, 5 with scores .5, .5, .9 (tie → lower index first); class 1: 1 (.1), 4 (.1), 3 (.3)
    assert [o.tolist() for o in orders] == [[0, 2, 5], [1, 4, 3], []]
    assert all(o.dtype == torch.int64 for o in orders)
    with pytest.raises(ConfigError, match="num_classes"):
        _toy_scores().order_by_class(1)


def test_select_hardest_and_easiest():
    s = _toy_scores()
    assert s.select(2, 2, "hardest").tolist() == [2, 5, 4, 3]
    assert s.select(2, 2, "easiest").tolist() == [0, 2, 1, 4]
    assert s.select(1, 2).tolist() == [5, 3]  # hardest by default
    assert s.select(3, 2, "easiest").tolist() == [0, 2, 5, 1, 4, 3]
    with pytest.raises(ConfigError, match="ipc 4"):
        s.select(4, 2)
    with pytest.raises(ConfigError, match="ipc 0"):
        s.select(0, 2)
    with pytest.raises(ConfigError, match="ipc 1 .* 0"):
        s.select(1, 3)  # class 2 has no image
    with pytest.raises(ConfigError, match="keep='middle'.*hardest, easiest"):
        s.select(1, 2, "middle")


def test_difficulty_scores_checks_shapes():
    with pytest.raises(ValueError, match="same length"):
        DifficultyScores("el2n", torch.zeros(3), torch.zeros(2, dtype=torch.long))


# --------------------------------------------------------------------------- settings
@pytest.mark.parametrize("field, value", [
    ("num_networks", 0), ("epochs", -1), ("lr", 0.0), ("momentum", 1.0), ("weight_decay", -1e-4),
    ("batch_size", 0), ("seed", -1), ("grad_chunk", 0),
])
def test_score_settings_reject_bad_values(field, value):
    with pytest.raises(ConfigError, match=rf"{field} = {value!r}.*expected"):
        ScoreSettings(**{field: value})


def test_score_settings_model_and_dsa_checks():
    assert ScoreSettings().model == "convnet" and ScoreSettings(epochs=0).epochs == 0
    with pytest.raises(UnknownNameError, match="nosuchnet"):
        ScoreSettings(model="nosuchnet")
    with pytest.raises(ConfigError, match="wobble"):
        ScoreSettings(dsa_strategy="color_wobble")
    ScoreSettings(dsa_strategy="none")


# --------------------------------------------------------------------------- files
def test_save_load_round_trip(tmp_path):
    s = DifficultyScores("grand", torch.tensor([0.3, 0.1, 0.2]), torch.tensor([0, 1, 0]),
                         {"dataset": "tiny", "settings": {"epochs": 2}})
    path = save_scores(s, tmp_path / "sub" / "scores.safetensors")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["scores.safetensors"]  # no temp left
    back = load_scores(path)
    assert back.score == "grand"
    assert torch.equal(back.values, s.values) and back.values.dtype == torch.float32
    assert torch.equal(back.labels, s.labels) and back.labels.dtype == torch.int64
    assert back.metadata["dataset"] == "tiny" and back.metadata["settings"] == {"epochs": 2}
    assert back.metadata["format"] == FORMAT and back.metadata["format_version"] == 1


def test_load_scores_error_paths(tmp_path):
    with pytest.raises(ScoresFileError, match="does not exist"):
        load_scores(tmp_path / "missing.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00\x01not a safetensors file at all")
    with pytest.raises(ScoresFileError, match="not a readable"):
        load_scores(corrupt)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, str(foreign))
    with pytest.raises(ScoresFileError, match="no 'datadistill' metadata"):
        load_scores(foreign)
    syn = tmp_path / "syn.safetensors"
    save_synthetic_set(SyntheticSet(torch.zeros(1, 1, 2, 2), torch.zeros(1, dtype=torch.long), metadata={
        "dataset": "tiny", "channels": 1, "image_size": [2, 2], "mean": [0.5], "std": [0.25], "method": "dm",
        "ipc": 1}), syn)
    with pytest.raises(ScoresFileError, match="datadistill.synthetic_set"):
        load_scores(syn)

    def write(name, tensors, meta):
        p = tmp_path / name
        save_file(tensors, str(p), metadata={"datadistill": meta if isinstance(meta, str) else json.dumps(meta)})
        return p

    good = {"values": torch.zeros(2), "labels": torch.zeros(2, dtype=torch.long)}
    base = {"format": FORMAT, "format_version": 1, "score": "el2n"}
    with pytest.raises(ScoresFileError, match="not valid JSON"):
        load_scores(write("badjson.safetensors", good, "{oops"))
    with pytest.raises(ScoresFileError, match="format version 2"):
        load_scores(write("newer.safetensors", good, {**base, "format_version": 2}))
    with pytest.raises(ScoresFileError, match="missing tensor 'labels'"):
        load_scores(write("nolabels.safetensors", {"values": torch.zeros(2)}, base))
    with pytest.raises(ScoresFileError, match="score 'loss'"):
        load_scores(write("badscore.safetensors", good, {**base, "score": "loss"}))
    with pytest.raises(ScoresFileError, match="same length"):
        load_scores(write("shapes.safetensors", {"values": torch.zeros(3), "labels": torch.zeros(2, dtype=torch.long)},
                          base))


# --------------------------------------------------------------------------- compute_scores
@pytest.mark.parametrize("score", SCORES)
def test_compute_scores_shapes_ranges_and_metadata(score, data8):
    epochs = {"forgetting": 2, "grand": 0}.get(score, 1)  # GraNd at initialisation, as in Paul et al.
    settings = fast_settings(epochs=epochs)
    rng = torch.get_rng_state()
    calls = []
    s = compute_scores(score, data8.train, SPEC8, settings, CPU, progress=lambda k, m: calls.append(k))
    assert torch.equal(torch.get_rng_state(), rng)  # the global random stream is left as it was
    assert calls == [0, 1]
    assert s.score == score and s.values.shape == (30,) and s.values.dtype == torch.float32
    assert torch.isfinite(s.values).all() and (s.values >= 0).all()
    assert torch.equal(s.labels, data8.train.labels)
    if score == "el2n":
        assert (s.values <= math.sqrt(2) + 1e-6).all()
    if score == "uncertainty":
        assert (s.values <= 2 / 3 + 1e-6).all()
    if score == "forgetting":  # averages of two networks' counts in {0, 1, 3 (never learned: epochs + 1)}
        assert set((2 * s.values).round().tolist()) <= {0, 1, 2, 3, 4, 6}
    meta = s.metadata
    assert meta["dataset"] == "tiny8" and meta["score"] == score and meta["num_images"] == 30
    assert meta["settings"]["dsa_strategy"] == SPEC8.dsa_strategy and meta["settings"]["model"] == TINY_MODEL
    assert "package_version" in meta
    json.dumps(meta)


def test_compute_scores_repeat_with_the_seed_and_average_networks(data8):
    a = compute_scores("el2n", data8.train, SPEC8, fast_settings(seed=3), CPU)
    b = compute_scores("el2n", data8.train, SPEC8, fast_settings(seed=3), CPU)
    assert torch.equal(a.values, b.values)
    c = compute_scores("el2n", data8.train, SPEC8, fast_settings(seed=4), CPU)
    assert not torch.equal(a.values, c.values)
    # the two-network score is the mean of network 3 and network 4 alone
    n3 = compute_scores("el2n", data8.train, SPEC8, fast_settings(seed=3, num_networks=1), CPU)
    n4 = compute_scores("el2n", data8.train, SPEC8, fast_settings(seed=4, num_networks=1), CPU)
    assert torch.allclose(a.values, (n3.values + n4.values) / 2, atol=1e-6)


def test_compute_scores_el2n_is_el2n_of_the_trained_network(data8):
    settings = fast_settings(num_networks=1, seed=5, dsa_strategy="none")
    torch.manual_seed(5)
    net = build_model(TINY_MODEL, 1, 3, (8, 8))
    train_scoring_network(net, data8.train.images, data8.train.labels, settings.recipe, make_generator(5))
    net.eval()
    with torch.no_grad():
        expected = el2n(net(data8.train.images), data8.train.labels)
    got = compute_scores("el2n", data8.train, SPEC8, settings, CPU)
    assert torch.allclose(got.values, expected, atol=1e-6)


def test_compute_scores_errors(data8):
    with pytest.raises(ConfigError, match="unknown difficulty score 'loss'"):
        compute_scores("loss", data8.train, SPEC8, fast_settings(), CPU)
    with pytest.raises(ConfigError, match="epochs"):
        compute_scores("forgetting", data8.train, SPEC8, fast_settings(epochs=0), CPU)
    bad = LabelledImages(data8.train.images[:3], torch.tensor([0, 1, 5]))
    with pytest.raises(ConfigError, match="labels"):
        compute_scores("el2n", bad, SPEC8, fast_settings(), CPU)


def test_scores_file_round_trip_of_computed_scores(tmp_path, data8):
    s = compute_scores("uncertainty", data8.train, SPEC8, fast_settings(num_networks=1), CPU)
    back = load_scores(save_scores(s, tmp_path / "u.safetensors"))
    assert torch.equal(back.values, s.values) and back.metadata["settings"] == s.metadata["settings"]


# --------------------------------------------------------------------------- the methods
ARGS = {"score_networks": 1, "score_epochs": 1}


def _is_real_image_of_class(img, images, labels, c):
    matches = (images == img).flatten(1).all(1)
    return bool(matches.any()) and set(labels[matches].tolist()) == {c}


def test_methods_are_registered_coresets():
    for name in SCORES:
        cls = METHODS.get(name)
        assert cls.name == name and cls.learns is False and cls.config_class is DifficultyConfig


def test_el2n_method_end_to_end(data8):
    hard = make_distiller("el2n", data8, ipc=3, **ARGS)
    hard.initialise("noise")  # ignored
    assert hard.images.shape == (9, 1, 8, 8) and hard.labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    for img, c in zip(hard.images.detach(), hard.labels.tolist()):
        assert _is_real_image_of_class(img, data8.train.images, data8.train.labels, c)
    idx = hard.scores.select(3, 3, "hardest")
    assert torch.equal(hard.images.detach(), data8.train.images[idx])
    # the kept images are the highest-scored of their class
    for c in range(3):
        cls_vals = hard.scores.values[data8.train.labels == c]
        assert torch.allclose(hard.scores.values[idx[3 * c:3 * c + 3]].sort().values, cls_vals.sort().values[-3:])
    easy = make_distiller("el2n", data8, ipc=3, keep="easiest", **ARGS)
    easy.initialise()
    assert torch.equal(easy.scores.values, hard.scores.values)  # same run seed → same scores
    assert not torch.equal(easy.images, hard.images)
    with pytest.raises(RuntimeError):
        hard.fit(1)
    assert hard.iteration == 0


def test_method_reuses_a_scores_file(tmp_path, data8):
    d = make_distiller("el2n", data8, ipc=2, **ARGS)
    d.initialise()
    path = save_scores(d.scores, tmp_path / "el2n.safetensors")
    again = make_distiller("el2n", data8, ipc=2, scores_file=str(path), seed=7)
    again.initialise()
    assert torch.equal(again.images, d.images)
    with pytest.raises(ConfigError, match="holds el2n scores, not grand"):
        make_distiller("grand", data8, ipc=2, scores_file=str(path))
    short = DifficultyScores("el2n", d.scores.values[:20], d.scores.labels[:20], {})
    short_path = save_scores(short, tmp_path / "short.safetensors")
    with pytest.raises(ConfigError, match="scores 20 images but the training set has 30"):
        make_distiller("el2n", data8, ipc=2, scores_file=str(short_path))
    shuffled = DifficultyScores("el2n", d.scores.values, d.scores.labels.roll(1), {})
    with pytest.raises(ConfigError, match="labels differ"):
        make_distiller("el2n", data8, ipc=2, scores_file=str(save_scores(shuffled, tmp_path / "s.safetensors")))
    with pytest.raises(ScoresFileError, match="does not exist"):
        make_distiller("el2n", data8, ipc=2, scores_file=str(tmp_path / "nope.safetensors"))


def test_forgetting_method_selects(data8):
    d = make_distiller("forgetting", data8, ipc=1, score_networks=1, score_epochs=2)
    d.initialise()
    assert d.images.shape == (3, 1, 8, 8) and d.scores.score == "forgetting"
    with pytest.raises(ConfigError, match="score_epochs"):
        make_distiller("forgetting", data8, ipc=1, score_epochs=0)


def test_difficulty_config_validation():
    cfg = DifficultyConfig.from_dict({"keep": "easiest", "score_networks": "2", "score_epochs": "0"})
    assert cfg.keep == "easiest" and cfg.score_networks == 2 and cfg.score_epochs == 0
    with pytest.raises(ConfigError, match="keep"):
        DifficultyConfig(keep="middle")
    with pytest.raises(ConfigError, match="score_networks"):
        DifficultyConfig(score_networks=0)
    with pytest.raises(ConfigError, match="score_epochs"):
        DifficultyConfig(score_epochs=-1)
