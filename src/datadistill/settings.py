"""Settings plumbing shared by every settings class: defaults ← YAML file ← overrides, type
coercion, unknown keys refused with a "did you mean", range checks and output-folder checks.

A settings class is a dataclass that also derives from :class:`SettingsBase`::

    @dataclass
    class MySettings(SettingsBase):
        nested_fields: ClassVar[tuple[str, ...]] = ("method_args",)   # mappings merged key by key
        output_fields: ClassVar[tuple[str, ...]] = ("out",)           # must be folders (or not exist)

        epochs: int = 10
        out: str | None = None
        method_args: dict[str, Any] = field(default_factory=dict)

        def checks(self):
            return [("epochs", self.epochs >= 1, "an integer ≥ 1")]

    MySettings.build("run.yaml", {"epochs": "3"})   # defaults ← run.yaml ← overrides (None ignored)

Construction coerces the scalar fields (``bool``, ``int``, ``float``, ``str`` and ``X | None``) from
YAML or CLI strings, runs :meth:`SettingsBase.checks` (the first failing one raises, naming the field,
its value and what is accepted), checks that the nested fields are mappings, then
:meth:`SettingsBase.validate` (a class's own checks) and the output folders. ``SettingsBase`` is a
plain mixin, not a dataclass, so frozen and non-frozen settings classes can both derive from it.

The module-level functions serve dataclasses that do not derive from it (a method's
:class:`~datadistill.methods.base.MethodConfig`, the expert and baseline settings):
:func:`settings_from` builds one from a mapping with the same coercion and unknown-key rules.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

import yaml

from datadistill.errors import ConfigError
from datadistill.fsutil import check_output_folder

STREAM_MODES = ("auto", "on", "off")
_SCALARS = (bool, int, float, str)


# ------------------------------------------------------------------------------------------ values


def _scalar_type(typ: Any) -> tuple[type | None, bool]:
    """``(base, optional)``: the scalar type a field annotation converts to (None when it is not a
    scalar: mappings, tuples, nested settings, ``Any``) and whether it accepts None."""
    if typ in _SCALARS:
        return typ, False
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and rest[0] in _SCALARS:
            return rest[0], len(rest) < len(args)
    return None, False


def coerce(name: str, value: Any, typ: Any) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to ``typ`` (bool, int, float, str or ``X | None``).

    Integers accept whole floats (``3.0``) but not ``2.5``; booleans accept true/false/yes/no/1/0.
    None stays None where ``typ`` allows it. A non-scalar ``typ`` (a mapping, a tuple, nested
    settings) leaves ``value`` as it is.

    Raises:
        ConfigError: naming ``name``, the value and the expected type.
    """
    base, optional = _scalar_type(typ)
    if base is None:
        return value
    if value is None and optional:
        return None
    try:
        if base is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            if isinstance(value, bool):
                return value
            raise ValueError
        if base is int:
            if value is None or isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base is float:
            if value is None or isinstance(value, bool):
                raise ValueError
            return float(value)
        if value is None:
            raise ValueError
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} = {value!r} is not a valid {base.__name__}") from None


def check_fields(obj: Any, checks: Iterable[tuple[str, bool, str]]) -> None:
    """Raise ConfigError for the first ``(field, ok, expected)`` whose ``ok`` is False, naming the
    field, its value on ``obj`` and what is accepted."""
    for name, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{name} = {getattr(obj, name)!r} is invalid: expected {expected}")


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known`` to ``key`` (difflib), else ``""``."""
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def refuse_unknown(keys: Iterable[str], known: Iterable[str], *, what: str = "", where: str = "") -> None:
    """Raise ConfigError for the first of ``keys`` not in ``known``:
    ``unknown {what} setting 'k'{where}: expected one of a, b, c; did you mean 'b'?`` (``known`` in
    the order given)."""
    known = list(known)
    for key in keys:
        if key not in known:
            kind = f"{what} setting" if what else "setting"
            raise ConfigError(f"unknown {kind} {key!r}{where}: expected one of {', '.join(known)}"
                              f"{did_you_mean(key, known)}")


def settings_type_hints(cls: type) -> dict[str, Any]:
    """The user-facing keys of the settings dataclass ``cls`` and their types, in declaration order:
    ``cls.settings_type_hints()`` where the class declares it (a class holding a training recipe
    exposes the recipe's flat keys, see ``datadistill.training.holds_recipe``), else its fields'."""
    hook = getattr(cls, "settings_type_hints", None)
    if hook is not None:
        return dict(hook())
    hints = get_type_hints(cls)
    return {name: hints[name] for name in field_names(cls)}


def field_names(cls: type) -> tuple[str, ...]:
    """The dataclass fields of ``cls`` (ClassVars excluded), in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls))


def coerce_values(cls: type, values: Mapping[str, Any], *, what: str = "", where: str = "") -> dict[str, Any]:
    """``values`` checked against the fields of the dataclass ``cls`` (unknown keys refused, see
    :func:`refuse_unknown`) and coerced to the field types (:func:`coerce`)."""
    hints = settings_type_hints(cls)
    refuse_unknown(values, sorted(hints), what=what, where=where)
    return {key: coerce(key, value, hints[key]) for key, value in values.items()}


