#!/usr/bin/env bash
# cent, the official Centrifugo Python client, for the Centrifugo PRO push compat suite,
# test/integration/centrifugo.compat.test.ts.
#
#   test/infra/cent.sh install|status|env
#
# install  a virtualenv at $HERALD_CACHE/cent-<v> with cent==<v> from PyPI (see pyvenv.sh).
# status   one line; exit 0 installed, 3 not installed.
# env      prints HERALD_CENT_PYTHON=<the venv's python, which imports cent> (up.sh exports it).
#
# It is a tool, not a server: nothing is started or stopped.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned: the suite asserts the wire of exactly this client (its dto.py field names and how it
# raises on an error reply). cent 5.x needs Python >= 3.9 and pulls requests and pydantic 2.
PY_TOOL=cent
PY_VERSION=5.2.0
PY_RECIPE=1
PY_ENV=HERALD_CENT_PYTHON
PY_BIN=bin/python
py_version() { "$PY_HOME/bin/python" -c 'import importlib.metadata as m, cent; print(m.version("cent"))'; }

# shellcheck source=pyvenv.sh
source "$(dirname "${BASH_SOURCE[0]}")/pyvenv.sh"
pyvenv_main "$@"
