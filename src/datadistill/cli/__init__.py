"""Command-line interface: flags → settings → :mod:`datadistill.api` and :mod:`datadistill.experiments`.
No logic of its own. ``main`` (the ``datadistill`` group) lives in :mod:`datadistill.cli.base`; each
module here adds its commands to it when imported.
"""

from datadistill.cli import data, distill, experiments, export, training  # noqa: F401  (register the commands)
from datadistill.cli.base import main

__all__ = ["main"]
