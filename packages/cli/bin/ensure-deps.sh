#!/bin/sh
# Makes sure the npm dependencies are installed before `npm start` / `npm test` run anything:
# `npm ci` at the repository root when node_modules is missing or older than package-lock.json
# (a fresh clone, or a pull that changed the lock file); otherwise it returns at once.
# POSIX sh only (no bash), so it runs wherever npm runs scripts.
set -eu

root=$(CDPATH='' cd -- "$(dirname -- "$0")/../../.." && pwd)
cd "$root"

marker=node_modules/.package-lock.json

stale=
if [ ! -d node_modules ] || [ ! -f "$marker" ]; then
  stale="node_modules is missing"
elif [ -n "$(find package-lock.json -newer "$marker" 2>/dev/null)" ]; then
  stale="package-lock.json changed since the last install"
fi

if [ -n "$stale" ]; then
  echo "[herald] $stale: npm ci --no-audit --no-fund" >&2
  npm ci --no-audit --no-fund
fi
