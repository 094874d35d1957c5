"""The DD-Ranking scores (issue #22): the formulas on hand values (fractions, not percent), the
validation split and the random subsets R (class counts of S, fresh per run, the seed scheme), the plan
of trainings, and the lr search that never reads the test set."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from datadistill.data import LabelledImages
from datadistill.errors import ConfigError
from datadistill.evaluation import EvalSettings
from datadistill.evaluation.ranking import (augmentation_robust_score, check_fraction, hard_label_recovery,
                                            improvement_over_random, label_robust_score, mode_scores, robust_score)
from datadistill.evaluation.ranking_data import (RUN_SUBSET_STREAM, Teacher, draw_subset, stream_rng, stream_seed,
                                                 validation_split)
from datadistill.evaluation.ranking_protocol import RankingSettings, plan_ranking, score_synthetic_set
from datadistill.experiments.seeds import derived_rng, derived_seed
from datadistill.io.synthetic_set import SyntheticSet
from helpers import DSA_ON, tiny_builder

CPU = torch.device("cpu")
E = math.e
NEUTRAL = (1 - math.exp(-1)) / (E - math.exp(-1))


# ------------------------------------------------------------------------------------------ formulas
def test_zero_ior_and_hlr_give_the_neutral_score():
    assert label_robust_score(0.0, 0.0) == pytest.approx(NEUTRAL)
    assert augmentation_robust_score(0.7, 0.7, 0.4, 0.4) == pytest.approx(NEUTRAL)
    assert NEUTRAL == pytest.approx(0.2689, abs=1e-4)


def test_scores_on_hand_values():
    hlr = hard_label_recovery(0.99, 0.90)
    ior = improvement_over_random(0.90, 0.80)
    assert (hlr, ior) == (pytest.approx(0.09), pytest.approx(0.10))
    alpha = 0.5 * 0.10 - 0.5 * 0.09
    assert label_robust_score(ior, hlr) == pytest.approx((math.exp(alpha) - math.exp(-1)) / (E - math.exp(-1)))
    beta = 0.5 * (0.9 - 0.8) + 0.5 * (0.7 - 0.75)
    assert augmentation_robust_score(0.9, 0.8, 0.7, 0.75) == pytest.approx(
        (math.exp(beta) - math.exp(-1)) / (E - math.exp(-1)))
    # the ends of the range, and a weight that ignores HLR
    assert label_robust_score(1.0, -1.0) == pytest.approx(1.0)
    assert label_robust_score(-1.0, 1.0) == pytest.approx(0.0)
    assert label_robust_score(0.2, 0.9, weight=1.0) == pytest.approx(robust_score(0.2))


def test_lrs_is_increasing_in_ior_and_decreasing_in_hlr():
    steps = [-0.5, -0.1, 0.0, 0.05, 0.3, 0.8]
    by_ior = [label_robust_score(x, 0.1) for x in steps]
    by_hlr = [label_robust_score(0.1, x) for x in steps]
    assert all(a < b for a, b in zip(by_ior, by_ior[1:]))
    assert all(a > b for a, b in zip(by_hlr, by_hlr[1:]))
    assert all(0.0 <= v <= 1.0 for v in by_ior + by_hlr)


@pytest.mark.parametrize("call", [
    lambda: hard_label_recovery(99.1, 0.95),                 # Acc(real) in percent
    lambda: improvement_over_random(0.9, 80.0),              # Acc(R) in percent
    lambda: label_robust_score(5.0, 1.2),                    # differences of percent
    lambda: augmentation_robust_score(90.0, 80.0, 70.0, 60.0),
    lambda: check_fraction("acc", float("nan")),
    lambda: label_robust_score(0.1, 0.1, weight=1.5),
])
def test_percent_and_out_of_range_inputs_are_refused(call):
    with pytest.raises(ConfigError, match="fraction|weight"):
        call()


def test_mode_scores_pair_the_runs():
    acc = {"S/hard/aug": [0.9, 0.8], "R/hard/aug": [0.7, 0.8], "S/hard/no_aug": [0.6, 0.5],
           "R/hard/no_aug": [0.5, 0.5]}
    s = mode_scores(acc, "hard", real_hard=0.95)
    assert s["hlr"] == pytest.approx([0.05, 0.15])
    assert s["ior"] == pytest.approx([0.2, 0.0])
    assert s["lrs"][1] == pytest.approx(label_robust_score(0.0, 0.15))
    assert s["ars"][0] == pytest.approx(augmentation_robust_score(0.9, 0.7, 0.6, 0.5))
    assert s["ior_mean"] == pytest.approx(0.1) and s["ior_std"] == pytest.approx(0.1)


# ------------------------------------------------------------------------------- split and subsets
def labels_of(per_class=(12, 9, 15)):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]


def test_validation_split_is_balanced_disjoint_and_seeded():
    labels = labels_of()
    pool, val = validation_split(labels, 3, 7, seed=5)
    assert torch.bincount(labels[val], minlength=3).tolist() == [2, 2, 2]  # 7 // 3 per class
    assert set(pool.tolist()).isdisjoint(val.tolist()) and len(pool) + len(val) == len(labels)
    again, _ = validation_split(labels, 3, 7, seed=5)
    other = validation_split(labels, 3, 7, seed=6)[1]
    assert torch.equal(again, pool) and not torch.equal(other, val)
    with pytest.raises(ConfigError, match="class 1 has 9 training images"):
        validation_split(labels, 3, 9, seed=5, reserve=[1, 7, 1])


def test_random_subsets_have_the_class_counts_of_s_and_differ_between_runs():
    labels = labels_of()
    pool, val = validation_split(labels, 3, 6, seed=0)
    counts = [3, 0, 4]
    runs = [draw_subset(pool, labels, counts, stream_rng(0, RUN_SUBSET_STREAM, k)) for k in range(3)]
    for r in runs:
        assert torch.bincount(labels[r], minlength=3).tolist() == counts
        assert len(set(r.tolist())) == len(r) and set(r.tolist()) <= set(pool.tolist())
    assert len({tuple(r.tolist()) for r in runs}) == 3
    assert torch.equal(runs[1], draw_subset(pool, labels, counts, stream_rng(0, RUN_SUBSET_STREAM, 1)))
    with pytest.raises(ConfigError, match="cannot draw 20 random images of class 0"):
        draw_subset(pool, labels, [20, 0, 0], stream_rng(0, RUN_SUBSET_STREAM, 0))


def test_the_draws_follow_the_experiments_seed_scheme():
    assert stream_seed(7, 4, 2) == derived_seed(7, 4, 2)
    assert stream_rng(7, RUN_SUBSET_STREAM, 1).integers(0, 1 << 30, 5).tolist() == \
        derived_rng(7, RUN_SUBSET_STREAM, 1).integers(0, 1 << 30, 5).tolist()


def test_teacher_soft_labels_are_its_logits():
    torch.manual_seed(0)
    net = tiny_builder(1, 3, (28, 28)).eval()
    x = torch.randn(7, 1, 28, 28)
    assert torch.allclose(Teacher(net).soft_labels(x, CPU, batch_size=3), net(x), atol=1e-6)


# ---------------------------------------------------------------------------------------- the plan
def hard_set(data, per_class=2, lr=None):
    idx = torch.cat([torch.nonzero(data.train.labels == c).flatten()[:per_class] for c in range(3)])
    return SyntheticSet(data.train.images[idx].clone(), data.train.labels[idx].clone(), learned_lr=lr,
                        metadata={"dataset": "tiny", "num_classes": 3})


def protocol(model, **kw):
    return EvalSettings(**{"model": model, "num_eval": 2, "epochs": 1, "dsa_strategy": DSA_ON, **kw})


def test_plan_counts_modes_and_lr_sources(tiny_dataset, tiny_model):
    syn = hard_set(tiny_dataset)
    plan = plan_ranking(syn, protocol(tiny_model), RankingSettings(lr_grid=(0.01, 0.1), select_networks=3), False)
    assert plan.modes == ["hard"] and len(plan.trainings) == 4
    assert plan.selection_trainings == 4 * 2 * 3 and plan.final_trainings == 4 * 2
    soft = dataclasses.replace(syn, labels=torch.nn.functional.one_hot(syn.labels, 3).float(), learned_lr=0.02)
    plan = plan_ranking(soft, protocol(tiny_model), RankingSettings(lr_grid=(0.01, 0.1)), True)
    assert plan.modes == ["hard", "soft"] and len(plan.trainings) == 8
    assert plan.lr_source["S/soft/aug"] == plan.lr_source["S/soft/no_aug"] == "learned"
    assert plan.lr_source["S/hard/aug"] == plan.lr_source["R/soft/aug"] == "grid"
    assert plan.selection_trainings == 6 * 2
    fixed = plan_ranking(syn, protocol(tiny_model), RankingSettings(lr_grid=(0.03,)), False)
    assert fixed.selection_trainings == 0 and set(fixed.lr_source.values()) == {"fixed"}
    with pytest.raises(ConfigError, match="teacher"):
        plan_ranking(soft, protocol(tiny_model), RankingSettings(), False)
    with pytest.raises(ConfigError, match="augmentation"):
        plan_ranking(syn, protocol(tiny_model, dsa_strategy="none"), RankingSettings(), False)
    with pytest.raises(ConfigError, match="lr_grid"):
        RankingSettings(lr_grid=(0.01, -1.0))


# ------------------------------------------------------------------------- the search and the runs
class LoudTest(LabelledImages):
    """A test set that fails loudly when read before the lr search is over, and counts its reads."""

    def __init__(self, base, state):
        super().__init__(base.images, base.labels)
        self.state = state

    def batches(self, order=None, batch_size=256):
        if self.state["selected"] < self.state["selection_total"]:
            raise AssertionError(f"the test set was read during the lr search "
                                 f"({self.state['selected']} of {self.state['selection_total']} networks)")
        self.state["reads"] += 1
        yield from super().batches(order, batch_size)


def test_lr_search_never_reads_the_test_set_and_runs_draw_fresh_subsets(tiny_dataset, tiny_model):
    syn = hard_set(tiny_dataset)
    settings = RankingSettings(lr_grid=(0.001, 0.1), select_networks=2, val_size=6)
    eval_settings = protocol(tiny_model, num_eval=3)
    plan = plan_ranking(syn, eval_settings, settings, False)
    state = {"selected": 0, "selection_total": plan.selection_trainings, "reads": 0}
    phases = []

    def progress(step):
        phases.append(step.phase)
        state["selected"] += step.phase == "select"

    result = score_synthetic_set(syn, tiny_dataset.train, LoudTest(tiny_dataset.test, state), eval_settings,
                                 settings, CPU, real_hard_accuracy=0.9, seed=3, progress=progress)
    assert phases == ["select"] * plan.selection_trainings + ["final"] * plan.final_trainings
    assert state["reads"] == plan.final_trainings == result.trainings - plan.selection_trainings
    # R: the class counts of S, outside the validation split, a fresh draw in each run
    _, val = validation_split(tiny_dataset.train.labels, 3, 6, seed=3, reserve=[2, 2, 2])
    subsets = [torch.tensor(s) for s in result.random_subsets]
    assert len({tuple(s.tolist()) for s in subsets}) == 3
    for s in subsets:
        assert torch.bincount(tiny_dataset.train.labels[s], minlength=3).tolist() == [2, 2, 2]
        assert set(s.tolist()).isdisjoint(val.tolist())
    # the chosen lr is the best on validation (ties: the smaller), reported with every accuracy
    for name, lr in result.lr.items():
        scores = lr["validation_accuracy"]
        assert lr["chosen"] == settings.lr_grid[scores.index(max(scores))]
    d = result.as_dict()
    assert d["accuracy_unit"] == "fraction" and d["primary_mode"] == "hard"
    assert all(0 <= a <= 1 for accs in d["accuracies"].values() for a in accs)
    s = d["scores"]["hard"]
    assert s["lrs"][0] == pytest.approx(label_robust_score(
        d["accuracies"]["S/hard/aug"][0] - d["accuracies"]["R/hard/aug"][0], 0.9 - d["accuracies"]["S/hard/aug"][0]))


def test_a_percent_baseline_accuracy_is_refused_before_any_training(tiny_dataset, tiny_model):
    trained = []
    with pytest.raises(ConfigError, match="fraction"):
        score_synthetic_set(hard_set(tiny_dataset), tiny_dataset.train, tiny_dataset.test, protocol(tiny_model),
                            RankingSettings(val_size=6), CPU, real_hard_accuracy=97.5, progress=trained.append)
    assert trained == []


def test_three_channels_a_zca_set_and_soft_labels_from_a_teacher(tiny_model):
    """Any number of channels: a 3-channel 12×12 set, ZCA-whitened, scored in both label modes; the
    teacher sees R's images unwhitened, the networks train and test in the set's whitened space."""
    from datadistill.data import DatasetSpec
    from datadistill.preprocess import ZCA
    from helpers import make_tiny_dataset

    spec = DatasetSpec(name="rgb", channels=3, image_size=(12, 12), class_names=("a", "b", "c"),
                       mean=(0.5,) * 3, std=(0.25,) * 3, dsa_strategy=DSA_ON)
    data = make_tiny_dataset(per_class=8, test_size=9, spec=spec)
    zca = ZCA.fit(data.train.images, eps=0.1)
    syn = hard_set(data, per_class=1)
    syn = dataclasses.replace(syn, images=zca.whiten(syn.images), zca=zca,
                              metadata={"dataset": "rgb", "num_classes": 3})
    torch.manual_seed(0)
    teacher = Teacher(tiny_builder(3, 3, (12, 12)).eval())
    result = score_synthetic_set(syn, data.train, data.test, protocol(tiny_model), RankingSettings(
        lr_grid=(0.01,), val_size=3, labels="both"), CPU, real_hard_accuracy=0.5, teacher=teacher)
    assert result.modes == ["hard", "soft"] and len(result.accuracies) == 8
    assert all(0 <= a <= 1 for accs in result.accuracies.values() for a in accs)
    assert 0 <= result.scores["soft"]["lrs_mean"] <= 1
