#!/usr/bin/env bash
# PostgreSQL for Herald's tests: the storage FerretDB serves the MongoDB wire protocol from.
#
#   test/infra/postgres.sh install|start|stop|restart|status|kill|resume|reset|purge|env
#
# install  Debian's PostgreSQL server (apt-get, only when no /usr/lib/postgresql/<v>/bin/postgres).
# start    wipes the data dir, runs initdb, starts the server on 127.0.0.1:35432 and creates the
#          `ferretdb` database with the index trigger below; waits until `SELECT 1` answers.
#          Reuses a running, healthy one.
# stop     SIGTERM (a "smart" shutdown), then SIGKILL after a deadline.
# kill     SIGKILL (a crash), keeping the data; `resume` starts the server on that data again.
# reset    drops and recreates the `ferretdb` database (ferretdb.sh's start: every run starts clean).
# purge    stops the server and deletes its data dir (a private server a suite started).
# env      the connection URL FerretDB uses.
#
# Why a trigger: FerretDB 1.24 pushes a top-level equality down as `_jsonb->'f' @> value`, but
# the indexes it creates for MongoDB's createIndexes are B-trees over `_jsonb->'f'`, which
# cannot serve `@>`. The event trigger gives each such field a GIN index as well, so Herald's
# declared indexes (packages/store) serve the queries without anything FerretDB-specific in
# Herald. `plan_cache_mode = force_custom_plan` keeps FerretDB's prepared statements, whose
# field names are parameters, planned with the actual names, so the planner can see the index.
#
# The server refuses to run as root: as root it runs as the `postgres` user Debian's package
# creates, with its data under /var/tmp (root's home is not readable to that user).
# It is a test database: fsync is off (a crash of the machine may lose data; a SIGKILL of the
# server does not: commits still write the WAL to the kernel before they answer, which
# synchronous_commit=off would not, and `kill` then `resume` lost the last commits that way).
#
# Environment: HERALD_CACHE, HERALD_RUN (see lib.sh), HERALD_POSTGRES_PORT (35432),
# HERALD_POSTGRES_DATA (data dir), HERALD_POSTGRES_START_TIMEOUT (seconds, 30).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_PORT="${HERALD_POSTGRES_PORT:-35432}"
PG_RUN="$HERALD_RUN/postgres"
PG_DATABASE=ferretdb
if [[ $(id -u) -eq 0 ]]; then
  PG_USER=postgres
  PG_DATA="${HERALD_POSTGRES_DATA:-/var/tmp/herald-postgres-$PG_PORT}"
else
  PG_USER=$(id -un)
  PG_DATA="${HERALD_POSTGRES_DATA:-$PG_RUN/data}"
fi

SRV_NAME=postgres
SRV_PID_FILE="$PG_RUN/postgres.pid"
SRV_LOG="$PG_RUN/postgres.log"
SRV_MARKER="herald.run=$PG_RUN"
SRV_PORTS=("$PG_PORT")
SRV_START_TIMEOUT="${HERALD_POSTGRES_START_TIMEOUT:-30}"
SRV_STOP_TIMEOUT=15
SRV_FIX_HINT="Check the log for the cause; 'test/infra/postgres.sh stop' then 'start' retries with fresh data."

# pg_bin: the newest installed server's bin dir (Debian keeps each major version apart).
pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [[ -n "$d" && -x "$d/postgres" ]] && echo "$d"
}

# AS_PG CMD...: run CMD as the server's user (setpriv execs: the pid stays the server's).
AS_PG=()
[[ $(id -u) -eq 0 ]] && AS_PG=(setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups --)

pg_psql() {
  "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"
}

srv_is_installed() {
  [[ -n "$(pg_bin)" ]]
}

srv_install() {
  apt_install postgresql || true
  srv_is_installed || die "no PostgreSQL server found in /usr/lib/postgresql/<version>/bin. Install it (Debian: apt-get install -y postgresql) and retry."
}

# Every B-tree FerretDB creates over top-level fields gets a GIN index per field (see the top).
PG_INDEX_TRIGGER=$(cat <<'SQL'
CREATE FUNCTION herald_gin_for_btree() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
DECLARE
  cmd record;
  tbl regclass;
  ncols int;
  field text;
BEGIN
  FOR cmd IN SELECT objid FROM pg_event_trigger_ddl_commands() WHERE object_type = 'index' LOOP
    SELECT i.indrelid::regclass, i.indnatts INTO tbl, ncols
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
      WHERE i.indexrelid = cmd.objid AND a.amname = 'btree';
    CONTINUE WHEN tbl IS NULL;
    FOR k IN 1..ncols LOOP
      field := substring(pg_get_indexdef(cmd.objid, k, false) FROM '^\(*_jsonb -> ''([^'']+)''::text\)*$');
      CONTINUE WHEN field IS NULL;
      EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin ((_jsonb -> %L) jsonb_path_ops) WITH (fastupdate = off)',
        'herald_gin_' || substr(md5(tbl::text || '/' || field), 1, 20), tbl, field);
    END LOOP;
  END LOOP;
