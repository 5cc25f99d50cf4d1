#!/usr/bin/env bash
# Set up (with test extras) and run the whole test suite under a virtual X server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test --train  # the CPU torch build: training/export smoke tests run everywhere, CI included
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-xcb}
export CASEBOOK_SHARED=${CASEBOOK_SHARED:-$(cd .. && pwd)/shared}
# pytest-xvfb starts Xvfb for the session; -p xvfb is loaded from the test extra.
exec .venv/bin/python -m pytest "$@"
