#!/usr/bin/env bash
# grpcurl, the gRPC command-line client, for test/integration/grpcurl.test.ts: it checks that
# server reflection works for a real client (the README's grpcurl example, word for word).
#
#   test/infra/grpcurl.sh [install]|path|status|env
#
# install  (the default) builds github.com/fullstorydev/grpcurl/cmd/grpcurl from the Go module
#          proxy with `go install …@v<version>`, GOBIN pointing into
#          $HERALD_CACHE/grpcurl-<version>/ (Go caches under $HERALD_CACHE/go-grpcurl), once:
#          the stamp file makes a second run a no-op. Prints the binary's path on stdout.
# path     prints the binary's path (installed or not).
# status   one line; exit 0 installed, 3 not installed.
# env      prints HERALD_GRPCURL=<path> (up.sh exports it).
#
# It is a tool, not a server: nothing is started or stopped.
#
# Why v1.9.3 and a fallback: v1.9.3 is the release this suite was written against (its go.mod
# says go 1.21, so any Go >= 1.21 builds it). Should it stop building with the machine's Go, the
# install takes the newest version on the proxy that does, and remembers it in
# $HERALD_CACHE/grpcurl.version so later runs use that one without rebuilding. If a release ever
# gets replace directives in its go.mod, `go install pkg@version` refuses it; the install then
# builds it as a dependency of a wrapper module (where those directives are ignored).
#
# Cold install measured on 2 cores: 115 s (download and `go install` 101 s, slimming the Go
# cache 14 s), while the other test/infra builds ran beside it (load average 13), as they do in
# up.sh; a bare `go install` on its own took 118 s under the same load. 26 MB binary, 34 MB of
# module zips kept in go-grpcurl. A run with the binary cached: 60 ms.
#
# Environment: HERALD_CACHE (see lib.sh).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GRPCURL_VERSION=1.9.3
GRPCURL_PKG=github.com/fullstorydev/grpcurl/cmd/grpcurl
GRPCURL_MODULE=github.com/fullstorydev/grpcurl
GRPCURL_GO="$HERALD_CACHE/go-grpcurl"
GRPCURL_LOG="$HERALD_CACHE/logs/grpcurl-install.log"
# the version the last install settled on, when it is not GRPCURL_VERSION
GRPCURL_CHOSEN="$HERALD_CACHE/grpcurl.version"
# bump when the build recipe below changes, to force a rebuild of cached binaries
GRPCURL_RECIPE=1

grpcurl_home() { echo "$HERALD_CACHE/grpcurl-$1"; }
grpcurl_stamp() { echo "grpcurl v$1 recipe $GRPCURL_RECIPE"; }

grpcurl_installed_at() {
  local home; home=$(grpcurl_home "$1")
  [[ -x "$home/grpcurl" && -f "$home/.installed" && "$(<"$home/.installed")" == "$(grpcurl_stamp "$1")" ]]
}

# The version in use: the pinned one, or the fallback a previous install recorded.
grpcurl_version() {
  if ! grpcurl_installed_at "$GRPCURL_VERSION" && [[ -f "$GRPCURL_CHOSEN" ]]; then
    local v; v=$(<"$GRPCURL_CHOSEN")
    if grpcurl_installed_at "$v"; then echo "$v"; return; fi
  fi
  echo "$GRPCURL_VERSION"
}

grpcurl_path() { echo "$(grpcurl_home "$(grpcurl_version)")/grpcurl"; }

grpcurl_installed() { grpcurl_installed_at "$(grpcurl_version)"; }

