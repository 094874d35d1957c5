"""The ``datadistill`` command line with a fault injected on one rank, for tests/test_distributed_launch.py
(run as torchrun's script: ``torchrun … tests/torchrun_entry.py distill …``).

``DATADISTILL_TEST_FAULT=KIND:RANK:ITERATION``: on global rank RANK, in the first attempt of the run
(``TORCHELASTIC_RESTART_COUNT`` 0), after the step callbacks of ITERATION (its checkpoint included),
``kill`` sends itself SIGKILL (a machine lost) and ``raise`` raises a ConfigError (a rank's own error).
"""

from __future__ import annotations

import os
import signal

from datadistill.cli import main
from datadistill.errors import ConfigError
from datadistill.methods.base import Distiller


def _inject(kind: str, rank: str, iteration: str) -> None:
    if os.environ.get("RANK") != rank or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return
    fit = Distiller.fit

    def faulty_fit(self, iterations, callbacks=(), max_seconds=None):
        def fault(it, metrics):
            if it == int(iteration):
                if kind == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise ConfigError(f"injected failure at iteration {it}")

        return fit(self, iterations, [*callbacks, fault], max_seconds)

    Distiller.fit = faulty_fit


if __name__ == "__main__":
    if os.environ.get("DATADISTILL_TEST_FAULT"):
        _inject(*os.environ["DATADISTILL_TEST_FAULT"].split(":"))
    main()
