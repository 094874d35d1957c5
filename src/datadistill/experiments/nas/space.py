"""The search space of ``datadistill nas``: a grid of architectures of one model family (its search
knobs come from the model registry), optionally sampled, read from a YAML file or a mapping (format
in :mod:`datadistill.experiments.nas`)."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datadistill.errors import ConfigError
from datadistill.models import searchable_models
from datadistill.settings import read_yaml_mapping, refuse_unknown

_KNOBS = searchable_models()  # family → {key: accepted names, or int}, from the model registry
FAMILY_KEYS: dict[str, tuple[str, ...]] = {family: tuple(knobs) for family, knobs in _KNOBS.items()}
_SPACE_KEYS = ("family", "sample", "seed")
_SHORT = {"depth": "d", "width": "w"}


@dataclass(frozen=True)
class Candidate:
    """One architecture of a search space.

    Attributes:
        index: position in the full cartesian product (also the seed's second entropy word).
        family: ``convnet`` or ``mlp`` (a registered model name).
        args: builder keyword arguments, e.g. ``{"depth": 3, "width": 64, "norm": "none"}``.
    """

    index: int
    family: str
    args: dict[str, Any] = field(hash=False)

    @property
    def name(self) -> str:
        """``convnet-d3-w64-relu-instancenorm-avgpooling`` (grid key order)."""
        parts = [f"{_SHORT[k]}{v}" if k in _SHORT else str(v) for k, v in self.args.items()]
        return "-".join([self.family, *parts])


@dataclass(frozen=True)
class SearchSpace:
    """A grid of architectures of one family, optionally sampled.

    Attributes:
        family: ``convnet`` or ``mlp``.
        grid: per varied key (in :data:`FAMILY_KEYS` order) the values tried, each list non-empty
            and without duplicates.
        sample: draw this many candidates of the grid (None = all of them).
        seed: seed of the draw (only used with ``sample``).
    """

    family: str
    grid: dict[str, tuple[Any, ...]]
    sample: int | None = None
    seed: int = 0

    @property
    def grid_size(self) -> int:
        """Candidates in the full cartesian product."""
        return math.prod(len(v) for v in self.grid.values())

    def indices(self) -> list[int]:
        """Grid positions of the candidates, ascending: all, or ``sample`` drawn without replacement
        by ``numpy.random.default_rng(seed)``."""
        if self.sample is None:
            return list(range(self.grid_size))
        drawn = np.random.default_rng(self.seed).choice(self.grid_size, size=self.sample, replace=False)
        return sorted(int(i) for i in drawn)

    def candidate(self, index: int) -> Candidate:
        """The candidate at grid position ``index`` (mixed radix, the last key fastest)."""
        args: dict[str, Any] = {}
        rest = index
        for key in reversed(list(self.grid)):
            values = self.grid[key]
            args[key] = values[rest % len(values)]
            rest //= len(values)
        return Candidate(index, self.family, {k: args[k] for k in self.grid})

    def candidates(self) -> list[Candidate]:
        """The candidates searched, in grid order."""
        return [self.candidate(i) for i in self.indices()]

    def as_dict(self) -> dict[str, Any]:
        return {"family": self.family, **{k: list(v) for k, v in self.grid.items()}, "sample": self.sample,
                "seed": self.seed, "grid_size": self.grid_size}


def integer_at_least(key: str, value: Any, minimum: int, where: str) -> int:
    """``value`` when it is an integer (not a bool) ≥ ``minimum``, else ConfigError
    ``{where}{key} = {value!r} is invalid: expected an integer ≥ {minimum}``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}{key} = {value!r} is invalid: expected an integer ≥ {minimum}")
    return value


def _values(key: str, raw: Any, family: str) -> tuple[Any, ...]:
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise ConfigError(f"{key} = [] is empty: expected a non-empty list of {family} {key} values")
    choices = _KNOBS[family][key]
    for v in values:
        if choices is not int:
            if not isinstance(v, str) or v not in choices:
                raise ConfigError(f"{key} = {raw!r}: {v!r} is not a {family} {key}; expected values from "
                                  f"{', '.join(choices)}")
        else:
            integer_at_least(key, v, 1, f"{key} = {raw!r}: ")
    dup = [v for v, n in Counter(values).items() if n > 1]
    if dup:
        raise ConfigError(f"{key} = {raw!r} lists {dup[0]!r} twice: expected distinct values")
    return tuple(values)


def parse_search_space(data: Mapping[str, Any]) -> SearchSpace:
    """Validate a search space given as a mapping (the content of a space file).

    Args:
        data: ``family`` (``convnet`` | ``mlp``), the family's grid keys (a list of values each, or one
            value), optional ``sample`` (integer ≥ 2, at most the grid's size) and ``seed`` (≥ 0).

    Raises:
        ConfigError: the first problem: not a mapping, missing or unknown family, a key the family
            does not have, an empty list, a duplicate or invalid value (depth and width are integers
            ≥ 1; activation, norm and pooling come from the ConvNet's lists), fewer than 2
            candidates, a bad ``sample`` or ``seed``. The message names the key, the value and what
            is accepted.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"search space = {data!r} is not a mapping: expected family and grid keys")
    family = data.get("family")
    if family is None:
        raise ConfigError(f"family is missing from the search space: expected one of {', '.join(FAMILY_KEYS)}")
    if not isinstance(family, str) or family not in FAMILY_KEYS:
        raise ConfigError(f"family = {family!r} is not a searchable family: expected one of {', '.join(FAMILY_KEYS)}")
    keys = FAMILY_KEYS[family]
    refuse_unknown(data, (*_SPACE_KEYS, *keys), what="search-space", where=f" in the {family} search space")
    grid = {k: _values(k, data[k], family) for k in keys if k in data}
    space = SearchSpace(family, grid)
    if space.grid_size < 2:
        raise ConfigError(f"the {family} search space has {space.grid_size} candidate: list at least two values "
                          f"for one of {', '.join(keys)}")
    sample = data.get("sample")
    if sample is not None:
        integer_at_least("sample", sample, 2, "")
        if sample > space.grid_size:
            raise ConfigError(f"sample = {sample} is more than the grid's {space.grid_size} candidates: expected "
                              f"2 … {space.grid_size} (or no sample, for all of them)")
    seed = integer_at_least("seed", data.get("seed", 0), 0, "")
    return SearchSpace(family, grid, sample, seed)


def load_search_space(source: str | os.PathLike | Mapping[str, Any] | SearchSpace) -> SearchSpace:
    """Read and validate a search-space YAML file (PyYAML), a mapping, or pass a space through.

    Raises:
        ConfigError: missing or invalid YAML file, or any problem :func:`parse_search_space` reports
            (prefixed with the file's path).
    """
    if isinstance(source, SearchSpace):
        return source
    if isinstance(source, Mapping):
        return parse_search_space(source)
    data = read_yaml_mapping(source)
    try:
        return parse_search_space(data)
    except ConfigError as exc:
        raise type(exc)(f"{source}: {exc}") from None


__all__ = ["FAMILY_KEYS", "Candidate", "SearchSpace", "integer_at_least", "load_search_space",
           "parse_search_space"]
