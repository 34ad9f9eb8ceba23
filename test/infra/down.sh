#!/usr/bin/env bash
# Stop every server started by test/infra/up.sh (SIGTERM, then SIGKILL after a deadline).
# Data dirs stay until the next start wipes them; logs stay in $HERALD_RUN/<server>/.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rm -f "$HERALD_RUN/env"
"$INFRA_DIR/kafka.sh" stop &
kafka_job=$!
"$INFRA_DIR/ferretdb.sh" stop &
ferretdb_job=$!
"$INFRA_DIR/jaeger.sh" stop &
jaeger_job=$!
"$INFRA_DIR/kube.sh" stop &
kube_job=$!
failed=()
wait "$kafka_job" || failed+=(kafka)
wait "$ferretdb_job" || failed+=(ferretdb)
wait "$jaeger_job" || failed+=(jaeger)
wait "$kube_job" || failed+=(kube)
((${#failed[@]} == 0)) || die "could not stop: ${failed[*]}"
