"""Distillation methods: one file per method, registered in :data:`METHODS`."""

from datadistill.methods.base import INITS, METHODS, Distiller, MethodConfig, register_method
from datadistill.methods import datadam as _datadam  # noqa: F401  (registers "datadam")
from datadistill.methods import dm as _dm  # noqa: F401  (registers "dm")
from datadistill.methods.datadam import DataDAM, DataDAMConfig
from datadistill.methods.dm import DM, DMConfig


def list_methods() -> list[str]:
    return METHODS.names()


__all__ = ["DM", "DMConfig", "DataDAM", "DataDAMConfig", "Distiller", "INITS", "METHODS", "MethodConfig",
           "list_methods", "register_method"]
