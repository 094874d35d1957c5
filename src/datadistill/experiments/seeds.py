"""Seed derivation for the experiments: how the one ``seed`` of a run becomes the seeds of its units
(class-order steps, clients, rounds, candidates) and the NumPy generators of its random draws.

Three schemes, one function each, each used everywhere it applies. They differ, and each is kept
exactly as it was when the experiments wrote their own, so that every output (synthetic sets,
metrics, partitions) is bit for bit what it was:

* :func:`offset_seed` — ``seed + index``: consecutive seeds, one per unit of a row-major
  enumeration. ``continual`` gives step ``t`` (0-based) of class order ``k`` the seed
  ``seed + k · steps + t`` (:func:`datadistill.experiments.continual.step_seed`): distinct for every
  (order, step) of a run and the same for every memory method, so every method condenses and
  evaluates from the same draws. The core's per-network convention (evaluation network, expert or
  scoring network ``k`` uses ``seed + k``) is the same scheme; those modules sit below this layer and
  write it inline.
* :func:`derived_seed` — the first 32-bit word of ``numpy.random.SeedSequence([seed, *keys])``, modulo
  ``2 ** bits``: decorrelated seeds for units named by integer keys, independent of the order in
  which the units run (or the worker process running them). ``federated`` uses ``bits=31`` (a torch
  seed below 2³¹): FedD3 client ``i`` distils with ``(seed, 3, i)``, FedAvg client ``i`` trains round
  ``r`` with ``(seed, 4, r, i)``, the initial global network is built with ``(seed, 5)``. ``nas``'s
  candidate seeds are the ``bits=32`` form (the whole word) of ``(seed, index)``.
* :func:`derived_rng` — a NumPy ``Generator`` on ``SeedSequence([seed, *keys])`` for draws (rather than
  seeds): ``federated``'s partition ``(seed, 1)`` and its FedAvg client selection ``(seed, 2, round)``.

The key after ``seed`` names a stream (``federated``'s constants ``PARTITION_STREAM`` …), so two
purposes never share a seed. Seeds are Python ints ≥ 0; no global generator is touched.
(``continual``'s class orders are not derived seeds but the DM repository's legacy draw,
``numpy.random.RandomState(k).permutation``, kept in its protocol.)
"""

from __future__ import annotations

import numpy as np


def offset_seed(seed: int, index: int) -> int:
    """``seed + index``: the seed of unit ``index`` (≥ 0) of a row-major enumeration of a run's units."""
    return int(seed) + int(index)


def _sequence(seed: int, keys: tuple[int, ...]) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), *(int(k) for k in keys)])


def derived_seed(seed: int, *keys: int, bits: int = 31) -> int:
    """The first word of ``SeedSequence([seed, *keys]).generate_state(1)`` (a uint32) modulo ``2 ** bits``.

    Args:
        seed: the run's seed (≥ 0).
        keys: integers (≥ 0) naming the unit: a stream number, then indices (round, client …).
        bits: 31 for a seed in [0, 2³¹) (``federated``), 32 for the whole word (``nas``).

    Returns:
        An int in [0, 2 ** bits); different key tuples give unrelated seeds (no collisions in practice).
    """
    return int(_sequence(seed, keys).generate_state(1)[0]) % (2 ** bits)


def derived_rng(seed: int, *keys: int) -> np.random.Generator:
    """``numpy.random.default_rng(SeedSequence([seed, *keys]))``: a fresh generator for one stream of draws."""
    return np.random.default_rng(_sequence(seed, keys))


__all__ = ["derived_rng", "derived_seed", "offset_seed"]
