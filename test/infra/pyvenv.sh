#!/usr/bin/env bash
# A pinned PyPI tool in a virtualenv under $HERALD_CACHE, for the suites that drive Herald with a
# Python program (schemathesis, the cent client). Sourced after lib.sh by a script that sets
#   PY_TOOL     the PyPI package (also its name in messages, logs and the venv's directory)
#   PY_VERSION  its pinned version
#   PY_RECIPE   bumped when the install recipe changes, to force a reinstall
#   PY_ENV      the variable `env` prints, and PY_BIN what it points at, relative to the venv
#   py_version  a function printing the installed version, checked against PY_VERSION
# and then calls `pyvenv_main "$@"` (install | status | env).
#
# install creates the venv (python3 -m venv) and pip installs PY_TOOL==PY_VERSION into it, once:
# a stamp file makes a second run a no-op and a version bump a reinstall. pip's download cache
# lives in $HERALD_CACHE/pip, so a reinstall after deleting the venv needs no network. Needs
# python3 >= 3.9 with the venv module (Debian: python3-venv, installed with apt-get when missing
# and allowed).

PY_HOME="$HERALD_CACHE/$PY_TOOL-$PY_VERSION"
PY_LOG="$HERALD_CACHE/logs/$PY_TOOL-install.log"

py_stamp() { echo "$PY_TOOL $PY_VERSION recipe $PY_RECIPE"; }

py_installed() {
  [[ -f "$PY_HOME/.installed" && "$(<"$PY_HOME/.installed")" == "$(py_stamp)" && -x "$PY_HOME/$PY_BIN" ]]
}

require_python_venv() {
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_install python3 python3-venv || true
  fi
  command -v python3 >/dev/null 2>&1 ||
    die "python3 not found. Install Python >= 3.9 (Debian: apt-get install -y python3 python3-venv) and retry."
  python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' ||
    die "python3 $(python3 -c 'import platform; print(platform.python_version())') found, $PY_TOOL $PY_VERSION needs >= 3.9."
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 ||
    die "python3 has no venv/ensurepip module. Install it (Debian: apt-get install -y python3-venv) and retry."
}

_py_install_locked() {
  # another invocation may have finished the install while we waited for the lock
  py_installed && return 0
  local t0
  t0=$(now_ms)
  log "installing $PY_TOOL $PY_VERSION into $PY_HOME (first run only; log: $PY_LOG)"
  require_python_venv
  mkdir -p "$(dirname "$PY_LOG")" "$HERALD_CACHE/pip"
  rm -rf "$PY_HOME" "$PY_HOME".tmp.*
  # A venv records its own path in its scripts, so it is built in place; the stamp, written
  # last, is what marks it complete (a half-built venv is replaced by the next install).
  echo "== python3 -m venv $PY_HOME ($(python3 --version 2>&1))" >>"$PY_LOG"
  python3 -m venv "$PY_HOME" >>"$PY_LOG" 2>&1 || fail_with_log "$PY_TOOL" "$PY_LOG" "python3 -m venv failed"
  echo "== pip install $PY_TOOL==$PY_VERSION" >>"$PY_LOG"
  if ! PIP_CACHE_DIR="$HERALD_CACHE/pip" "$PY_HOME/bin/python" -m pip install --disable-pip-version-check --no-input \
    "$PY_TOOL==$PY_VERSION" >>"$PY_LOG" 2>&1; then
    fail_with_log "$PY_TOOL" "$PY_LOG" "pip install $PY_TOOL==$PY_VERSION failed. Check that PyPI is reachable (pip config list) and retry."
  fi
  local got
  got=$(py_version 2>>"$PY_LOG" | tr -d '\r') || fail_with_log "$PY_TOOL" "$PY_LOG" "$PY_TOOL does not run after the install"
  [[ "$got" == *"$PY_VERSION"* ]] || die "$PY_TOOL: the venv reports '$got', expected $PY_VERSION"
  py_stamp >"$PY_HOME/.installed"
  log "$PY_TOOL $PY_VERSION installed ($(since "$t0")): $got"
}

pyvenv_main() {
  case "${1:-}" in
    install)
      if py_installed; then
        note "$PY_TOOL $PY_VERSION already installed"
        return 0
      fi
      with_lock "$PY_TOOL-install" _py_install_locked
      ;;
    status)
      if py_installed; then
        echo "$PY_TOOL: installed ($PY_HOME/$PY_BIN, $(py_stamp))"
        return 0
      fi
      echo "$PY_TOOL: not installed (run test/infra/$(basename "$0") install)"
      return 3
      ;;
    env) echo "$PY_ENV=$PY_HOME/$PY_BIN" ;;
    *)
      echo "usage: $(basename "$0") install|status|env" >&2
      exit 2
      ;;
  esac
}
