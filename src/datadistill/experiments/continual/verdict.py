"""The last-step verdict of a continual-learning run: does the DM or DataDAM memory beat the random
memory at the last step by more than the std over the class orders? Pure functions of the summary
rows (accuracies in percent, std the population std over the orders).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

BASELINE = "random"
FOCUS = ("dm", "datadam")
_PRETTY = {"dm": "DM", "datadam": "DataDAM", "random": "random", "dc": "DC", "dsa": "DSA", "cafe": "CAFE",
           "cafe_dsa": "CAFE+DSA"}


def beats(mean: float, std: float, baseline_mean: float, baseline_std: float) -> bool:
    """True when ``mean`` exceeds ``baseline_mean`` by more than the larger of the two stds."""
    return mean - baseline_mean > max(std, baseline_std)


def _pretty(method: str) -> str:
    return _PRETTY.get(method, method)

def last_step_verdict(summary: Mapping[str, Sequence[Mapping[str, Any]]], baseline: str = BASELINE,
                      focus: Sequence[str] = FOCUS) -> dict[str, Any]:
    """Does a memory method beat the ``baseline`` memory at the last step by more than the std over
    the class orders? Pure: reads :func:`summarize`'s rows only.

    A method beats the baseline when its last-step mean exceeds the baseline's by more than the
    larger of the two stds over the orders (:func:`beats`). Only steps both methods reached count
    (the last step of the baseline's rows).

    Args:
        summary: per method, rows with ``step``, ``classes_seen``, ``n_orders``, ``accuracy_mean``,
            ``accuracy_std``.
        baseline: the reference memory (``random``: real images, the learning methods' start).
        focus: the methods the question is about (DM and DataDAM); the answer is about them, the
            other methods are compared too.

    Returns:
        ``{"baseline", "focus", "step", "classes_seen", "n_orders", "comparisons": [{"method",
        "mean", "std", "baseline_mean", "baseline_std", "margin", "threshold", "beats"}, …],
        "answer": True | False | None, "text": one paragraph of markdown}``; ``answer`` is None when
        the baseline or every focus method is missing.
    """
    names = " or ".join(f"the {_pretty(m)}" for m in focus) + " memory"
    result: dict[str, Any] = {"baseline": baseline, "focus": list(focus), "step": None, "classes_seen": None,
                              "n_orders": None, "comparisons": [], "answer": None}
    if not summary.get(baseline):
        result["text"] = (f"**Last-step verdict: not available** — the {baseline} memory was not run, so "
                          f"{names} cannot be compared with it (add {baseline} to memory_methods).")
        return result
    last = max(summary[baseline], key=lambda r: r["step"])
    result.update(step=last["step"], classes_seen=last.get("classes_seen"), n_orders=last.get("n_orders"))
    for method, rows in summary.items():
        if method == baseline:
            continue
        row = next((r for r in rows if r["step"] == last["step"]), None)
        if row is None:
            continue
        margin = row["accuracy_mean"] - last["accuracy_mean"]
        threshold = max(row["accuracy_std"], last["accuracy_std"])
        result["comparisons"].append({
            "method": method, "mean": row["accuracy_mean"], "std": row["accuracy_std"],
            "baseline_mean": last["accuracy_mean"], "baseline_std": last["accuracy_std"], "margin": margin,
            "threshold": threshold, "n_orders": row.get("n_orders"),
            "beats": beats(row["accuracy_mean"], row["accuracy_std"], last["accuracy_mean"], last["accuracy_std"])})
    focus_rows = [c for c in result["comparisons"] if c["method"] in focus]
    where = f"step {last['step']}" + (f", {last['classes_seen']} classes seen" if last.get("classes_seen") else "")
    if not focus_rows:
        result["text"] = (f"**Last-step verdict: not available** — neither {names.replace(' or ', ' nor ')} "
                          f"was run ({where}).")
        return result
    winners = [c["method"] for c in focus_rows if c["beats"]]
    result["answer"] = bool(winners)
    n = last.get("n_orders")
    over = f"the std over the {n} class order{'s' if n != 1 else ''}" if n else "the std over the class orders"
    ran = [c["method"] for c in focus_rows]
    if winners:
        head = (f"**Yes: the {' and the '.join(_pretty(m) for m in winners)} memory beats the {baseline} memory "
                f"at the last step ({where}) by more than {over}.**")
    elif len(ran) == 1:
        head = (f"**No: the {_pretty(ran[0])} memory does not beat the {baseline} memory at the last step "
                f"({where}) by more than {over}.**")
    else:
        head = (f"**No: neither the {' nor the '.join(_pretty(m) for m in ran)} memory beats the {baseline} memory "
                f"at the last step ({where}) by more than {over}.**")
    missing = [m for m in focus if m not in ran]
    if missing:
        head += f" ({', '.join(_pretty(m) for m in missing)} not run.)"
    lines = [head, "", f"A memory beats {baseline} when its mean exceeds {baseline}'s by more than the larger of "
                       "the two stds over the orders."]
    for c in result["comparisons"]:
        verdict = "beats" if c["beats"] else "does not beat"
        rel = "more" if c["beats"] else "not more"
        lines.append(f"- {_pretty(c['method'])}: {c['mean']:.2f} ± {c['std']:.2f} % against {baseline} "
                     f"{c['baseline_mean']:.2f} ± {c['baseline_std']:.2f} %: {c['margin']:+.2f} points, {rel} than "
                     f"{c['threshold']:.2f} → {verdict} {baseline}.")
    if n == 1:
        lines.append("- Caution: one class order, so the std over orders is 0 and any positive margin counts; "
                     "run more orders.")
    result["text"] = "\n".join(lines)
    return result


__all__ = ["BASELINE", "FOCUS", "beats", "last_step_verdict"]
