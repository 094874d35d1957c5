"""The grid of ``datadistill compare``: :class:`CompareSettings` (the config as read),
:func:`load_compare` (every cell's resolved run config, validated before anything runs)."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from datadistill.config import DistillConfig
from datadistill.errors import ConfigError, error_context
from datadistill.record import plain
from datadistill.settings import SettingsBase, merge_layers, refuse_unknown

GRID_KEYS = ("method", "ipc", "init", "seed")
ENTRY_KEYS = ("method", "label", "init", "by_ipc")
CONFIG_KEYS = tuple(k for k in DistillConfig.keys() if k not in GRID_KEYS)
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class MethodEntry:
    """One entry of ``methods:``.

    Attributes:
        label: row name in the tables and cell-folder prefix (default: the method name).
        method: registered method name.
        overrides: DistillConfig fields for this method (``method_args`` included).
        by_ipc: per-IPC overrides, applied after ``overrides``.
        fixed_init: the one init of this method's cells (the method's own name for coreset methods,
            or the entry's ``init``); None = one cell per init of the grid.
    """

    label: str
    method: str
    overrides: dict[str, Any]
    by_ipc: dict[int, dict[str, Any]]
    fixed_init: str | None


@dataclass(frozen=True)
class Cell:
    """One run of the grid.

    Attributes:
        name: ``<label>_ipc<k>_<init>_seed<s>``, the folder under ``OUT/cells``.
        label: the method entry's label.
        column_init: the grid init whose table column shows this cell (None: every init column, for
            methods with a fixed init).
        config: the fully resolved run configuration.
    """

    name: str
    label: str
    column_init: str | None
    config: DistillConfig

    def config_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON values (what ``cell.json`` records)."""
        return plain(self.config.as_dict())


