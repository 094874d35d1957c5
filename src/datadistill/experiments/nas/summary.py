"""How well a ranking on the synthetic set matches the ranking on real data: Spearman's ρ over all
candidates and the top k, agreement of the best, ranks and regret."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from datadistill.errors import ConfigError
from datadistill.experiments.nas.space import integer_at_least

TOP_K = (5, 10, 20)


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's ρ (average ranks for ties), None when undefined (< 2 items or a constant side)."""
    from scipy.stats import spearmanr

    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def _check_accuracies(name: str, values: Sequence[float]) -> list[float]:
    out = []
    for k, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{name}[{k}] = {v!r} is invalid: expected a finite accuracy")
        out.append(float(v))
    return out


def summarise(synthetic: Sequence[float], real: Sequence[float], top: Sequence[int] = TOP_K) -> dict[str, Any]:
    """How well the synthetic ranking matches the real one.

    Rank 1 is the highest accuracy; ranks are competition ranks (ties share the best rank), so a
    synthetic-best tied with the real best has real rank 1. The synthetic-best (and the real best)
    is the first candidate, in input order, with the highest accuracy: what a search would pick.

    Args:
        synthetic: per candidate, the validation accuracy (%) after training on the synthetic set.
        real: per candidate (same order), the validation accuracy (%) after training on real data.
        top: sizes k of the top-k subsets (the k best by ``real``, ties broken by input order).

    Returns:
        ``candidates`` (n); ``spearman``: ``{"all": ρ, "top5": ρ, …}`` (``scipy.stats.spearmanr``,
        average ranks for ties; None when undefined: k > n, fewer than 2 items, or one side
        constant); ``spearman_pvalue`` (two-sided, over all; None when ρ is undefined);
        ``synthetic_best`` and ``real_best`` (positions); ``best_agrees`` (the synthetic-best has
        real rank 1); ``synthetic_best_real_rank``; ``real_best_synthetic_rank``; ``regret`` (real
        accuracy of the real best minus that of the synthetic-best, percentage points).

    Raises:
        ConfigError: the lists differ in length, are empty, or hold a non-finite value; a k < 1.
    """
    from scipy.stats import rankdata, spearmanr

    syn = _check_accuracies("synthetic", synthetic)
    rea = _check_accuracies("real", real)
    if len(syn) != len(rea):
        raise ConfigError(f"{len(syn)} synthetic accuracies but {len(rea)} real ones: expected one of each "
                          "per candidate")
    if not syn:
        raise ConfigError("no candidates: expected at least one synthetic and one real accuracy")
    for k in top:
        integer_at_least("top", k, 1, "")
    n = len(syn)
    by_real = sorted(range(n), key=lambda i: (-rea[i], i))
    rho: dict[str, float | None] = {"all": _spearman(syn, rea)}
    for k in top:
        chosen = by_real[:k]
        rho[f"top{k}"] = _spearman([syn[i] for i in chosen], [rea[i] for i in chosen]) if k <= n else None
    syn_best = max(range(n), key=lambda i: (syn[i], -i))
    real_best = by_real[0]
    real_rank = rankdata([-v for v in rea], method="min")
    syn_rank = rankdata([-v for v in syn], method="min")
    pvalue = float(spearmanr(syn, rea).pvalue) if rho["all"] is not None and n > 2 else None
    return {"candidates": n, "spearman": rho, "spearman_pvalue": pvalue, "synthetic_best": syn_best,
            "real_best": real_best, "best_agrees": bool(real_rank[syn_best] == 1),
            "synthetic_best_real_rank": int(real_rank[syn_best]), "real_best_synthetic_rank": int(syn_rank[real_best]),
            "regret": rea[real_best] - rea[syn_best]}


__all__ = ["TOP_K", "summarise"]