# build_version V: builds grpcurl vV into its home; fails (without dying) when it does not build.
build_version() {
  local v="$1" home tmp t0 out
  home=$(grpcurl_home "$v")
  tmp="$home.tmp.$$"
  t0=$(now_ms)
  rm -rf "$home".tmp.*
  mkdir -p "$tmp"
  # grpcurl's Makefile sets main.version the same way; without it `grpcurl -version` says "dev build".
  local ldflags="-s -w -X main.version=v$v"
  note "building grpcurl v$v (about 2 minutes on 2 cores, first run only; log: $GRPCURL_LOG)"
  echo "== go install $GRPCURL_PKG@v$v ($(go env GOVERSION))" >>"$GRPCURL_LOG"
  if ! (cd "$tmp" && GOBIN="$tmp" go install -trimpath -ldflags "$ldflags" "$GRPCURL_PKG@v$v") >>"$GRPCURL_LOG" 2>&1; then
    if ! grep -q "replace directives" "$GRPCURL_LOG"; then
      rm -rf "$tmp"
      return 1
    fi
    note "grpcurl v$v has replace directives in its go.mod; building it in a wrapper module"
    mkdir -p "$tmp/wrapper"
    if ! (cd "$tmp/wrapper" && go mod init herald.test/grpcurl-build && go get "$GRPCURL_PKG@v$v" &&
      go build -trimpath -ldflags "$ldflags" -o "$tmp/grpcurl" "$GRPCURL_PKG") >>"$GRPCURL_LOG" 2>&1; then
      rm -rf "$tmp"
      return 1
    fi
    rm -rf "$tmp/wrapper"
  fi
  out=$("$tmp/grpcurl" -version 2>&1 || true)
  if [[ "$out" != "grpcurl v$v" ]]; then
    echo "built binary says '$out', expected 'grpcurl v$v'" >>"$GRPCURL_LOG"
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$home"
  mv "$tmp" "$home"
  grpcurl_stamp "$v" >"$home/.installed"
  log "built grpcurl v$v ($(since "$t0"))"
}

_grpcurl_install_locked() {
  # another invocation may have finished the install while we waited for the lock
  grpcurl_installed && return 0
  local t0 v
  t0=$(now_ms)
  log "installing grpcurl into $HERALD_CACHE (first run only)"
  require_go 21
  go_build_env "$GRPCURL_GO"
  mkdir -p "$(dirname "$GRPCURL_LOG")" "$GRPCURL_GO"
  : >"$GRPCURL_LOG"
  if build_version "$GRPCURL_VERSION"; then
    rm -f "$GRPCURL_CHOSEN"
  else
    log "grpcurl v$GRPCURL_VERSION does not build with $(go env GOVERSION) (see $GRPCURL_LOG); trying newer releases"
    local versions=() ok=
    # newest first: `go list -m -versions` lists the proxy's releases oldest first
    read -r -a versions <<<"$(cd "$GRPCURL_GO" && go list -m -versions "$GRPCURL_MODULE" 2>>"$GRPCURL_LOG" | cut -d' ' -f2-)"
    for ((i = ${#versions[@]} - 1; i >= 0; i--)); do
      v=${versions[i]#v}
      [[ "$v" == "$GRPCURL_VERSION" || "$v" == *-* ]] && continue
      if build_version "$v"; then ok=1; echo "$v" >"$GRPCURL_CHOSEN"; break; fi
      note "grpcurl v$v does not build either"
    done
    [[ -n "$ok" ]] || fail_with_log grpcurl "$GRPCURL_LOG" "no grpcurl release builds with $(go env GOVERSION). Check the Go version and that the module proxy is reachable (go env GOPROXY)."
  fi
  go_slim_cache
  grpcurl_installed || die "grpcurl install finished but the install check still fails"
  log "grpcurl installed ($(since "$t0")): $(grpcurl_path)"
}

grpcurl_install() {
  if grpcurl_installed; then
    note "grpcurl v$(grpcurl_version) already installed"
  else
    with_lock grpcurl-install _grpcurl_install_locked
  fi
  grpcurl_path
}

case "${1:-install}" in
  install) grpcurl_install ;;
  path) grpcurl_path ;;
  status)
    if grpcurl_installed; then
      echo "grpcurl: installed v$(grpcurl_version) at $(grpcurl_path)"
    else
      echo "grpcurl: not installed"
      exit 3
    fi
    ;;
  env) echo "HERALD_GRPCURL=$(grpcurl_path)" ;;
  *)
    echo "usage: $(basename "$0") [install]|path|status|env" >&2
    exit 2
    ;;
esac
