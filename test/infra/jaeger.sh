#!/usr/bin/env bash
# Trace backend for Herald's tests: Jaeger v2 (an OpenTelemetry Collector distribution) with
# in-memory storage, OTLP in, query API out.
#
#   test/infra/jaeger.sh install|start|stop|restart|status
#
# install  builds cmd/jaeger of github.com/jaegertracing/jaeger from the Go module proxy into
#          $HERALD_CACHE/jaeger-<version>/jaeger (Go caches under $HERALD_CACHE/go-jaeger).
# start    installs if needed and starts it with a config binding everything to 127.0.0.1:
#          OTLP/HTTP on 34318, OTLP/gRPC on 34317, the query API/UI on 36686; waits until
#          GET /api/services answers. Reuses a running, healthy one.
# stop     SIGTERM, then SIGKILL after a deadline.
#
# Why v1.76.0: the module path has no /v2 suffix, so the v2.x tags are not valid versions for
# the Go tooling; the module proxy serves v1.76.0, whose cmd/jaeger is the v2 binary (the v1
# line ended there). Its go.mod has a replace directive, which `go install pkg@version` refuses,
# so the install builds inside a copy of the downloaded module, with the module's own go.mod.
#
# Environment: HERALD_CACHE, HERALD_RUN (see lib.sh), HERALD_JAEGER_OTLP_PORT (34318),
# HERALD_JAEGER_OTLP_GRPC_PORT (34317), HERALD_JAEGER_QUERY_PORT (36686),
# HERALD_JAEGER_START_TIMEOUT (seconds, 60).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

JAEGER_VERSION=1.76.0
JAEGER_MODULE=github.com/jaegertracing/jaeger
JAEGER_OTLP_PORT="${HERALD_JAEGER_OTLP_PORT:-34318}"
JAEGER_OTLP_GRPC_PORT="${HERALD_JAEGER_OTLP_GRPC_PORT:-34317}"
JAEGER_QUERY_PORT="${HERALD_JAEGER_QUERY_PORT:-36686}"
JAEGER_HOME="$HERALD_CACHE/jaeger-$JAEGER_VERSION"
JAEGER_BIN="$JAEGER_HOME/jaeger"
JAEGER_STAMP="$JAEGER_HOME/.installed"
JAEGER_RUN="$HERALD_RUN/jaeger"
JAEGER_CONFIG="$JAEGER_RUN/config.yaml"
# bump when the build recipe below changes, to force a rebuild of cached binaries
JAEGER_RECIPE=1

SRV_NAME=jaeger
SRV_PID_FILE="$JAEGER_RUN/jaeger.pid"
SRV_LOG="$JAEGER_RUN/jaeger.log"
SRV_MARKER="--config=$JAEGER_CONFIG"
SRV_PORTS=("$JAEGER_OTLP_PORT" "$JAEGER_QUERY_PORT")
SRV_START_TIMEOUT="${HERALD_JAEGER_START_TIMEOUT:-60}"
SRV_STOP_TIMEOUT=15
SRV_FIX_HINT="Check the log for the cause (a port taken?); 'rm -rf $JAEGER_HOME' forces a rebuild."

jaeger_stamp_content() {
  echo "jaeger v$JAEGER_VERSION recipe $JAEGER_RECIPE"
}

srv_is_installed() {
  [[ -x "$JAEGER_BIN" && -f "$JAEGER_STAMP" && "$(<"$JAEGER_STAMP")" == "$(jaeger_stamp_content)" ]]
}

srv_install() {
  require_go
  go_build_env "$HERALD_CACHE/go-jaeger"
  local tmp="$JAEGER_HOME.tmp.$$" logf="$HERALD_CACHE/logs/jaeger-install.log"
  mkdir -p "$HERALD_CACHE/logs" "$tmp"
  : >"$logf"
  go_module_source jaeger "$JAEGER_MODULE@v$JAEGER_VERSION" "$tmp/src" "$logf"
  note "building jaeger v$JAEGER_VERSION (about 3 minutes on 2 cores, first run only)"
  if ! (cd "$tmp/src" && go build -trimpath -o "$tmp/jaeger" ./cmd/jaeger) >>"$logf" 2>&1; then
    rm -rf "$tmp"
    fail_with_log jaeger "$logf" "go build of Jaeger failed. Check the Go version (need >= 1.24) and that the module proxy is reachable."
  fi
  "$tmp/jaeger" --help >/dev/null 2>>"$logf" || { rm -rf "$tmp"; fail_with_log jaeger "$logf" "the built binary does not run."; }
  rm -rf "$tmp/src"
  rm -rf "$JAEGER_HOME"
  mv "$tmp" "$JAEGER_HOME"
  jaeger_stamp_content >"$JAEGER_STAMP"
  go_slim_cache
}

srv_launch() {
  mkdir -p "$JAEGER_RUN"
  cat >"$JAEGER_CONFIG" <<YAML
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:$JAEGER_QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:0
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$JAEGER_OTLP_GRPC_PORT
      http:
        endpoint: 127.0.0.1:$JAEGER_OTLP_PORT
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
YAML
  [[ -f "$SRV_LOG" ]] && mv -f "$SRV_LOG" "$SRV_LOG.1"
  start_detached "$SRV_LOG" "$JAEGER_BIN" "$SRV_MARKER"
}

srv_probe() {
  local rc=0
  node_probe jaeger "$JAEGER_QUERY_PORT" 3000 || rc=$?
  if ((rc == 2)); then
    port_open "$JAEGER_QUERY_PORT" && echo "jaeger ok: query port open (install node for a real probe)" && return 0
    echo "jaeger not answering on 127.0.0.1:$JAEGER_QUERY_PORT"
    return 1
  fi
  return "$rc"
}

server_main "$@"
