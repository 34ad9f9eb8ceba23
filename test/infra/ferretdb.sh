#!/usr/bin/env bash
# MongoDB-wire server for Herald's tests: FerretDB v1 on PostgreSQL (test/infra/postgres.sh).
#
#   test/infra/ferretdb.sh install|start|stop|restart|status|kill|resume
#
# install  builds FerretDB from the Go module proxy into $HERALD_CACHE/ferretdb-<version>/ferretdb
#          (module, build and GOPATH caches under $HERALD_CACHE/go).
# start    installs if needed, starts PostgreSQL (or reuses it), gives FerretDB a fresh, empty
#          database and starts FerretDB on 127.0.0.1:37017; waits until an OP_MSG ping answers ok.
#          Reuses a running, healthy one.
# stop     SIGTERM, then SIGKILL after a deadline; then PostgreSQL the same way.
# kill     SIGKILLs FerretDB (a crash) and leaves PostgreSQL running; `resume` starts FerretDB
#          again on the same database (FerretDB keeps no state of its own), as a pod restarts.
#
# Why PostgreSQL and not FerretDB's SQLite backend: SQLite's plans scan whole collections for
# the queries Herald makes (1.9–22 s per update or upsert at 100k devices; issue 16), PostgreSQL
# with the GIN indexes postgres.sh adds serves them from indexes (3–6 ms).
#
# Why not `go install …/cmd/ferretdb@v1.24.2` or a `go get -tool` wrapper module: FerretDB's
# build/version package panics unless build/version/version.txt exists whenever the binary's
# main module is github.com/FerretDB/FerretDB, and since Go 1.24 that is also the case for a
# tool built from a wrapper module. So the install copies the module source that
# `go mod download` fetched from the proxy (into the cache, never into this repo), writes the
# one generated file upstream's `task gen-version` would write (version.txt), and builds it
# with FerretDB's own go.mod/go.sum.
#
# Environment: HERALD_CACHE, HERALD_RUN (see lib.sh), HERALD_MONGO_PORT (37017), HERALD_POSTGRES_PORT,
# HERALD_FERRETDB_LOG_LEVEL (info), HERALD_FERRETDB_START_TIMEOUT (seconds, 30).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FERRETDB_VERSION=1.24.2
FERRETDB_MODULE=github.com/FerretDB/FerretDB
FERRETDB_PORT="${HERALD_MONGO_PORT:-37017}"
FERRETDB_LOG_LEVEL="${HERALD_FERRETDB_LOG_LEVEL:-info}"
FERRETDB_HOME="$HERALD_CACHE/ferretdb-$FERRETDB_VERSION"
FERRETDB_BIN="$FERRETDB_HOME/ferretdb"
FERRETDB_STAMP="$FERRETDB_HOME/.installed"
FERRETDB_RUN="$HERALD_RUN/ferretdb"
# bump when the build recipe below changes, to force a rebuild of cached binaries
FERRETDB_RECIPE=1

SRV_NAME=ferretdb
SRV_PID_FILE="$FERRETDB_RUN/ferretdb.pid"
SRV_LOG="$FERRETDB_RUN/ferretdb.log"
SRV_MARKER="--state-dir=$FERRETDB_RUN/state"
SRV_PORTS=("$FERRETDB_PORT")
SRV_START_TIMEOUT="${HERALD_FERRETDB_START_TIMEOUT:-30}"
SRV_STOP_TIMEOUT=15
SRV_FIX_HINT="Check the log for the cause; 'test/infra/ferretdb.sh stop' then 'start' retries with fresh data; 'rm -rf $FERRETDB_HOME' forces a rebuild."

ferretdb_stamp_content() {
  echo "ferretdb v$FERRETDB_VERSION recipe $FERRETDB_RECIPE"
}

srv_is_installed() {
  [[ -x "$FERRETDB_BIN" && -f "$FERRETDB_STAMP" && "$(<"$FERRETDB_STAMP")" == "$(ferretdb_stamp_content)" ]]
}

