#!/usr/bin/env bash
# `npm test`: checks the generated contracts, type-checks every project, installs and starts the
# real servers the suites need (test/infra/up.sh: Kafka, FerretDB, Jaeger, Kubernetes), runs every *.test.ts with
# node's test runner, and stops the servers again.
#   test/run.sh [file.test.ts ...]   run only these files (servers are still started)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "[test] contracts: regenerating and comparing"
bash proto/gen.sh --check
echo "[test] type-checking"
node_modules/.bin/tsc -b
node_modules/.bin/tsc -p bench

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(find packages services operator test -name '*.test.ts' -not -path '*/node_modules/*' 2>/dev/null | sort)
fi

bash test/infra/up.sh
trap 'bash test/infra/down.sh' EXIT
set -a
# shellcheck disable=SC1091
source "${HERALD_RUN:-${HERALD_CACHE:-$HOME/.cache/herald}/run}/env"
set +a

echo "[test] running ${#files[@]} suites"
node --import tsx --test --test-concurrency=2 --test-timeout=600000 "${files[@]}"
