#!/usr/bin/env bash
# schemathesis (property-based testing of an OpenAPI document) for the gateway's fuzz suite,
# test/fuzz/openapi.fuzz.test.ts.
#
#   test/infra/schemathesis.sh install|status|env
#
# install  creates a virtualenv (python3 -m venv) at $HERALD_CACHE/schemathesis-<v> and pip
#          installs schemathesis==<v> from PyPI into it, once: the stamp file makes a second run
#          a no-op, a version bump a reinstall. pip's download cache lives in
#          $HERALD_CACHE/pip, so a reinstall after deleting the venv needs no network.
# status   one line; exit 0 installed, 3 not installed.
# env      prints HERALD_SCHEMATHESIS=<path of the st binary> (up.sh exports it).
#
# It is a tool, not a server: nothing is started or stopped. Needs python3 >= 3.9 with the venv
# module (Debian: python3-venv, installed here with apt-get when missing and allowed).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned so a run is reproducible (the same generators and checks for the same seed); 4.x
# supports Python 3.9 to 3.13.
SCHEMATHESIS_VERSION=4.32.5
# bump when the install recipe below changes, to force a reinstall
SCHEMATHESIS_RECIPE=1

ST_HOME="$HERALD_CACHE/schemathesis-$SCHEMATHESIS_VERSION"
ST_BIN="$ST_HOME/bin/st"
ST_LOG="$HERALD_CACHE/logs/schemathesis-install.log"

st_stamp() { echo "schemathesis $SCHEMATHESIS_VERSION recipe $SCHEMATHESIS_RECIPE"; }

st_installed() {
  [[ -f "$ST_HOME/.installed" && "$(<"$ST_HOME/.installed")" == "$(st_stamp)" && -x "$ST_BIN" ]]
}

require_python_venv() {
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_install python3 python3-venv || true
  fi
  command -v python3 >/dev/null 2>&1 ||
    die "python3 not found. Install Python >= 3.9 (Debian: apt-get install -y python3 python3-venv) and retry."
  python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' ||
    die "python3 $(python3 -c 'import platform; print(platform.python_version())') found, schemathesis $SCHEMATHESIS_VERSION needs >= 3.9."
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 ||
    die "python3 has no venv/ensurepip module. Install it (Debian: apt-get install -y python3-venv) and retry."
}

_st_install_locked() {
  # another invocation may have finished the install while we waited for the lock
  st_installed && return 0
  local t0 tmp="$ST_HOME.tmp.$$"
  t0=$(now_ms)
  log "installing schemathesis $SCHEMATHESIS_VERSION into $ST_HOME (first run only; log: $ST_LOG)"
  require_python_venv
  mkdir -p "$(dirname "$ST_LOG")" "$HERALD_CACHE/pip"
  rm -rf "$ST_HOME" "$ST_HOME".tmp.*
  # A venv records its own path in its scripts, so it is built in place; the stamp, written
  # last, is what marks it complete (a half-built venv is replaced by the next install).
  echo "== python3 -m venv $ST_HOME ($(python3 --version 2>&1))" >>"$ST_LOG"
  python3 -m venv "$ST_HOME" >>"$ST_LOG" 2>&1 || fail_with_log schemathesis "$ST_LOG" "python3 -m venv failed"
  echo "== pip install schemathesis==$SCHEMATHESIS_VERSION" >>"$ST_LOG"
  if ! PIP_CACHE_DIR="$HERALD_CACHE/pip" "$ST_HOME/bin/python" -m pip install --disable-pip-version-check --no-input \
    "schemathesis==$SCHEMATHESIS_VERSION" >>"$ST_LOG" 2>&1; then
    fail_with_log schemathesis "$ST_LOG" "pip install schemathesis==$SCHEMATHESIS_VERSION failed. Check that PyPI is reachable (pip config list) and retry."
  fi
  local got
  got=$("$ST_BIN" --version 2>>"$ST_LOG" | tr -d '\r') || fail_with_log schemathesis "$ST_LOG" "$ST_BIN --version failed after the install"
  [[ "$got" == *"$SCHEMATHESIS_VERSION"* ]] || die "schemathesis: $ST_BIN --version says '$got', expected $SCHEMATHESIS_VERSION"
  rm -rf "$tmp"
  st_stamp >"$ST_HOME/.installed"
  log "schemathesis $SCHEMATHESIS_VERSION installed ($(since "$t0")): $got"
}

st_install() {
  if st_installed; then
    note "schemathesis $SCHEMATHESIS_VERSION already installed"
    return 0
  fi
  with_lock schemathesis-install _st_install_locked
}

st_status() {
  if st_installed; then
    echo "schemathesis: installed ($ST_BIN, $(st_stamp))"
    return 0
  fi
  echo "schemathesis: not installed (run test/infra/schemathesis.sh install)"
  return 3
}

case "${1:-}" in
  install) st_install ;;
  status) st_status ;;
  env) echo "HERALD_SCHEMATHESIS=$ST_BIN" ;;
  *)
    echo "usage: $(basename "$0") install|status|env" >&2
    exit 2
    ;;
esac
