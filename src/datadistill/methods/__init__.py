"""Distillation methods: one file per method, registered in :data:`METHODS`.

Every module of this package is imported when the package is (:func:`pkgutil.iter_modules`), so a
module that registers a :class:`Distiller` with ``@register_method("name")`` is all a new method
needs: no list to edit here or elsewhere. Other packages add methods through the entry-point group
:data:`ENTRY_POINT_GROUP` (``datadistill.methods``), e.g. in their ``pyproject.toml``::

    [project.entry-points."datadistill.methods"]
    my_method = "my_package.my_method"            # a module that registers itself, or
    my_other = "my_package.other:MyDistiller"     # a Distiller class, registered under the entry's name

A plugin module should import from ``datadistill.methods`` (or ``datadistill.methods.base``), not
from the package top. A plugin that fails to load is reported with a warning and left out.
"""

import warnings
from importlib.metadata import entry_points

from datadistill.registry import import_submodules
from datadistill.methods.base import (INITS, METHODS, SHARED_RUN_SETTINGS, Distiller, MethodConfig,
                                      register_method)

ENTRY_POINT_GROUP = "datadistill.methods"


def _import_package_modules() -> None:
    """Import every module of this package; each registers its methods."""
    import_submodules(__name__, __path__)


def _registered(obj: type[Distiller]) -> bool:
    name = obj.__dict__.get("name")
    return name is not None and name in METHODS and METHODS.get(name) is obj


def load_plugins() -> list[str]:
    """Load the methods of the entry-point group :data:`ENTRY_POINT_GROUP` (done once on import;
    calling it again loads entries added since). An entry naming a module is imported (the module
    registers its methods); an entry naming an unregistered :class:`Distiller` subclass is
    registered under the entry's name. Returns the names of the entries loaded without error; the
    others are reported with a :class:`RuntimeWarning`."""
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, type) and issubclass(obj, Distiller) and not _registered(obj):
                register_method(ep.name)(obj)
        except Exception as exc:  # a broken plugin must not break every command
            warnings.warn(f"datadistill method plugin {ep.name!r} ({ep.value}) was not loaded: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
            continue
        loaded.append(ep.name)
    return loaded


def list_methods() -> list[str]:
    return METHODS.names()


def method_config(run) -> MethodConfig:
    """The config dataclass of ``run.method`` built from the run config ``run`` (a
    :class:`~datadistill.config.DistillConfig`): :meth:`Distiller.config_from_run`.

    Raises:
        UnknownNameError: an unregistered method.
        ConfigError: an invalid method setting.
    """
    return METHODS.get(run.method).config_from_run(run)


def describe_inits() -> str:
    """The accepted inits in words, from the registered methods: the :data:`INITS` of every learning
    method, then each method-specific init with the methods that accept it, e.g. ``"real, noise,
    random, herding, k_center, or samples_predicted_correctly (datm, pad)"``."""
    extra: dict[str, list[str]] = {}
    for name in METHODS.names():
        cls = METHODS.get(name)
        if cls.learns:
            for init in cls.accepted_inits():
                if init not in INITS:
                    extra.setdefault(init, []).append(name)
    parts = [*INITS, *(f"{init} ({', '.join(names)})" for init, names in extra.items())]
    return ", ".join(parts[:-1]) + ", or " + parts[-1]


_import_package_modules()

# The public classes, for ``from datadistill.methods import DM`` (registration needs none of this).
from datadistill.methods.datadam import DataDAM, DataDAMConfig  # noqa: E402
from datadistill.methods.dm import DM, DMConfig  # noqa: E402
from datadistill.methods.dc import DC, DCConfig, DSAMethod  # noqa: E402
from datadistill.methods.cafe import CAFE, CAFEDSA, CAFEConfig  # noqa: E402
from datadistill.methods.datm import DATM, PAD, DATMConfig, PADConfig  # noqa: E402
from datadistill.methods.trajectory import MTT, MTTConfig  # noqa: E402

load_plugins()

__all__ = ["CAFE", "CAFEDSA", "CAFEConfig", "DATM", "DATMConfig", "MTT", "MTTConfig", "PAD", "PADConfig", "DC",
           "DCConfig", "DSAMethod", "DM", "DMConfig", "DataDAM", "DataDAMConfig", "Distiller", "ENTRY_POINT_GROUP",
           "INITS", "METHODS", "MethodConfig", "SHARED_RUN_SETTINGS", "describe_inits", "list_methods",
           "load_plugins", "method_config", "register_method"]
