"""The DD-Ranking scores of a synthetic set: the maths (pure functions of accuracies).

DD-Ranking (Li et al., "DD-Ranking: Rethinking the Evaluation of Dataset Distillation", arXiv
2505.13300; official code NUS-HPC-AI-Lab/DD-Ranking, ``ddranking/metrics/soft_label.py``,
``hard_label.py``, ``aug_robust.py``) separates what the synthetic images are worth from the choices
around them (soft labels, augmentation) with two scores, each in [0, 1], higher is better:

* **HLR**, hard-label recovery: ``Acc(real, hard) − Acc(S, hard)``, the accuracy the set loses against
  the whole real training set when both train with hard labels (lower is better);
* **IOR**, improvement over random: ``Acc(S, its own labels and augmentation) − Acc(R, the same)``,
  R a random real subset with the class counts of S;
* **LRS**, label-robust score: ``α = w·IOR − (1 − w)·HLR``, ``LRS = (e^α − e^−1) / (e − e^−1)``,
  ``w = 0.5`` by default;
* **ARS**, augmentation-robust score: ``β = γ·(Acc(S, aug) − Acc(R, aug)) + (1 − γ)·(Acc(S, no aug) −
  Acc(R, no aug))``, normalised like α; ``γ = 0.5`` by default.

Every accuracy is a **fraction in [0, 1]**, so α and β lie in [−1, 1] and the scores in [0, 1]
(α = −1 gives 0, α = 1 gives 1, α = 0 gives (1 − e^−1)/(e − e^−1) ≈ 0.269). DD-Ranking's code feeds
accuracies in percent into the exponential, where the scores leave [0, 1]; here a number outside
[0, 1] is refused as an accuracy (an accuracy in percent above 1 % cannot pass), and a difference
outside [−1, 1] is refused as a difference of fractions.
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from datadistill.errors import ConfigError

DEFAULT_LRS_WEIGHT = 0.5
"""w of LRS (DD-Ranking's ``lrs_lambda``)."""
DEFAULT_ARS_WEIGHT = 0.5
"""γ of ARS (DD-Ranking's ``ars_lambda``)."""


def _real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_fraction(name: str, value: object) -> float:
    """``value`` as a float when it is an accuracy fraction in [0, 1].

    Raises:
        ConfigError: not a finite number in [0, 1] (e.g. an accuracy in percent), naming ``name``.
    """
    if not _real(value) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} = {value!r} is not an accuracy fraction: expected a number in [0, 1] "
                          "(the scores take accuracies as fractions, not percent)")
    return float(value)


def _difference(name: str, value: object) -> float:
    if not _real(value) or not -1.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} = {value!r} is not a difference of accuracy fractions: expected a number in "
                          "[-1, 1] (the scores take accuracies as fractions, not percent)")
    return float(value)


def _weight(name: str, value: object) -> float:
    if not _real(value) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} = {value!r} is invalid: expected a weight in [0, 1]")
    return float(value)


def hard_label_recovery(real_hard: float, syn_hard: float) -> float:
    """HLR = Acc(real, hard) − Acc(S, hard), in [−1, 1]; lower is better (DD-Ranking ``soft_label.py``).

    Args:
        real_hard: test accuracy (fraction) of a network trained on the whole real training set with
            hard labels.
        syn_hard: test accuracy (fraction) of a network trained on S with hard labels.

    Raises:
        ConfigError: an accuracy outside [0, 1].
    """
    return check_fraction("Acc(real, hard)", real_hard) - check_fraction("Acc(S, hard)", syn_hard)


def improvement_over_random(syn: float, rand: float) -> float:
    """IOR = Acc(S) − Acc(R), both trained the same way (labels, augmentation), in [−1, 1].

    Raises:
        ConfigError: an accuracy outside [0, 1].
    """
    return check_fraction("Acc(S)", syn) - check_fraction("Acc(R)", rand)


def robust_score(x: float) -> float:
    """DD-Ranking's normalisation ``(e^x − e^−1) / (e − e^−1)``: [−1, 1] onto [0, 1], increasing.

    Raises:
        ConfigError: ``x`` outside [−1, 1].
    """
    x = _difference("the score's exponent", x)
    return (math.exp(x) - math.exp(-1.0)) / (math.e - math.exp(-1.0))


def label_robust_score(ior: float, hlr: float, weight: float = DEFAULT_LRS_WEIGHT) -> float:
    """LRS = robust_score(w·IOR − (1 − w)·HLR), in [0, 1]; increasing in IOR, decreasing in HLR.

    Args:
        ior: improvement over random (a difference of fractions, [−1, 1]).
        hlr: hard-label recovery ([−1, 1]).
        weight: w in [0, 1].

    Raises:
        ConfigError: a value out of its range.
    """
    w = _weight("lrs_weight", weight)
    return robust_score(w * _difference("IOR", ior) - (1.0 - w) * _difference("HLR", hlr))


