#!/usr/bin/env bash
# schemathesis (property-based testing of an OpenAPI document) for the gateway's fuzz suite,
# test/fuzz/openapi.fuzz.test.ts.
#
#   test/infra/schemathesis.sh install|status|env
#
# install  a virtualenv at $HERALD_CACHE/schemathesis-<v> with schemathesis==<v> from PyPI
#          (see pyvenv.sh).
# status   one line; exit 0 installed, 3 not installed.
# env      prints HERALD_SCHEMATHESIS=<path of the st binary> (up.sh exports it).
#
# It is a tool, not a server: nothing is started or stopped.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned so a run is reproducible (the same generators and checks for the same seed); 4.x
# supports Python 3.9 to 3.13.
PY_TOOL=schemathesis
PY_VERSION=4.32.5
PY_RECIPE=1
PY_ENV=HERALD_SCHEMATHESIS
PY_BIN=bin/st
py_version() { "$PY_HOME/bin/st" --version; }

# shellcheck source=pyvenv.sh
source "$(dirname "${BASH_SOURCE[0]}")/pyvenv.sh"
pyvenv_main "$@"
