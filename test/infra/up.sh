#!/usr/bin/env bash
# Install (first run only) and start every real server the integration tests need, then print
# the connection settings as KEY=VALUE lines on stdout and write them to $HERALD_RUN/env
# (as `export KEY=VALUE` lines: `source` it, or `node --env-file=$HERALD_RUN/env`).
# Progress goes to stderr, so `eval "$(test/infra/up.sh)"` works. Idempotent: running servers
# that answer are reused. Stop everything with test/infra/down.sh.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

t0=$(now_ms)
mkdir -p "$HERALD_RUN"
# Before anything starts and connects: every server's port out of the ephemeral range (see
# reserve_ports; each server also reserves its own when it starts). The defaults of each script.
reserve_ports "${HERALD_KAFKA_PORT:-39092}" "${HERALD_KAFKA_CONTROLLER_PORT:-39093}" "${HERALD_MONGO_PORT:-37017}" "${HERALD_POSTGRES_PORT:-35432}" \
  "${HERALD_JAEGER_OTLP_PORT:-34318}" "${HERALD_JAEGER_OTLP_GRPC_PORT:-34317}" "${HERALD_JAEGER_QUERY_PORT:-36686}" \
  "${HERALD_KUBE_PORT:-36443}" "${HERALD_ETCD_PORT:-23790}" "${HERALD_ETCD_PEER_PORT:-23800}" "${HERALD_KUBE_CONTROLLER_MANAGER_PORT:-36257}"

# All in parallel: on a cold machine FerretDB, Jaeger and the Kubernetes control plane compile
# while Maven downloads and Kafka starts.
"$INFRA_DIR/kafka.sh" start &
kafka_job=$!
"$INFRA_DIR/ferretdb.sh" start &
ferretdb_job=$!
"$INFRA_DIR/jaeger.sh" start &
jaeger_job=$!
"$INFRA_DIR/kube.sh" start &
kube_job=$!
# a tool, not a server: its install prints the binary's path, the env line below exports it
"$INFRA_DIR/grpcurl.sh" install >/dev/null &
grpcurl_job=$!
"$INFRA_DIR/schemathesis.sh" install &
schemathesis_job=$!
"$INFRA_DIR/cent.sh" install &
cent_job=$!
"$INFRA_DIR/promtool.sh" install >/dev/null &
promtool_job=$!

failed=()
wait "$kafka_job" || failed+=(kafka)
wait "$ferretdb_job" || failed+=(ferretdb)
wait "$jaeger_job" || failed+=(jaeger)
wait "$kube_job" || failed+=(kube)
wait "$grpcurl_job" || failed+=(grpcurl)
wait "$schemathesis_job" || failed+=(schemathesis)
wait "$cent_job" || failed+=(cent)
wait "$promtool_job" || failed+=(promtool)
if ((${#failed[@]} > 0)); then
  die "could not start: ${failed[*]} (see the messages above; logs in $HERALD_RUN/<server>/). Servers that did start are left running; test/infra/down.sh stops them."
fi

env_lines=(
  "HERALD_KAFKA_BROKERS=127.0.0.1:${HERALD_KAFKA_PORT:-39092}"
  "HERALD_MONGO_URL=mongodb://127.0.0.1:${HERALD_MONGO_PORT:-37017}/"
  "HERALD_OTLP_TRACES_URL=http://127.0.0.1:${HERALD_JAEGER_OTLP_PORT:-34318}/v1/traces"
  "HERALD_JAEGER_QUERY_URL=http://127.0.0.1:${HERALD_JAEGER_QUERY_PORT:-36686}"
)
# kubeconfig, kubectl and helm paths: kube.sh knows its versions and file names.
mapfile -t kube_env < <("$INFRA_DIR/kube.sh" env)
((${#kube_env[@]} > 0)) || die "test/infra/kube.sh env printed nothing"
env_lines+=("${kube_env[@]}")
env_lines+=("$("$INFRA_DIR/grpcurl.sh" env)")
env_lines+=("$("$INFRA_DIR/schemathesis.sh" env)")
env_lines+=("$("$INFRA_DIR/cent.sh" env)")
env_lines+=("$("$INFRA_DIR/promtool.sh" env)")
tmp_env="$HERALD_RUN/env.tmp.$$"
{
  echo "# written by test/infra/up.sh; removed by test/infra/down.sh"
  printf 'export %s\n' "${env_lines[@]}"
} >"$tmp_env"
mv -f "$tmp_env" "$HERALD_RUN/env"

log "all servers up ($(since "$t0")); env in $HERALD_RUN/env"
printf '%s\n' "${env_lines[@]}"
