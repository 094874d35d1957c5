#!/usr/bin/env bash
# GPU readiness check (issue #20): on a machine with one or more CUDA GPUs, in at most 8 minutes,
#   1. the tests marked `cuda` (pytest -m cuda),
#   2. DM, DataDAM and DATM on MNIST IPC 10 for a fixed number of iterations on cuda (world 1, and
#      world 2 through torchrun when two GPUs exist; DATM's experts: a tiny set trained first),
#   3. the vectorised evaluation of 5 networks x 300 epochs (and the same networks one by one),
# and one JSON summary (s/it, accuracy, peak GPU memory): benchmarks/device_check.py measures.
#
#   bash scripts/device_check.sh [--out FILE] [--data-root DIR] [--dry-run]
#
# Python: $PYTHON if set (an interpreter with datadistill's requirements, e.g. a machine's own
# python3 with torch), else .venv/bin/python, else scripts/setup.sh makes .venv (needs PyPI).
# MNIST: --data-root DIR (else $DATADISTILL_DATA or the cache where `datadistill data prepare mnist`
# put it). --dry-run: toy sizes on the CPU, to check the script where there is no GPU.
# Exit status: non-zero when a cuda test or a measurement failed; the summary is written anyway.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=device_check.json
ARGS=()
DRY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --data-root) ARGS+=(--data-root "$2"); shift 2 ;;
        --dry-run) DRY=1; ARGS+=(--dry-run); shift ;;
        *) echo "device_check: unknown argument $1 (expected --out FILE, --data-root DIR, --dry-run)" >&2; exit 2 ;;
    esac
done
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
elif [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
else
    bash scripts/setup.sh || { echo "device_check: scripts/setup.sh failed; set PYTHON to an interpreter with the requirements" >&2; exit 2; }
    PY=.venv/bin/python
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)

echo "device_check: 1/2 the cuda tests" >&2
timeout 150 "$PY" -m pytest -q -m cuda -p no:cacheprovider --junitxml "$WORK/cuda_tests.xml" tests
TESTS=$?
[ "$DRY" = 1 ] && [ "$TESTS" = 5 ] && TESTS=0   # nothing selected is no failure in a dry run

echo "device_check: 2/2 distillation (world 1, world 2) and vectorised evaluation" >&2
timeout $((480 - ($(date +%s) - START))) "$PY" benchmarks/device_check.py --out "$OUT" \
    --cuda-tests "$WORK/cuda_tests.xml" "${ARGS[@]}"
MEASURED=$?
echo "device_check: $(( $(date +%s) - START )) s; cuda tests exit $TESTS, measurements exit $MEASURED; summary: $OUT" >&2
[ "$TESTS" = 0 ] && [ "$MEASURED" = 0 ]
