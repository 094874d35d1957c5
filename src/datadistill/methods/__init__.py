"""Distillation methods: one file per method, registered in :data:`METHODS`."""

from datadistill.methods.base import (INITS, METHODS, SHARED_RUN_SETTINGS, Distiller, MethodConfig,
                                      register_method)
from datadistill.methods import datadam as _datadam  # noqa: F401  (registers "datadam")
from datadistill.methods import dm as _dm  # noqa: F401  (registers "dm")
from datadistill.methods import dc as _dc  # noqa: F401  (registers "dc", "dsa")
from datadistill.methods import cafe as _cafe  # noqa: F401  (registers "cafe", "cafe_dsa")
from datadistill.methods import coreset as _coreset  # noqa: F401  (registers "random", "herding", "k_center")
from datadistill.methods import difficulty as _difficulty  # noqa: F401  (registers "el2n", "grand", "forgetting", "uncertainty")
from datadistill.methods import trajectory as _trajectory  # noqa: F401  (registers "mtt")
from datadistill.methods import datm as _datm  # noqa: F401  (registers "datm", "pad")
from datadistill.methods.datadam import DataDAM, DataDAMConfig
from datadistill.methods.dm import DM, DMConfig
from datadistill.methods.dc import DC, DCConfig, DSAMethod
from datadistill.methods.cafe import CAFE, CAFEDSA, CAFEConfig
from datadistill.methods.datm import DATM, PAD, DATMConfig, PADConfig
from datadistill.methods.trajectory import MTT, MTTConfig


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


__all__ = ["CAFE", "CAFEDSA", "CAFEConfig", "DATM", "DATMConfig", "MTT", "MTTConfig", "PAD", "PADConfig", "DC", "DCConfig", "DSAMethod", "DM", "DMConfig", "DataDAM", "DataDAMConfig", "Distiller", "INITS", "METHODS", "MethodConfig",
           "SHARED_RUN_SETTINGS", "describe_inits", "list_methods", "method_config", "register_method"]
