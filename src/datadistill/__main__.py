"""``python -m datadistill``: the command line (as the ``datadistill`` script)."""

from datadistill.cli import main

main()
