#!/usr/bin/env bash
# Regenerates packages/proto/src/gen (ts-proto) and the descriptor set used by gRPC reflection.
# --check: regenerate into a scratch copy and fail when the committed files differ.
set -euo pipefail
cd "$(dirname "$0")"
out=../packages/proto/src/gen
desc=../packages/proto/descriptors.binpb
buf=../node_modules/.bin/buf
if [ "${1:-}" = "--check" ]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  sed "s#out: ../packages/proto/src/gen#out: $scratch/gen#" buf.gen.yaml > "$scratch/buf.gen.yaml"
  "$buf" generate --template "$scratch/buf.gen.yaml"
  "$buf" build -o "$scratch/descriptors.binpb"
  if ! diff -r "$scratch/gen" "$out" >/dev/null || ! cmp -s "$scratch/descriptors.binpb" "$desc"; then
    echo "proto: generated code is stale; run 'npm run gen' and commit the result" >&2
    diff -r "$scratch/gen" "$out" | head -20 >&2 || true
    exit 1
  fi
  echo "proto: generated code is up to date"
  exit 0
fi
"$buf" lint
rm -rf "$out"
"$buf" generate
"$buf" build -o "$desc"
echo "proto: generated $(find "$out" -name '*.ts' | wc -l) files"
