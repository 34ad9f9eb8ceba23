#!/usr/bin/env bash
# promtool, Prometheus's checker, for test/integration/promtool.test.ts: `promtool check rules`
# on the PrometheusRule the chart renders and `promtool check metrics` on what every /metrics
# endpoint serves.
#
#   test/infra/promtool.sh [install]|path|status|env
#
# install  (the default) installs Debian's `prometheus` package (promtool comes with it) through
#          apt-get, once: when `promtool` is already in PATH it is a no-op. Prints its path on
#          stdout.
# path     prints the binary's path (empty when not installed).
# status   one line; exit 0 installed, 3 not installed.
# env      prints HERALD_PROMTOOL=<path> (up.sh exports it).
#
# It is a tool, not a server: nothing is started (the package's own prometheus service is not
# started either: policy-rc.d refuses it, and with no init system nothing would start it).
#
# Cold install measured on 2 cores: 17 s (apt-get update and the install of prometheus 2.42
# with its dependencies; log in $HERALD_CACHE/logs/promtool-install.log). A run with promtool
# installed: ~10 ms.
#
# Environment: HERALD_CACHE (see lib.sh).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROMTOOL_LOG="$HERALD_CACHE/logs/promtool-install.log"

promtool_path() { command -v promtool 2>/dev/null || true; }

promtool_installed() { command -v promtool >/dev/null 2>&1; }

_promtool_install_locked() {
  # another invocation may have finished the install while we waited for the lock
  promtool_installed && return 0
  local t0
  t0=$(now_ms)
  log "installing promtool (Debian package prometheus; first run only)"
  mkdir -p "$(dirname "$PROMTOOL_LOG")"
  # Debian's postinst would start the prometheus daemon where an init system runs: refuse it
  # (exit 101 = action forbidden) for the duration of the install, as Docker images do.
  local policy=/usr/sbin/policy-rc.d created=
  if [[ ! -e "$policy" && $(id -u) -eq 0 ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
  fi
  local ok=1
  apt_install prometheus 2>"$PROMTOOL_LOG" || ok=
  [[ -n "$created" ]] && rm -f "$policy"
  [[ -n "$ok" ]] || fail_with_log promtool "$PROMTOOL_LOG" "apt-get install prometheus failed (needs root or passwordless sudo, and Debian's package archive). Install it by hand (apt-get install -y prometheus) or put a promtool in PATH."
  promtool_installed || die "prometheus installed but promtool is not in PATH"
  log "promtool installed ($(since "$t0")): $(promtool_path) ($(promtool --version 2>&1 | head -n1))"
}

promtool_install() {
  if promtool_installed; then
    note "promtool already installed"
  else
    with_lock promtool-install _promtool_install_locked
  fi
  promtool_path
}

case "${1:-install}" in
  install) promtool_install ;;
  path) promtool_path ;;
  status)
    if promtool_installed; then
      echo "promtool: installed at $(promtool_path)"
    else
      echo "promtool: not installed"
      exit 3
    fi
    ;;
  env) echo "HERALD_PROMTOOL=$(promtool_path)" ;;
  *)
    echo "usage: $(basename "$0") [install]|path|status|env" >&2
    exit 2
    ;;
esac
