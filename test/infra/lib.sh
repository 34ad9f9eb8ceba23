# shellcheck shell=bash
# Shared helpers for the test/infra scripts. Sourced, never executed.
#
# Layout (everything outside the repository):
#   $HERALD_CACHE                 ${HERALD_CACHE:-$HOME/.cache/herald}: installed servers, build caches
#   $HERALD_RUN                   ${HERALD_RUN:-$HERALD_CACHE/run}: data dirs, logs, pid files, env file
#
# Conventions: progress lines go to stderr prefixed with "[infra]"; only machine-readable
# output (env lines) goes to stdout.

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HERALD_CACHE="${HERALD_CACHE:-$HOME/.cache/herald}"
HERALD_RUN="${HERALD_RUN:-$HERALD_CACHE/run}"
export HERALD_CACHE HERALD_RUN

# CI=true (or HERALD_INFRA_QUIET=1): only the essential lines.
if [[ "${CI:-}" == "true" || "${CI:-}" == "1" || -n "${HERALD_INFRA_QUIET:-}" ]]; then
  INFRA_QUIET=1
else
  INFRA_QUIET=
fi

# log: always printed. note: progress detail, suppressed on CI.
log() { printf '[infra] %s\n' "$*" >&2; }
note() { [[ -n "$INFRA_QUIET" ]] || printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

# now_ms: wall clock in milliseconds (for durations in log lines).
now_ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
# since START_MS: "1.2s"
since() { local d=$(($(now_ms) - $1)); printf '%d.%01ds' $((d / 1000)) $(((d % 1000) / 100)); }

# with_lock NAME CMD...: serialise installs of one component across concurrent invocations.
with_lock() {
  local name="$1"; shift
  mkdir -p "$HERALD_CACHE"
  if command -v flock >/dev/null 2>&1; then
    (
      flock -w 1800 9 || die "timed out waiting for lock $HERALD_CACHE/.$name.lock"
      "$@"
    ) 9>"$HERALD_CACHE/.$name.lock"
  else
    "$@"
  fi
}

# apt_install PKG...: best-effort install of Debian packages (root or passwordless sudo only).
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 1
    sudo=(sudo -n)
  fi
  log "installing Debian package(s): $* (apt-get)"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 || return 1
}