END
$fn$;
CREATE EVENT TRIGGER herald_gin ON ddl_command_end WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION herald_gin_for_btree();
SQL
)

pg_launch() {
  [[ -f "$SRV_LOG" ]] && mv -f "$SRV_LOG" "$SRV_LOG.1"
  : >"$SRV_LOG"
  [[ $(id -u) -eq 0 ]] && chown "$PG_USER" "$SRV_LOG"
  start_detached "$SRV_LOG" "${AS_PG[@]}" "$(pg_bin)/postgres" -D "$PG_DATA" \
    -c listen_addresses=127.0.0.1 -c port="$PG_PORT" -c unix_socket_directories="$PG_DATA" \
    -c fsync=off -c full_page_writes=off \
    -c plan_cache_mode=force_custom_plan -c max_connections=300 -c shared_buffers=256MB \
    -c "$SRV_MARKER" # a custom setting (it has a dot) that names this run dir: the marker
}

srv_launch() {
  local bin
  bin=$(pg_bin)
  rm -rf "$PG_DATA"
  mkdir -p "$PG_DATA"
  chmod 700 "$PG_DATA"
  [[ $(id -u) -eq 0 ]] && chown "$PG_USER:" "$PG_DATA"
  if ! "${AS_PG[@]}" "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$PG_RUN/initdb.log" 2>&1; then
    fail_with_log postgres "$PG_RUN/initdb.log" "initdb failed."
  fi
  pg_launch
}

srv_probe() {
  local out
  out=$(pg_psql -d postgres -Atc 'SELECT version()' 2>&1) || { echo "postgres not answering on 127.0.0.1:$PG_PORT: $out"; return 1; }
  echo "${out%% on *}"
}

# The database FerretDB uses, with the index trigger; once per fresh data dir.
pg_prepare() {
  if [[ "$(pg_psql -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")" != 1 ]]; then
    pg_psql -d postgres -c "CREATE DATABASE $PG_DATABASE"
    pg_psql -d "$PG_DATABASE" -c "$PG_INDEX_TRIGGER"
  fi
}

# A fresh, empty FerretDB database on the running server (FerretDB must not be connected).
pg_reset() {
  pg_psql -d postgres -c "DROP DATABASE IF EXISTS $PG_DATABASE WITH (FORCE)"
  pg_prepare
}

pg_resume() {
  [[ -f "$PG_DATA/PG_VERSION" ]] || die "postgres: no data dir at $PG_DATA to resume on; use start"
  read -r -a pids <<<"$(server_pids)"
  ((${#pids[@]} == 0)) || { log "postgres already running (pid ${pids[*]})"; return 0; }
  # the killed server's lock files (its pid may still be a zombie nobody reaped)
  rm -f "$PG_DATA/postmaster.pid" "$PG_DATA"/.s.PGSQL.*.lock
  local t0; t0=$(now_ms)
  pg_launch
  echo "$DETACHED_PID" >"$SRV_PID_FILE"
  server_wait_ready "$DETACHED_PID" "$t0"
}

case "${1:-}" in
  start) server_start; pg_prepare ;;
  restart) server_stop; server_start; pg_prepare ;;
  kill)
    read -r -a pids <<<"$(server_pids)"
    ((${#pids[@]} == 0)) || kill -KILL "${pids[@]}"
    rm -f "$SRV_PID_FILE"
    # its backends notice the postmaster's death and exit; a resume before that is refused
    for ((i = 0; i < 100; i++)); do
      left=0
      for p in "${pids[@]}"; do pgrep -P "$p" >/dev/null && left=1; done
      ((left == 0)) && break
      sleep 0.1
    done
    ;;
  resume) pg_resume ;;
  reset) pg_reset ;;
  purge) server_stop; rm -rf "$PG_DATA" ;;
  env) echo "HERALD_POSTGRES_URL=postgres://postgres@127.0.0.1:$PG_PORT/$PG_DATABASE" ;;
  *) server_main "$@" ;;
esac
