"""Per-class and balanced accuracy: ``class_correct`` and ``per_class_percent`` on imbalanced, missing
and streamed classes, ``accuracy`` as the image-weighted mean, and EvalResult's balanced and per-class
summaries."""

from __future__ import annotations

import pytest
import torch

from datadistill.data import LabelledImages, load_dataset
from datadistill.evaluation import EvalResult
from datadistill.evaluation.protocol import accuracy, class_correct, per_class_percent

pytestmark = pytest.mark.usefixtures("isolated_cache_home")


class AlwaysZero(torch.nn.Module):
    """Predicts class 0 for every image."""

    def forward(self, x):
        n = x.shape[0]
        return torch.stack([torch.ones(n), torch.zeros(n)], dim=1)


class BrightIsOne(torch.nn.Module):
    """Predicts class 1 when the image's mean is positive."""

    def forward(self, x):
        s = x.flatten(1).mean(dim=1)
        return torch.stack([-s, s], dim=1)


def test_class_correct_on_an_imbalanced_set():
    labels = torch.tensor([0] * 7 + [1] * 3)
    images = torch.randn(10, 1, 4, 4)
    data = LabelledImages(images, labels)
    correct, count = class_correct(AlwaysZero(), data, torch.device("cpu"), 2, batch_size=3)
    assert correct.tolist() == [7, 0] and count.tolist() == [7, 3]
    rates = per_class_percent(correct, count)
    assert rates == [100.0, 0.0] and sum(rates) / 2 == 50.0
    assert accuracy(AlwaysZero(), data, torch.device("cpu")) == pytest.approx(70.0)  # the majority share
    # a net right on 2 of the 3 class-1 images and 6 of the 7 class-0 images
    signs = torch.tensor([-1, -1, -1, -1, -1, -1, 1, 1, 1, -1], dtype=torch.float32)
    data = LabelledImages(signs.view(-1, 1, 1, 1).expand(10, 1, 4, 4).clone(), labels)
    correct, count = class_correct(BrightIsOne(), data, torch.device("cpu"), 3)
    assert correct.tolist() == [6, 2, 0] and count.tolist() == [7, 3, 0]
    assert per_class_percent(correct, count) == [pytest.approx(600 / 7), pytest.approx(200 / 3), None]


def test_class_correct_on_a_streamed_set(mhist_root):
    streamed = load_dataset("mhist", mhist_root, stream="on", num_workers=0)
    correct, count = class_correct(AlwaysZero(), streamed.test, torch.device("cpu"), 2, batch_size=2)
    assert count.tolist() == [3, 2] and correct.tolist() == [3, 0]


def test_eval_result_balanced_and_per_class():
    r = EvalResult("convnet", accuracies=[70.0, 65.0], train_accuracies=[100.0, 100.0], seconds=1.0,
                   per_class_accuracies=[[100.0, None, 50.0], [80.0, None, 40.0]])
    assert r.balanced_accuracies == pytest.approx([75.0, 60.0])
    assert r.per_class_mean() == [pytest.approx(90.0), None, pytest.approx(45.0)]
    d = r.as_dict()
    assert d["balanced_accuracy_mean"] == pytest.approx(67.5) and d["balanced_accuracy_std"] == pytest.approx(7.5)
    assert d["per_class_accuracies"] == r.per_class_accuracies
    plain = EvalResult("convnet", [50.0], [50.0], 0.0)
    assert plain.balanced_accuracies == [] and plain.per_class_mean() == [] and "balanced_accuracy_mean" not in plain.as_dict()