def augmentation_robust_score(syn_aug: float, rand_aug: float, syn_plain: float, rand_plain: float,
                              weight: float = DEFAULT_ARS_WEIGHT) -> float:
    """ARS = robust_score(γ·(Acc(S, aug) − Acc(R, aug)) + (1 − γ)·(Acc(S, no aug) − Acc(R, no aug))).

    Args:
        syn_aug, rand_aug: test accuracies (fractions) of networks trained on S and on R with augmentation.
        syn_plain, rand_plain: the same without augmentation.
        weight: γ in [0, 1].

    Raises:
        ConfigError: an accuracy outside [0, 1] or a weight outside [0, 1].
    """
    g = _weight("ars_weight", weight)
    with_aug = check_fraction("Acc(S, aug)", syn_aug) - check_fraction("Acc(R, aug)", rand_aug)
    without = check_fraction("Acc(S, no aug)", syn_plain) - check_fraction("Acc(R, no aug)", rand_plain)
    return robust_score(g * with_aug + (1.0 - g) * without)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std (0 for one value) of per-run values, as the evaluation protocol reports."""
    vals = [float(v) for v in values]
    if not vals:
        raise ConfigError("no values to average: expected at least one run")
    return statistics.fmean(vals), statistics.pstdev(vals) if len(vals) > 1 else 0.0


def training_name(subject: str, labels: str, augment: bool) -> str:
    """The name of one training protocol of the scores: ``"S/hard/aug"``, ``"R/soft/no_aug"`` …

    Args:
        subject: ``"S"`` (the synthetic set) or ``"R"`` (a random real subset).
        labels: ``"hard"`` or ``"soft"``.
        augment: with the protocol's augmentation (DSA) or without.
    """
    return f"{subject}/{labels}/{'aug' if augment else 'no_aug'}"


def mode_scores(accuracies: Mapping[str, Sequence[float]], mode: str, real_hard: float,
                lrs_weight: float = DEFAULT_LRS_WEIGHT, ars_weight: float = DEFAULT_ARS_WEIGHT) -> dict[str, Any]:
    """HLR, IOR, LRS and ARS of each run, and their mean and population std, for one label mode.

    Run k pairs the k-th accuracy of every training protocol (S and R of run k). HLR uses
    ``S/hard/aug`` (S with hard labels under the protocol's augmentation) against ``real_hard``;
    IOR and ARS use the mode's labels: ``S/<mode>/aug`` against ``R/<mode>/aug``, and the same
    ``no_aug`` pair for ARS.

    Args:
        accuracies: test accuracies (fractions) per training name (:func:`training_name`), one per run.
        mode: ``"hard"`` or ``"soft"``.
        real_hard: Acc(real, hard), a fraction.

    Returns:
        ``{"hlr": [...], "ior": [...], "lrs": [...], "ars": [...], "hlr_mean", "hlr_std", …}``.

    Raises:
        ConfigError: an accuracy outside [0, 1]; KeyError: a protocol missing from ``accuracies``.
    """
    s_aug, r_aug = accuracies[training_name("S", mode, True)], accuracies[training_name("R", mode, True)]
    s_plain, r_plain = accuracies[training_name("S", mode, False)], accuracies[training_name("R", mode, False)]
    s_hard = accuracies[training_name("S", "hard", True)]
    out: dict[str, Any] = {"hlr": [], "ior": [], "lrs": [], "ars": []}
    for k in range(len(s_hard)):
        hlr = hard_label_recovery(real_hard, s_hard[k])
        ior = improvement_over_random(s_aug[k], r_aug[k])
        out["hlr"].append(hlr)
        out["ior"].append(ior)
        out["lrs"].append(label_robust_score(ior, hlr, lrs_weight))
        out["ars"].append(augmentation_robust_score(s_aug[k], r_aug[k], s_plain[k], r_plain[k], ars_weight))
    for key in ("hlr", "ior", "lrs", "ars"):
        out[f"{key}_mean"], out[f"{key}_std"] = mean_std(out[key])
    return out


__all__ = ["DEFAULT_ARS_WEIGHT", "DEFAULT_LRS_WEIGHT", "augmentation_robust_score", "check_fraction",
           "hard_label_recovery", "improvement_over_random", "label_robust_score", "mean_std", "mode_scores",
           "robust_score", "training_name"]
