"""``python -m datadistill.cli``: the command line."""

from datadistill.cli import main

main()