@dataclass
class ComparePlan:
    """A validated grid: what :func:`load_compare` returns.

    Attributes:
        out: output folder from the config (None when not given).
        entries: the method entries, in config order.
        ipcs, inits, seeds: the grid's lists, in config order.
        cells: every cell, in run order (seed, IPC, method entry, init).
        source: the grid as read (written to ``OUT/compare.yaml``).
        scores: the DD-Ranking scores' settings (``scores:``; :func:`scores_settings`), None when off.
    """

    out: str | None
    entries: list[MethodEntry]
    ipcs: list[int]
    inits: list[str]
    seeds: list[int]
    cells: list[Cell]
    source: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] | None = None

    def ordered(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` (with ``cell``) sorted in table order: method entry, IPC, init, seed."""
        labels = {e.label: k for k, e in enumerate(self.entries)}
        return sorted(rows, key=lambda r: (labels.get(r["label"], len(labels)), r["ipc"], r["init"], r["seed"]))


def _int_list(key: str, value: Any, minimum: int) -> list[int]:
    if value is None:
        raise ConfigError(f"{key} is missing: expected a list of integers ≥ {minimum}, e.g. {key}: [1, 10]")
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(f"{key} = [] is empty: expected a non-empty list of integers ≥ {minimum}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ConfigError(f"{key} = {value!r}: {v!r} is not an integer ≥ {minimum}")
    dup = [v for v, n in Counter(values).items() if n > 1]
    if dup:
        raise ConfigError(f"{key} = {value!r} lists {dup[0]!r} twice: expected distinct values")
    return list(values)


def _str_list(key: str, value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(f"{key} = [] is empty: expected a non-empty list of names")
    for v in values:
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{key} = {value!r}: {v!r} is not a name")
    dup = [v for v, n in Counter(values).items() if n > 1]
    if dup:
        raise ConfigError(f"{key} = {value!r} lists {dup[0]!r} twice: expected distinct values")
    return list(values)


def _overrides(values: Any, where: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check a mapping of DistillConfig overrides (plus the ``extra`` keys) and return a copy."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} = {values!r} is not a mapping of settings")
    for key in values:
        if key in GRID_KEYS and key not in extra:
            raise ConfigError(f"{where}.{key} = {values[key]!r} is not allowed here: method, ipc, init and seed "
                              "come from the grid's methods, ipc, init and seeds lists")
        refuse_unknown([key], sorted((*CONFIG_KEYS, *extra)), where=f" in {where}")
    if values.get("method_args") is not None and not isinstance(values["method_args"], Mapping):
        raise ConfigError(f"{where}.method_args = {values['method_args']!r} is not a mapping of settings")
    return dict(values)


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers override earlier ones (None included); ``method_args`` are merged key by key."""
    return merge_layers(*layers, nested=("method_args",), keep_none=True)


@dataclass
class CompareSettings(SettingsBase):
    """A comparison grid as read (the keys of a compare config; see
    :mod:`datadistill.experiments.compare`), each checked on construction; :func:`load_compare`
    expands it into cells.

    Attributes:
        out: output folder (None: given to :func:`~datadistill.experiments.compare.run_compare`).
        base: DistillConfig fields shared by every cell (not method, ipc, init or seed).
        methods: method names, or mappings with ``method``, optional ``label``, ``init``, ``by_ipc``
            and DistillConfig overrides.
        ipc, init, seeds: the grid's lists (init default ``[real]``, seeds default ``[0]``).
        scores: ``false`` (default), ``true``, or a mapping of the DD-Ranking scores' settings
            (:func:`scores_settings`): each cell's set is also scored (HLR, IOR, LRS, ARS).

    Raises:
        ConfigError: an unknown key (``unknown compare setting``), an out that is not a path, a bad
            ``base``, an empty ``methods`` list, or a bad ``ipc``, ``init`` or ``seeds`` list.
    """

    settings_what: ClassVar[str] = "compare"

    out: Any = None
    base: Any = None
    methods: Any = None
    ipc: Any = None
    init: Any = field(default_factory=lambda: ["real"])
    seeds: Any = field(default_factory=lambda: [0])
    scores: Any = False

    def validate(self) -> None:
        from datadistill.methods import METHODS

        if self.out is not None and (not isinstance(self.out, (str, os.PathLike)) or not str(self.out)):
            raise ConfigError(f"out = {self.out!r} is not a folder path")
        self.base = _overrides(self.base or {}, "base")
        if not isinstance(self.methods, list) or not self.methods:
            raise ConfigError(f"methods = {self.methods!r}: expected a non-empty list of method names or mappings "
                              f"(registered methods: {', '.join(METHODS.names())})")
        self.ipc = _int_list("ipc", self.ipc, 1)
        self.init = _str_list("init", self.init)
        self.seeds = _int_list("seeds", self.seeds, 0)
        self.scores = scores_settings(self.scores)


SCORE_PATHS = ("baseline", "teacher")


def scores_settings(value: Any) -> dict[str, Any] | None:
    """The ``scores:`` key of a compare config: ``false``/absent (None: no scores), ``true`` (the
    defaults) or a mapping of :class:`~datadistill.evaluation.ranking_protocol.RankingSettings` fields
    (``lr_grid``, ``select_networks``, ``select_epochs``, ``val_size``, ``labels``, ``lrs_weight``,
    ``ars_weight``, ``use_learned_lr``) and ``baseline`` (a baseline folder, or a new folder where the
    baseline of the evaluation model is trained; default ``OUT/baselines/<eval model>``) and
    ``teacher`` (a model file; default the baseline's ``model.safetensors``).

    Raises:
        ConfigError: another value, an unknown key, or a setting out of range.
    """
    from datadistill.evaluation.ranking_protocol import RankingSettings

    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"scores = {value!r} is invalid: expected true, false or a mapping of score settings")
    fields = [f for f in RankingSettings.__dataclass_fields__]
    refuse_unknown(list(value), sorted((*fields, *SCORE_PATHS)), where=" in scores")
    for key in SCORE_PATHS:
        if value.get(key) is not None and (not isinstance(value[key], (str, os.PathLike)) or not str(value[key])):
            raise ConfigError(f"scores.{key} = {value[key]!r} is not a path")
    with error_context("scores"):
        RankingSettings(**{k: v for k, v in value.items() if k not in SCORE_PATHS})
    return {k: (str(v) if k in SCORE_PATHS and v is not None else v) for k, v in value.items()}


def _entry(raw: Any, k: int) -> MethodEntry:
    from datadistill.methods import METHODS

    where = f"methods[{k}]"
    if isinstance(raw, str):
        raw = {"method": raw}
    if not isinstance(raw, Mapping) or "method" not in raw:
        raise ConfigError(f"{where} = {raw!r}: expected a method name or a mapping with a 'method' key")
    values = _overrides(raw, where, extra=ENTRY_KEYS)
    method = values.pop("method")
    if not isinstance(method, str):
        raise ConfigError(f"{where}.method = {method!r} is not a method name")
    with error_context(where):
        cls = METHODS.get(method)
    label = values.pop("label", method)
    if not isinstance(label, str) or not LABEL_PATTERN.match(label):
        raise ConfigError(f"{where}.label = {label!r} is invalid: expected letters, digits, '_', '.', '+' or '-' "
                          "(it names the cell folders)")
    init = values.pop("init", None)
    if init is not None and (not isinstance(init, str) or not init):
        raise ConfigError(f"{where}.init = {init!r} is invalid: expected one init name (this method's cells then "
                          "ignore the grid's init list)")
    own_init = cls.run_overrides().get("init")  # a coreset method's init is its own selection
    if own_init is not None:
        if init is not None and init != own_init:
            raise ConfigError(f"{where}.init = {init!r} is invalid: {cls.name} is a coreset method, its init is "
                              f"its own selection ({own_init!r})")
        init = own_init
    by_ipc_raw = values.pop("by_ipc", None) or {}
    if not isinstance(by_ipc_raw, Mapping):
        raise ConfigError(f"{where}.by_ipc = {by_ipc_raw!r} is not a mapping of IPC to settings")
    by_ipc: dict[int, dict[str, Any]] = {}
    for ipc, settings in by_ipc_raw.items():
        if isinstance(ipc, bool) or not isinstance(ipc, int) or ipc < 1:
            raise ConfigError(f"{where}.by_ipc key {ipc!r} is invalid: expected an IPC (integer ≥ 1)")
        by_ipc[ipc] = _overrides(settings, f"{where}.by_ipc.{ipc}")
    return MethodEntry(label=label, method=cls.name, overrides=values, by_ipc=by_ipc, fixed_init=init)


def _check_cell(cell: Cell) -> None:
    """Everything that can be checked without data: names, settings, method arguments, input files."""
    from datadistill.data import check_dataset_name
    from datadistill.methods import METHODS
    from datadistill.models import MODELS

    config = cell.config
    cls = METHODS.get(config.method)
    check_dataset_name(config.dataset)
    MODELS.get(config.model)
    MODELS.get(config.resolved_eval_model)
    cls.config_from_run(config)
    cls.check_init(config.init)
    experts = config.method_args.get("experts") if cls.needs_experts else None
    if experts and not (Path(experts) / "experts.json").is_file():
        raise ConfigError(f"method_args.experts = {experts!r} holds no experts.json: train the experts first "
                          f"(datadistill experts --out {experts})")
    scores = config.method_args.get("scores_file")
    if scores and not Path(scores).is_file():
        raise ConfigError(f"method_args.scores_file = {scores!r} does not exist: compute it first "
                          f"(datadistill scores --out {scores})")


def load_compare(source: str | os.PathLike | Mapping[str, Any] | CompareSettings) -> ComparePlan:
    """Read and validate a comparison grid (see :mod:`datadistill.experiments.compare` for the format).

    Args:
        source: a YAML file path, the mapping it would hold, or :class:`CompareSettings`.

    Returns:
        The plan: method entries, lists and every cell's resolved config.

    Raises:
        ConfigError: the first problem found (unknown key, empty list, non-integer IPC or seed,
            duplicate label, an invalid setting of any cell, a missing experts or scores file),
            naming the key, the bad value and what is accepted; UnknownNameError (a ConfigError)
            for an unregistered method, model or dataset name.
    """
    from datadistill.methods import METHODS

    grid = source if isinstance(source, CompareSettings) else CompareSettings.build(source)
    entries = [_entry(raw, k) for k, raw in enumerate(grid.methods)]
    seen: dict[str, int] = {}
    for k, e in enumerate(entries):
        if e.label in seen:
            raise ConfigError(f"methods[{k}] label {e.label!r} is already used by methods[{seen[e.label]}]: "
                              "give each entry a distinct label")
        seen[e.label] = k

    cells: list[Cell] = []
    for seed in grid.seeds:
        for ipc in grid.ipc:
            for e in entries:
                for init in [e.fixed_init] if e.fixed_init else grid.init:
                    name = f"{e.label}_ipc{ipc}_{init}_seed{seed}"
                    with error_context(f"cell {name}"):
                        values = _merge(grid.base, e.overrides, e.by_ipc.get(ipc, {}))
                        values.update(method=e.method, ipc=ipc, init=init, seed=seed)
                        values.update(METHODS.get(e.method).run_overrides())  # coresets: no learning budget
                        cell = Cell(name, e.label, None if e.fixed_init else init, DistillConfig(**values))
                        _check_cell(cell)
                    cells.append(cell)
    if grid.scores is not None:
        for cell in cells:
            if cell.config.num_eval < 1:
                raise ConfigError(f"cell {cell.name}: num_eval = {cell.config.num_eval}: the scores train K = num_eval "
                                  "runs; expected num_eval ≥ 1 with scores")
    out = None if grid.out is None else str(grid.out)
    source = {"out": out, "base": grid.base, "methods": grid.methods, "ipc": grid.ipc, "init": grid.init,
              "seeds": grid.seeds}
    if grid.scores is not None:
        source["scores"] = grid.scores
    return ComparePlan(out=out, entries=entries, ipcs=grid.ipc, inits=grid.init, seeds=grid.seeds, cells=cells,
                       source=source, scores=grid.scores)

__all__ = ["CONFIG_KEYS", "Cell", "ComparePlan", "CompareSettings", "MethodEntry", "load_compare", "scores_settings"]
