"""Distillation methods: one file per method, registered in :data:`METHODS`."""

from datadistill.methods.base import INITS, METHODS, Distiller, MethodConfig, register_method
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


__all__ = ["CAFE", "CAFEDSA", "CAFEConfig", "DATM", "DATMConfig", "MTT", "MTTConfig", "PAD", "PADConfig", "DC", "DCConfig", "DSAMethod", "DM", "DMConfig", "DataDAM", "DataDAMConfig", "Distiller", "INITS", "METHODS", "MethodConfig",
           "list_methods", "register_method"]