srv_install() {
  require_go
  # Its historical cache directory ($HERALD_CACHE/go), kept so existing caches stay valid.
  go_build_env "$HERALD_CACHE/go"
  local tmp="$FERRETDB_HOME.tmp.$$" logf="$HERALD_CACHE/logs/ferretdb-install.log"
  mkdir -p "$HERALD_CACHE/logs" "$tmp"
  : >"$logf"
  go_module_source ferretdb "$FERRETDB_MODULE@v$FERRETDB_VERSION" "$tmp/src" "$logf"
  echo "v$FERRETDB_VERSION" >"$tmp/src/build/version/version.txt"
  note "building ferretdb v$FERRETDB_VERSION (a minute or two on 2 cores)"
  if ! (cd "$tmp/src" && go build -trimpath -o "$tmp/ferretdb" ./cmd/ferretdb) >>"$logf" 2>&1; then
    rm -rf "$tmp"
    fail_with_log ferretdb "$logf" "go build of FerretDB failed. Check the Go version (need >= 1.24) and that the module proxy is reachable."
  fi
  local v
  v=$("$tmp/ferretdb" --version 2>&1 | sed -n 's/^version: //p')
  if [[ "$v" != "v$FERRETDB_VERSION" ]]; then
    "$tmp/ferretdb" --version >>"$logf" 2>&1 || true
    rm -rf "$tmp"
    fail_with_log ferretdb "$logf" "the built binary does not report version v$FERRETDB_VERSION (got '$v')."
  fi
  rm -rf "$tmp/src"
  rm -rf "$FERRETDB_HOME"
  mv "$tmp" "$FERRETDB_HOME"
  ferretdb_stamp_content >"$FERRETDB_STAMP"
  go_slim_cache
}

srv_launch() {
  local state="$FERRETDB_RUN/state" url
  "$INFRA_DIR/postgres.sh" start
  [[ -n "${FERRETDB_RESUME:-}" ]] || "$INFRA_DIR/postgres.sh" reset
  url=$("$INFRA_DIR/postgres.sh" env)
  rm -rf "$state" "$FERRETDB_RUN/data"
  mkdir -p "$state"
  [[ -f "$SRV_LOG" ]] && mv -f "$SRV_LOG" "$SRV_LOG.1"
  start_detached "$SRV_LOG" "$FERRETDB_BIN" \
    --handler=postgresql \
    --postgresql-url="${url#HERALD_POSTGRES_URL=}" \
    --listen-addr="127.0.0.1:$FERRETDB_PORT" \
    "$SRV_MARKER" \
    --debug-addr=- \
    --telemetry=disable \
    --log-level="$FERRETDB_LOG_LEVEL"
}

srv_probe() {
  local rc=0
  node_probe mongo "$FERRETDB_PORT" 3000 || rc=$?
  if ((rc == 2)); then
    # no node on this machine: fall back to "port open and FerretDB logged its listener"
    port_open "$FERRETDB_PORT" && grep -q "Listening on TCP 127.0.0.1:$FERRETDB_PORT" "$SRV_LOG" 2>/dev/null &&
      echo "ferretdb ok: port open, log says listening (install node for a real wire ping)" && return 0
    echo "ferretdb not answering on 127.0.0.1:$FERRETDB_PORT"
    return 1
  fi
  return "$rc"
}

case "${1:-}" in
  stop) server_stop; "$INFRA_DIR/postgres.sh" stop ;;
  restart) server_stop; "$INFRA_DIR/postgres.sh" stop; server_start ;;
  kill)
    read -r -a pids <<<"$(server_pids)"
    ((${#pids[@]} == 0)) || kill -KILL "${pids[@]}"
    rm -f "$SRV_PID_FILE"
    ;;
  resume) FERRETDB_RESUME=1 server_start ;;
  *) server_main "$@" ;;
esac