def settings_from(cls: type, values: Mapping[str, Any], *, what: str = "", where: str = "") -> Any:
    """``cls(**values)`` for any dataclass ``cls``, unknown keys and wrong types reported as ConfigError."""
    return cls(**coerce_values(cls, values, what=what, where=where))


def read_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML file holding a mapping (an empty file is an empty mapping).

    Raises:
        ConfigError: missing file, invalid YAML, or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``; where both hold a mapping under a key, they are merged the same
    way (key by key, recursively). Neither argument is changed."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for key, value in extra.items():
        old = out.get(key)
        out[key] = deep_merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return out


def merge_layers(*layers: Mapping[str, Any] | None, nested: Iterable[str] = (), where: Iterable[str] = (),
                 keep_none: bool = False) -> dict[str, Any]:
    """Settings layers merged in order (later wins); the ``nested`` keys hold mappings merged key
    by key (:func:`deep_merge`), an unset or null one counting as empty.

    Args:
        layers: mappings of settings (None = an empty layer).
        nested: keys whose values are mappings of settings.
        where: per layer, a text naming it in errors (e.g. ``" in run.yaml"``); missing = ``""``.
        keep_none: a None value sets the key to None (default: None values are ignored, as unset
            CLI flags are).

    Raises:
        ConfigError: a nested key whose value is not a mapping, naming the layer.
    """
    nested = tuple(nested)
    wheres = list(where)
    out: dict[str, Any] = {}
    for k, layer in enumerate(layers):
        for key, value in (layer or {}).items():
            if value is None and (key in nested or not keep_none):
                continue
            if key in nested:
                if not isinstance(value, Mapping):
                    place = wheres[k] if k < len(wheres) else ""
                    raise ConfigError(f"{key}{place} must be a mapping of settings, got {value!r}")
                out[key] = deep_merge(out.get(key) or {}, value)
            else:
                out[key] = value
    return out


# ---------------------------------------------------------------------------------------- the base


class SettingsBase:
    """Mixin of the settings dataclasses (see the module docstring).

    Class attributes a subclass may set:
        nested_fields: fields holding a mapping of settings (``method_args``), merged key by key when
            layers are merged, required to be mappings.
        output_fields: fields naming an output folder: refused when the path exists and is not a folder.
        settings_what: a word naming the settings in the unknown-key message (``"federated"`` gives
            ``unknown federated setting 'x'``); empty by default.
    """

    nested_fields: ClassVar[tuple[str, ...]] = ()
    output_fields: ClassVar[tuple[str, ...]] = ()
    settings_what: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.coerce_fields()
        check_fields(self, self.checks())
        for name in self.nested_fields:
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise ConfigError(f"{name} must be a mapping, got {value!r}")
        self.validate()
        for name in self.output_fields:
            if getattr(self, name) is not None:
                check_output_folder(getattr(self, name))

    # -- hooks -----------------------------------------------------------------------------------
    def checks(self) -> list[tuple[str, bool, str]]:
        """Range checks ``(field, ok, expected)``, run in order after coercion; none by default."""
        return []

    def validate(self) -> None:
        """Checks beyond ranges (registered names, cross-field rules); nothing by default."""

    # -- construction ----------------------------------------------------------------------------
    def coerce_fields(self) -> None:
        """Coerce every scalar field in place (works on frozen dataclasses too)."""
        hints = get_type_hints(type(self))
        for name in field_names(type(self)):
            value = getattr(self, name)
            converted = coerce(name, value, hints[name])
            if converted is not value:
                object.__setattr__(self, name, converted)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The accepted keys, in declaration order (:func:`settings_type_hints`)."""
        return tuple(settings_type_hints(cls))

    @classmethod
    def check_keys(cls, keys: Iterable[str], where: str = "") -> None:
        """ConfigError for the first unknown key (with the accepted keys and the closest one)."""
        refuse_unknown(keys, cls.keys(), what=cls.settings_what, where=where)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = ""):
        """Build from a mapping of field names; None values keep the default.

        Raises:
            ConfigError: an unknown key or an invalid value.
        """
        cls.check_keys(values, where)
        return cls(**{k: v for k, v in values.items() if v is not None})

    @classmethod
    def source_values(cls, source: Any) -> tuple[dict[str, Any], str]:
        """``(values, where)`` of a settings source: a YAML file path, a mapping, an instance or None."""
        if source is None:
            return {}, ""
        if isinstance(source, cls):
            return source.as_dict(), ""
        if isinstance(source, Mapping):
            return dict(source), ""
        return read_yaml_mapping(source), f" in {source}"

    @classmethod
    def build(cls, source: Any = None, overrides: Mapping[str, Any] | None = None):
        """Defaults ← ``source`` (a YAML file, a mapping or settings) ← ``overrides``: None values
        are ignored, :attr:`nested_fields` are merged key by key.

        Raises:
            ConfigError: unreadable YAML, an unknown key (naming the file), a nested field that is
                not a mapping, or an invalid value.
        """
        values, where = cls.source_values(source)
        cls.check_keys(values, where)
        cls.check_keys(overrides or {})
        return cls(**merge_layers(values, overrides, nested=cls.nested_fields, where=(where, "")))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


__all__ = ["STREAM_MODES", "SettingsBase", "check_fields", "coerce", "coerce_values", "deep_merge", "did_you_mean",
           "field_names", "merge_layers", "read_yaml_mapping", "refuse_unknown", "settings_from"]