java_major() {
  # `java -version` prints e.g. openjdk version "17.0.15" 2025-04-15 (or "1.8.0_392").
  local v
  v=$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
  v=${v#1.}
  echo "${v%%[.+-]*}"
}

require_java() {
  if ! command -v java >/dev/null 2>&1; then
    apt_install default-jdk-headless || true
  fi
  command -v java >/dev/null 2>&1 ||
    die "java not found. Install a JDK >= 11 (Debian: apt-get install -y default-jdk-headless) and retry."
  local major
  major=$(java_major)
  [[ "$major" =~ ^[0-9]+$ && "$major" -ge 11 ]] ||
    die "java $major found, Kafka needs Java >= 11 (17 recommended). Install default-jdk-headless or put a newer java first in PATH."
}

require_mvn() {
  if ! command -v mvn >/dev/null 2>&1; then
    apt_install maven || true
  fi
  command -v mvn >/dev/null 2>&1 ||
    die "mvn not found. Install Maven >= 3.6 (Debian: apt-get install -y maven) and retry."
}

# require_go [MIN_MINOR]: Go >= 1.MIN_MINOR (default 24) in PATH.
# shellcheck disable=SC2120 # the argument is optional
require_go() {
  local want="${1:-24}"
  # Debian's golang package is too old for FerretDB's wrapper build; do not try apt.
  command -v go >/dev/null 2>&1 ||
    die "go not found. Install Go >= 1.$want from https://go.dev/dl (Debian's golang is too old) and put it in PATH."
  local v
  v=$(go env GOVERSION 2>/dev/null || true) # go1.26.8
  v=${v#go}
  local major=${v%%.*} rest=${v#*.}
  local minor=${rest%%[.a-z]*}
  [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] || die "cannot parse Go version '$v'"
  ((major > 1 || minor >= want)) ||
    die "Go $v found, need Go >= 1.$want. Install a newer Go from https://go.dev/dl."
}

# port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pids_with_arg ARG: pids of processes having ARG as one exact argv element.
# Used to find our own servers by a unique marker argument (never by program name).
pids_with_arg() {
  local want="$1" f pid a args
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    args=()
    mapfile -d "" -t args 2>/dev/null <"$f" || continue
    for a in "${args[@]}"; do
      if [[ "$a" == "$want" ]]; then echo "$pid"; break; fi
    done
  done
}

# pid_has_arg PID ARG: true if process PID has ARG as an exact argv element.
pid_has_arg() {
  local a args=()
  mapfile -d "" -t args 2>/dev/null <"/proc/$1/cmdline" || return 1
  for a in "${args[@]}"; do [[ "$a" == "$2" ]] && return 0; done
  return 1
}

# pid_alive PID
pid_alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }

# stop_pids NAME DEADLINE_S PID...: SIGTERM, wait up to DEADLINE_S, then SIGKILL.
stop_pids() {
  local name="$1" deadline="$2"; shift 2
  local pids=("$@") p alive start
  [[ ${#pids[@]} -gt 0 ]] || return 0
  start=$(now_ms)
  note "stopping $name (pid ${pids[*]})"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  local end=$((SECONDS + deadline))
  while ((SECONDS < end)); do
    alive=()
    for p in "${pids[@]}"; do pid_alive "$p" && alive+=("$p"); done
    [[ ${#alive[@]} -eq 0 ]] && { log "$name stopped ($(since "$start"))"; return 0; }
    sleep 0.2
  done
  log "$name did not stop within ${deadline}s, sending SIGKILL to ${alive[*]}"
  kill -KILL "${alive[@]}" 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive=()
    for p in "${pids[@]}"; do pid_alive "$p" && alive+=("$p"); done
    [[ ${#alive[@]} -eq 0 ]] && { log "$name killed"; return 0; }
    sleep 0.1
  done
  die "$name (pid ${alive[*]}) survived SIGKILL"
}

# start_detached LOGFILE CMD...: start CMD in its own session, fully detached from our
# stdin/stdout/stderr and lock fds (so callers capturing our output never hang and locks are
# released when we exit). Sets DETACHED_PID.
start_detached() {
  local logfile="$1"; shift
  setsid "$@" </dev/null >>"$logfile" 2>&1 9>&- &
  DETACHED_PID=$!
}

# port_owner PORT: a short description of who listens on 127.0.0.1:PORT (best effort).
port_owner() {
  if command -v ss >/dev/null 2>&1; then
    ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\(.*\)))$/\1/p' | head -n1
  fi
}

# fail_with_log NAME LOGFILE MESSAGE: print the last 50 log lines and exit non-zero.
fail_with_log() {
  local name="$1" logfile="$2" msg="$3"
  if [[ -f "$logfile" ]]; then
    printf '[infra] ---- last 50 lines of %s ----\n' "$logfile" >&2
    tail -n 50 "$logfile" >&2 || true
    printf '[infra] ---- end of %s ----\n' "$logfile" >&2
  fi
  die "$name: $msg"
}

# node_probe KIND PORT [TIMEOUT_MS]: speak the real wire protocol (see probe.mjs).
node_probe() {
  command -v node >/dev/null 2>&1 || return 2
  node "$INFRA_DIR/probe.mjs" "$@"
}

# ---------------------------------------------------------------------------------------------
# Servers built from the Go module proxy (FerretDB, Jaeger).

# go_build_env DIR: Go settings for a build whose every cache lives under DIR (inside
# $HERALD_CACHE), so the cache is self-contained and deletable (-modcacherw); one DIR per server,
# since each install slims its caches when done and the installs run in parallel.
go_build_env() {
  export GOMODCACHE="$1/mod"
  export GOCACHE="$1/build"
  export GOPATH="$1/path"
  export GOFLAGS="-buildvcs=false -modcacherw"
  export GOTOOLCHAIN=local
  export GO111MODULE=on
  export GOWORK=off
  export CGO_ENABLED=0 # both are pure Go: static binaries, no C toolchain
}

# go_module_source NAME MODULE@VERSION DEST LOGFILE: downloads the module from the proxy and
# copies its source to DEST (writable), to build there with the module's own go.mod and go.sum.
go_module_source() {
  local name="$1" spec="$2" dest="$3" logf="$4" json dir
  json=$(mktemp)
  note "downloading $spec from the Go module proxy (log: $logf)"
  if ! (cd "$(dirname "$dest")" && go mod download -json "$spec") >"$json" 2>>"$logf"; then
    cat "$json" >>"$logf" 2>/dev/null || true
    rm -f "$json"
    fail_with_log "$name" "$logf" "could not download $spec. Check that the Go module proxy is reachable (go env GOPROXY) and retry."
  fi
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' "$json")
  [[ -n "$dir" && -f "$dir/go.mod" ]] || { cat "$json" >>"$logf"; rm -f "$json"; die "go mod download gave no module dir (see $logf)"; }
  rm -f "$json"
  cp -R "$dir" "$dest"
  chmod -R u+w "$dest"
}

# go_slim_cache: after an install, keep only the downloaded module zips (a rebuild needs no
# network) and drop the extracted modules and compiled packages (GBs) that only a version bump
# could use. HERALD_KEEP_GO_CACHE=1 keeps everything.
go_slim_cache() {
  [[ -n "${HERALD_KEEP_GO_CACHE:-}" ]] && return 0
  go clean -cache >/dev/null 2>&1 || true
  local d
  for d in "$GOMODCACHE"/*; do
    [[ "$d" == "$GOMODCACHE/cache" ]] && continue
    rm -rf "$d"
  done
  rm -rf "$GOMODCACHE/cache/vcs" "$GOPATH"
}

# ---------------------------------------------------------------------------------------------
# Generic server lifecycle. A server script sets:
#   SRV_NAME SRV_PID_FILE SRV_LOG SRV_MARKER SRV_PORTS(array) SRV_START_TIMEOUT SRV_STOP_TIMEOUT
#   SRV_FIX_HINT   (one line: what to try when the server does not come up)
# and defines the functions:
#   srv_is_installed   true when the cached install is complete and current
#   srv_install        install into the cache (called under a lock)
#   srv_launch         wipe/prepare the run dir, start the process via start_detached
#   srv_probe          print one line and succeed when the server really serves requests
# then calls: server_main "$@"
# SRV_MARKER is one exact argv element unique to this server and run dir; it is how stray
# instances are found (pid files can be lost), never by program name.

# server_pids: pids of our running instance(s), pid file first.
server_pids() {
  local pids=() p
  if [[ -f "$SRV_PID_FILE" ]]; then
    p=$(<"$SRV_PID_FILE")
    if [[ "$p" =~ ^[0-9]+$ ]] && pid_alive "$p" && pid_has_arg "$p" "$SRV_MARKER"; then pids+=("$p"); fi
  fi
  for p in $(pids_with_arg "$SRV_MARKER"); do
    [[ " ${pids[*]} " == *" $p "* ]] || pids+=("$p")
  done
  echo "${pids[*]}"
}

server_install() {
  if srv_is_installed; then
    note "$SRV_NAME already installed"
    return 0
  fi
  with_lock "$SRV_NAME-install" _server_install_locked
}

_server_install_locked() {
  # another invocation may have finished the install while we waited for the lock
  srv_is_installed && return 0
  local t0; t0=$(now_ms)
  log "installing $SRV_NAME into $HERALD_CACHE (first run only)"
  srv_install
  srv_is_installed || die "$SRV_NAME install finished but the install check still fails"
  log "$SRV_NAME installed ($(since "$t0"))"
}

# reserve_ports PORT...: the servers listen on fixed ports inside Linux's ephemeral range
# (32768-60999), so any client socket on the machine may hold one as its local port, and the
# server's bind then fails with "Address already in use" (seen once: Kafka's 39092 while the kube
# servers started beside it). As root, the ports are taken out of the ephemeral range; without
# the right, server_start's retry is what is left.
reserve_ports() {
  local file=/proc/sys/net/ipv4/ip_local_reserved_ports current list p
  [[ -w "$file" ]] || return 0
  current=$(cat "$file" 2>/dev/null) || return 0
  list="$current"
  for p in "$@"; do
    [[ ",$list," == *",$p,"* ]] || list="${list:+$list,}$p"
  done
  [[ "$list" == "$current" ]] || echo "$list" >"$file" 2>/dev/null || true
}

# server_wait_ready PID T0 [LOG_AT]: poll srv_probe until it succeeds, the process dies, or the
# deadline. Returns 2 when the process died because a port was taken (its log says so past
# LOG_AT, "inode:size" of the log before the launch) and SRV_BIND_RETRY is set: server_start
# tries again.
server_wait_ready() {
  local pid="$1" t0="$2" log_at="${3:-0:0}" out="" end=$((SECONDS + SRV_START_TIMEOUT))
  while :; do
    if out=$(srv_probe 2>&1); then
      log "$SRV_NAME ready on $(IFS=,; echo "${SRV_PORTS[*]/#/127.0.0.1:}") (pid $pid, $(since "$t0")): $out"
      return 0
    fi
    if ! pid_alive "$pid"; then
      rm -f "$SRV_PID_FILE"
      # A log the launch rotated (Kafka's: another file now) is read from its start.
      [[ "$(stat -c %i "$SRV_LOG" 2>/dev/null)" == "${log_at%:*}" ]] || log_at="0:0"
      if [[ -n "${SRV_BIND_RETRY:-}" ]] && tail -c "+$((${log_at#*:} + 1))" "$SRV_LOG" 2>/dev/null | grep -qi "address already in use"; then
        return 2
      fi
      fail_with_log "$SRV_NAME" "$SRV_LOG" "process $pid exited during startup (last probe: $out). $SRV_FIX_HINT"
    fi
    if ((SECONDS >= end)); then
      printf '[infra] ---- last 50 lines of %s ----\n' "$SRV_LOG" >&2
      tail -n 50 "$SRV_LOG" >&2 || true
      printf '[infra] ---- end of %s ----\n' "$SRV_LOG" >&2
      stop_pids "$SRV_NAME" "$SRV_STOP_TIMEOUT" "$pid" || true
      rm -f "$SRV_PID_FILE"
      die "$SRV_NAME did not answer within ${SRV_START_TIMEOUT}s (last probe: $out). $SRV_FIX_HINT Full log: $SRV_LOG"
    fi
    sleep 0.2
  done
}

server_start() {
  with_lock "$SRV_NAME-start" _server_start_locked
}

_server_start_locked() {
  local pids out port owner t0
  read -r -a pids <<<"$(server_pids)"
  if ((${#pids[@]} > 0)); then
    if out=$(srv_probe 2>&1); then
      log "$SRV_NAME already running (pid ${pids[*]}), reusing it: $out"
      echo "${pids[0]}" >"$SRV_PID_FILE"
      return 0
    fi
    log "$SRV_NAME is running (pid ${pids[*]}) but not answering yet; waiting"
    echo "${pids[0]}" >"$SRV_PID_FILE"
    server_wait_ready "${pids[0]}" "$(now_ms)"
    return 0
  fi
  for port in "${SRV_PORTS[@]}"; do
    if port_open "$port"; then
      owner=$(port_owner "$port")
      die "$SRV_NAME: 127.0.0.1:$port is already in use by another process${owner:+ ($owner)}, not one started by test/infra. Stop it, or point HERALD_RUN/HERALD_CACHE at the run dir that started it and run its stop command."
    fi
  done
  server_install
  mkdir -p "$(dirname "$SRV_PID_FILE")" "$(dirname "$SRV_LOG")"
  reserve_ports "${SRV_PORTS[@]}"
  local attempt rc log_at
  # A port held by a client socket frees when it closes, or up to 60 s later from TIME_WAIT:
  # tries 2 s, 4 s, 8 s, 16 s and 30 s apart cover that.
  for attempt in 1 2 3 4 5 6; do
    t0=$(now_ms)
    log_at=$(stat -c %i:%s "$SRV_LOG" 2>/dev/null || echo 0:0)
    note "starting $SRV_NAME"
    srv_launch
    # $! is the server itself once setsid has exec'd; confirm by the marker (tolerates a
    # forking setsid and the short window before exec).
    local pid="$DETACHED_PID" found i
    for ((i = 0; i < 50; i++)); do
      pid_has_arg "$pid" "$SRV_MARKER" && break
      found=$(pids_with_arg "$SRV_MARKER")
      if [[ -n "$found" ]]; then pid=${found%%[[:space:]]*}; break; fi
      sleep 0.02
    done
    echo "$pid" >"$SRV_PID_FILE"
    rc=0
    SRV_BIND_RETRY=$([[ $attempt -lt 6 ]] && echo 1) server_wait_ready "$pid" "$t0" "$log_at" || rc=$?
    ((rc == 2)) || return "$rc"
    log "$SRV_NAME: a port of its was held by another socket while it started (attempt $attempt); starting it again in $((attempt < 5 ? 2 ** attempt : 30)) s"
    sleep $((attempt < 5 ? 2 ** attempt : 30))
  done
}

server_stop() {
  local pids
  read -r -a pids <<<"$(server_pids)"
  if ((${#pids[@]} == 0)); then
    note "$SRV_NAME not running"
    rm -f "$SRV_PID_FILE"
    return 0
  fi
  stop_pids "$SRV_NAME" "$SRV_STOP_TIMEOUT" "${pids[@]}"
  rm -f "$SRV_PID_FILE"
}

# server_status: prints one line on stdout; exit 0 healthy, 1 running but unhealthy, 3 stopped.
server_status() {
  local pids out
  read -r -a pids <<<"$(server_pids)"
  if ((${#pids[@]} == 0)); then
    echo "$SRV_NAME: stopped"
    return 3
  fi
  if out=$(srv_probe 2>&1); then
    echo "$SRV_NAME: running (pid ${pids[*]}): $out"
    return 0
  fi
  echo "$SRV_NAME: running (pid ${pids[*]}) but not healthy: $out (log: $SRV_LOG)"
  return 1
}

server_main() {
  local cmd="${1:-}"
  case "$cmd" in
    install) server_install ;;
    start) server_start ;;
    stop) server_stop ;;
    restart) server_stop; server_start ;;
    status) server_status ;;
    *)
      echo "usage: $(basename "$0") install|start|stop|restart|status" >&2
      exit 2
      ;;
  esac
}
