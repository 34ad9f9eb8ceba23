#!/bin/sh
# `npm run bench [-- flags]` (flags: bench/bench.options.ts, or `npm run bench -- --help`).
# Installs what the benchmark needs (npm dependencies, h2load), starts Kafka and FerretDB with
# test/infra, runs bench/bench.ts and stops the servers again, also on failure or Ctrl-C.
#
# The servers get their own run directory and ports (HERALD_BENCH_RUN, HERALD_BENCH_KAFKA_PORT,
# HERALD_BENCH_KAFKA_CONTROLLER_PORT, HERALD_BENCH_MONGO_PORT, HERALD_BENCH_POSTGRES_PORT): a benchmark must neither reuse
# the servers of a running `npm test` (their load would skew the numbers) nor be stopped by its
# test/infra/down.sh, and its own down.sh must not stop the tests' servers.
set -eu

root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
cd "$root"

need_h2load=1
need_infra=1
prev=
for arg in "$@"; do
  case "$arg" in
    --help | -h) need_h2load=0; need_infra=0 ;;
    --skip-ceiling | --pool-apps | --pool-apps=*) need_h2load=0 ;;
    # The operator scenario needs Kafka, FerretDB and the Kubernetes control plane, no h2load.
    --operator-apps | --operator-apps=*) need_h2load=0 ;;
    --unit-costs) need_h2load=0; need_infra=0 ;;
    --mode=embedded) need_infra=0 ;;
  esac
  if [ "$prev" = "--mode" ] && [ "$arg" = "embedded" ]; then need_infra=0; fi
  prev=$arg
done

sh packages/cli/bin/ensure-deps.sh

if [ "$need_h2load" = 1 ] && ! command -v h2load >/dev/null 2>&1; then
  echo "[bench] installing h2load (Debian package nghttp2-client) for the ceiling measurement" >&2
  sudo=
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo -n"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nghttp2-client >&2
fi

if [ "$need_infra" = 1 ]; then
  HERALD_RUN=${HERALD_BENCH_RUN:-${HERALD_CACHE:-$HOME/.cache/herald}/run-bench}
  HERALD_KAFKA_PORT=${HERALD_BENCH_KAFKA_PORT:-39192}
  HERALD_KAFKA_CONTROLLER_PORT=${HERALD_BENCH_KAFKA_CONTROLLER_PORT:-39193}
  HERALD_MONGO_PORT=${HERALD_BENCH_MONGO_PORT:-37117}
  HERALD_POSTGRES_PORT=${HERALD_BENCH_POSTGRES_PORT:-35532}
  # up.sh also starts Jaeger (unused here): on ports of its own too.
  HERALD_JAEGER_OTLP_PORT=34328
  HERALD_JAEGER_OTLP_GRPC_PORT=34327
  HERALD_JAEGER_QUERY_PORT=36696
  # ...and the Kubernetes control plane (used by --operator-apps), on ports of its own too, or a
  # running `npm test`'s would collide.
  HERALD_KUBE_PORT=36543
  HERALD_ETCD_PORT=23890
  HERALD_ETCD_PEER_PORT=23900
  HERALD_KUBE_CONTROLLER_MANAGER_PORT=36357
  export HERALD_RUN HERALD_KAFKA_PORT HERALD_KAFKA_CONTROLLER_PORT HERALD_MONGO_PORT HERALD_POSTGRES_PORT HERALD_JAEGER_OTLP_PORT HERALD_JAEGER_OTLP_GRPC_PORT HERALD_JAEGER_QUERY_PORT \
    HERALD_KUBE_PORT HERALD_ETCD_PORT HERALD_ETCD_PEER_PORT HERALD_KUBE_CONTROLLER_MANAGER_PORT
  trap 'bash test/infra/down.sh' EXIT
  trap 'exit 130' INT TERM
  bash test/infra/up.sh >/dev/null
  # shellcheck disable=SC1091
  . "$HERALD_RUN/env"
fi

status=0
node --import tsx bench/bench.ts "$@" || status=$?
exit "$status"
