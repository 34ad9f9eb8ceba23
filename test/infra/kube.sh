#!/usr/bin/env bash
# Kubernetes control plane for Herald's operator tests: etcd, kube-apiserver and
# kube-controller-manager as local processes, plus a current kubectl and helm.
#
#   test/infra/kube.sh install|start|stop|restart|status|env
#
# install  builds from the Go module proxy (Go caches under $HERALD_CACHE/go-kube):
#            $HERALD_CACHE/kube-<v>/{kube-apiserver,kube-controller-manager,kubectl}
#            $HERALD_CACHE/etcd-<v>/etcd
#            $HERALD_CACHE/helm-<v>/helm
#          Each part has its own stamp, so a version bump rebuilds only that part.
# start    installs if needed; creates the PKI, tokens and kubeconfigs in $HERALD_RUN/kube once;
#          wipes the etcd data and starts etcd (127.0.0.1:23790, peer 23800), kube-apiserver
#          (https://127.0.0.1:36443, ready when /readyz says ok) and kube-controller-manager
#          (garbage collector, namespace, deployment, replicaset, service account controllers;
#          healthz on https://127.0.0.1:36257). Reuses running, healthy processes; when etcd has
#          to start afresh, a still running apiserver/controller-manager is restarted with it.
#          There is no scheduler and no kubelet: pods stay Pending.
# stop     controller-manager, apiserver, etcd: SIGTERM, then SIGKILL after a deadline.
# status   one line per process; exit 0 all healthy, 3 all stopped, 1 otherwise.
# env      prints the KEY=VALUE lines up.sh exports (kubeconfig, kubectl and helm paths).
#
# Identities (token auth, $HERALD_RUN/kube/tokens.csv; RBAC authorization):
#   admin.kubeconfig      user herald-admin, group system:masters
#   operator.kubeconfig   user system:serviceaccount:herald-system:herald-operator with the
#                         groups a ServiceAccount token carries, so RBAC bindings to that
#                         ServiceAccount apply to it (the ServiceAccount object need not exist).
#
# Why a wrapper module: `go install k8s.io/kubernetes/cmd/...@v1.N.P` fails, k8s.io/kubernetes
# replaces its staging modules (k8s.io/api, client-go, ...) with local paths and requires them
# as v0.0.0. The wrapper requires k8s.io/kubernetes and replaces every such module with its
# published v0.N.P; the list is generated from the release's own go.mod. etcd's server module
# also has replace directives (ignored for a dependency), so it gets a wrapper too. helm has
# none and is built in a copy of its module source, with its own go.sum. The version variables the
# upstream Makefiles set with -ldflags are set the same way here: without them the binaries
# report v0.0.0-master, and helm templates against Kubernetes 1.20 (Herald's chart requires
# >= 1.27).
#
# Environment: HERALD_CACHE, HERALD_RUN (see lib.sh), HERALD_KUBE_PORT (36443),
# HERALD_ETCD_PORT (23790), HERALD_ETCD_PEER_PORT (23800), HERALD_KUBE_CONTROLLER_MANAGER_PORT
# (36257), HERALD_KUBE_START_TIMEOUT (seconds, 90, per process).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Newest 1.34 patch on the module proxy; its go.mod says go 1.24, it builds with Go 1.26.
KUBE_VERSION=1.34.4
KUBE_STAGING_VERSION="0.${KUBE_VERSION#1.}" # k8s.io/api etc. are published as v0.34.4
ETCD_VERSION=3.6.16                         # the etcd line Kubernetes 1.34 uses (client 3.6.x)
HELM_VERSION=3.22.0                         # newest helm v3 (v4 is helm.sh/helm/v4)
# etcd and helm at these versions require Go >= 1.26.
KUBE_GO_MINOR=26
# bump when a build recipe below changes, to force a rebuild of that part's cached binaries
KUBE_RECIPE=1
ETCD_RECIPE=1
HELM_RECIPE=2

KUBE_PORT="${HERALD_KUBE_PORT:-36443}"
ETCD_PORT="${HERALD_ETCD_PORT:-23790}"
ETCD_PEER_PORT="${HERALD_ETCD_PEER_PORT:-23800}"
KCM_PORT="${HERALD_KUBE_CONTROLLER_MANAGER_PORT:-36257}"
KUBE_START_TIMEOUT="${HERALD_KUBE_START_TIMEOUT:-90}"

KUBE_HOME="$HERALD_CACHE/kube-$KUBE_VERSION"
ETCD_HOME="$HERALD_CACHE/etcd-$ETCD_VERSION"
HELM_HOME="$HERALD_CACHE/helm-$HELM_VERSION"
KUBE_GO="$HERALD_CACHE/go-kube"
KUBE_INSTALL_LOG="$HERALD_CACHE/logs/kube-install.log"
KUBECTL="$KUBE_HOME/kubectl"
HELM="$HELM_HOME/helm"

KUBE_RUN="$HERALD_RUN/kube"
KUBE_PKI="$KUBE_RUN/pki"
KUBE_TOKENS="$KUBE_RUN/tokens.csv"
ADMIN_KUBECONFIG="$KUBE_RUN/admin.kubeconfig"
OPERATOR_KUBECONFIG="$KUBE_RUN/operator.kubeconfig"
# The controller-manager gets a kubeconfig file of its own (admin token) so that its
# --kubeconfig argument is a marker no kubectl run by a test can share.
KCM_KUBECONFIG="$KUBE_RUN/controller-manager.kubeconfig"
OPERATOR_USER=system:serviceaccount:herald-system:herald-operator
OPERATOR_GROUPS=system:serviceaccounts,system:serviceaccounts:herald-system,system:authenticated
# Controllers a Deployment needs to get ReplicaSets, owner references to be honoured on delete,
# namespaces to be emptied on delete, default ServiceAccounts, and the aggregated admin/edit/view
# ClusterRoles. No node, pod-placement or volume controllers: there are no nodes.
KCM_CONTROLLERS=garbage-collector-controller,namespace-controller,deployment-controller,replicaset-controller,serviceaccount-controller,serviceaccount-token-controller,clusterrole-aggregation-controller

# ---------------------------------------------------------------------------------------------
# install

kube_stamp() { echo "kubernetes v$KUBE_VERSION (staging v$KUBE_STAGING_VERSION) recipe $KUBE_RECIPE"; }
etcd_stamp() { echo "etcd v$ETCD_VERSION recipe $ETCD_RECIPE"; }
helm_stamp() { echo "helm v$HELM_VERSION recipe $HELM_RECIPE"; }

# part_installed HOME STAMP_CONTENT BIN...
part_installed() {
  local home="$1" stamp="$2" b; shift 2
  [[ -f "$home/.installed" && "$(<"$home/.installed")" == "$stamp" ]] || return 1
  for b in "$@"; do [[ -x "$home/$b" ]] || return 1; done
}

kube_installed() { part_installed "$KUBE_HOME" "$(kube_stamp)" kube-apiserver kube-controller-manager kubectl; }
etcd_installed() { part_installed "$ETCD_HOME" "$(etcd_stamp)" etcd; }
helm_installed() { part_installed "$HELM_HOME" "$(helm_stamp)" helm; }

srv_is_installed() { kube_installed && etcd_installed && helm_installed; }

# mod_download_field MODULE@VERSION FIELD: downloads the module (zip, go.mod, info) from the
# proxy and prints one field of `go mod download -json` (GoMod, Info, Dir).
mod_download_field() {
  local spec="$1" field="$2" json value
  json=$(mktemp)
  if ! (cd "$KUBE_GO" && go mod download -json "$spec") >"$json" 2>>"$KUBE_INSTALL_LOG"; then
    cat "$json" >>"$KUBE_INSTALL_LOG" 2>/dev/null || true
    rm -f "$json"
    fail_with_log kube "$KUBE_INSTALL_LOG" "could not download $spec. Check that the Go module proxy is reachable (go env GOPROXY) and retry."
  fi
  value=$(sed -n "s/^[[:space:]]*\"$field\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p" "$json")
  rm -f "$json"
  [[ -n "$value" ]] || die "go mod download -json $spec gave no $field (see $KUBE_INSTALL_LOG)"
  echo "$value"
}

# go_in DIR STEP CMD...: run a go command in DIR, output to the install log; fail loudly.
go_in() {
  local dir="$1" step="$2"; shift 2
  echo "== $step: (cd $dir && $*)" >>"$KUBE_INSTALL_LOG"
  if ! (cd "$dir" && "$@") >>"$KUBE_INSTALL_LOG" 2>&1; then
    fail_with_log kube "$KUBE_INSTALL_LOG" "$step failed. Check the Go version (need >= 1.$KUBE_GO_MINOR) and that the module proxy is reachable; the partial build is in ${dir%/*} (removed on the next install)."
  fi
}

install_kube() {
  local tmp="$KUBE_HOME.tmp.$$" t0 gomod info build_date staging m minor ldflags
  t0=$(now_ms)
  rm -rf "$KUBE_HOME".tmp.*
  mkdir -p "$tmp/wrapper"
  gomod=$(mod_download_field "k8s.io/kubernetes@v$KUBE_VERSION" GoMod)
  info=$(mod_download_field "k8s.io/kubernetes@v$KUBE_VERSION" Info)
  # The staging modules are exactly the k8s.io requirements at the placeholder version v0.0.0.
  staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) v0\.0\.0\([[:space:]]*//.*\)\{0,1\}$#\1#p' "$gomod")
  (($(wc -w <<<"$staging") >= 20)) ||
    die "found only '$staging' as staging modules in $gomod; the go.mod layout of k8s.io/kubernetes v$KUBE_VERSION is not the expected one"
  {
    echo "// Generated by test/infra/kube.sh from the go.mod of k8s.io/kubernetes v$KUBE_VERSION."
    echo "module herald.test/kube-build"
    echo
    echo "go 1.24.0"
    echo
    echo "// The same default GODEBUG settings as upstream's release builds."
    echo "godebug default=go1.24"
    echo
    echo "require k8s.io/kubernetes v$KUBE_VERSION"
    echo
    echo "replace ("
    for m in $staging; do printf '\t%s => %s v%s\n' "$m" "$m" "$KUBE_STAGING_VERSION"; done
    echo ")"
  } >"$tmp/wrapper/go.mod"
  note "resolving k8s.io/kubernetes v$KUBE_VERSION with $(wc -w <<<"$staging") staging modules at v$KUBE_STAGING_VERSION (log: $KUBE_INSTALL_LOG)"
  go_in "$tmp/wrapper" "go get (kubernetes)" go get \
    "k8s.io/kubernetes/cmd/kube-apiserver@v$KUBE_VERSION" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@v$KUBE_VERSION" \
    "k8s.io/kubernetes/cmd/kubectl@v$KUBE_VERSION"
  # hack/lib/version.sh sets these in both version packages; buildDate is the release's date
  # on the proxy (reproducible), "archive" is what it reports for a build outside git.
  build_date=$(sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' "$info")
  minor=${KUBE_VERSION#1.}
  minor=${minor%%.*}
  ldflags="-s -w"
  for m in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=" -X $m.gitVersion=v$KUBE_VERSION -X $m.gitMajor=1 -X $m.gitMinor=$minor"
    ldflags+=" -X $m.gitTreeState=archive -X $m.gitCommit= -X $m.buildDate=${build_date:-1970-01-01T00:00:00Z}"
  done
  note "building kube-apiserver, kube-controller-manager and kubectl v$KUBE_VERSION (about 4 minutes on 2 cores, first run only)"
  local tb; tb=$(now_ms)
  # One go build for the three, so the packages they share are compiled once.
  go_in "$tmp/wrapper" "go build (kubernetes)" go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl
  log "built kube-apiserver, kube-controller-manager, kubectl v$KUBE_VERSION ($(since "$tb"))"
  local b v
  for b in kube-apiserver kube-controller-manager; do
    v=$("$tmp/$b" --version 2>>"$KUBE_INSTALL_LOG" || true)
    [[ "$v" == "Kubernetes v$KUBE_VERSION" ]] || fail_with_log kube "$KUBE_INSTALL_LOG" "built $b reports '$v', expected 'Kubernetes v$KUBE_VERSION'."
  done
  v=$("$tmp/kubectl" version --client 2>>"$KUBE_INSTALL_LOG" | sed -n 's/^Client Version: //p')
  [[ "$v" == "v$KUBE_VERSION" ]] || fail_with_log kube "$KUBE_INSTALL_LOG" "built kubectl reports client version '$v', expected v$KUBE_VERSION."
  mv "$tmp/wrapper/go.mod" "$tmp/wrapper.go.mod" # kept to show what was built
  rm -rf "$tmp/wrapper" "$KUBE_HOME"
  mv "$tmp" "$KUBE_HOME"
  kube_stamp >"$KUBE_HOME/.installed"
  note "kubernetes v$KUBE_VERSION installed ($(since "$t0"))"
}

install_etcd() {
  local tmp="$ETCD_HOME.tmp.$$" t0 v
  t0=$(now_ms)
  rm -rf "$ETCD_HOME".tmp.*
  mkdir -p "$tmp/wrapper"
  note "building etcd v$ETCD_VERSION (under a minute on 2 cores, first run only)"
  go_in "$tmp/wrapper" "go mod init (etcd)" go mod init herald.test/etcd-build
  # The module root of go.etcd.io/etcd/server/v3 is etcd's main package.
  go_in "$tmp/wrapper" "go get (etcd)" go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  go_in "$tmp/wrapper" "go build (etcd)" go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
  v=$("$tmp/etcd" --version 2>>"$KUBE_INSTALL_LOG" | sed -n 's/^etcd Version: //p')
  [[ "$v" == "$ETCD_VERSION" ]] || fail_with_log kube "$KUBE_INSTALL_LOG" "built etcd reports version '$v', expected $ETCD_VERSION."
  rm -rf "$tmp/wrapper" "$ETCD_HOME"
  mv "$tmp" "$ETCD_HOME"
  etcd_stamp >"$ETCD_HOME/.installed"
  log "built etcd v$ETCD_VERSION ($(since "$t0"))"
}

install_helm() {
  local tmp="$HELM_HOME.tmp.$$" t0 client_go minor v ldflags
  t0=$(now_ms)
  rm -rf "$HELM_HOME".tmp.*
  mkdir -p "$tmp"
  # Built in a copy of its module source with its own go.mod and go.sum, as its Makefile does
  # (`go install …@v3.x` would work too, but not offline: it looks up deprecations on the proxy).
  go_module_source kube "helm.sh/helm/v3@v$HELM_VERSION" "$tmp/src" "$KUBE_INSTALL_LOG"
  note "building helm v$HELM_VERSION (a minute or two on 2 cores, first run only)"
  # The Makefile derives the default Kubernetes version of `helm template` and `helm lint` from
  # its client-go version (v0.37.x -> 1.37); without it they assume 1.20.
  client_go=$(sed -n 's#^[[:space:]]*k8s\.io/client-go v\([0-9.]*\).*#\1#p' "$tmp/src/go.mod" | head -n1)
  minor=$(cut -d. -f2 <<<"$client_go")
  [[ "$minor" =~ ^[0-9]+$ ]] || die "cannot read the k8s.io/client-go version from helm's go.mod"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for v in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $v.k8sVersionMajor=1 -X $v.k8sVersionMinor=$minor"
  done
  go_in "$tmp/src" "go build (helm)" go build -trimpath -ldflags "$ldflags" -o "$tmp/helm" ./cmd/helm
  v=$("$tmp/helm" version --short 2>>"$KUBE_INSTALL_LOG" || true)
  [[ "$v" == "v$HELM_VERSION" ]] || fail_with_log kube "$KUBE_INSTALL_LOG" "built helm reports '$v', expected v$HELM_VERSION."
  rm -rf "$tmp/src" "$HELM_HOME"
  mv "$tmp" "$HELM_HOME"
  helm_stamp >"$HELM_HOME/.installed"
  log "built helm v$HELM_VERSION ($(since "$t0"))"
}

srv_install() {
  require_go "$KUBE_GO_MINOR"
  go_build_env "$KUBE_GO"
  mkdir -p "$HERALD_CACHE/logs" "$KUBE_GO"
  : >"$KUBE_INSTALL_LOG"
  # Small parts first: a broken proxy or Go shows up in minutes, not after the long build.
  etcd_installed || install_etcd
  helm_installed || install_helm
  kube_installed || install_kube
  go_slim_cache
}

# lib.sh's server_install, under the name "kube" (one lock and one stamp check for all parts).
kube_install() {
  if srv_is_installed; then
    note "kube already installed"
    return 0
  fi
  SRV_NAME=kube with_lock kube-install _server_install_locked
}

# Each component's generic start (lib.sh) checks the install again; kube_install already did,
# so the check stays silent (no "already installed" line per process).
server_install() {
  srv_is_installed || die "kube install incomplete; run test/infra/kube.sh install"
}

# ---------------------------------------------------------------------------------------------
# run dir: PKI, tokens, kubeconfigs (made once per run dir, so clients keep working across
# restarts; only the etcd data is wiped on a fresh start)

# ensure_pki: sets PKI_CHANGED=1 when anything had to be (re)made.
PKI_CHANGED=
ensure_pki() {
  local f missing=
  for f in ca.crt serving.crt serving.key sa.key sa.pub; do [[ -s "$KUBE_PKI/$f" ]] || missing=1; done
  [[ -s "$KUBE_TOKENS" ]] || missing=1
  [[ -n "$missing" ]] || return 0
  command -v openssl >/dev/null 2>&1 || die "openssl not found (needed for the test cluster's certificates). Install it (Debian: apt-get install -y openssl) and retry."
  note "creating certificates, service-account key and tokens in $KUBE_RUN"
  PKI_CHANGED=1
  local tmp="$KUBE_PKI.tmp.$$" logf="$KUBE_RUN/pki.log"
  rm -rf "$tmp" && mkdir -p "$tmp" && : >"$logf"
  (
    set -e
    cd "$tmp"
    umask 077
    # A CA and an apiserver serving certificate for 127.0.0.1 and the in-cluster names.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -keyout ca.key -out ca.crt -subj "/CN=herald-test-kube-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout serving.key -out serving.csr -subj "/CN=kube-apiserver"
    printf '%s\n' \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.0.0.1" \
      "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >serving.ext
    openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
      -days 3650 -extfile serving.ext -out serving.crt
    # The service-account token signing key pair (RS256, what every JWT library verifies).
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
    rm -f serving.csr serving.ext
  ) >>"$logf" 2>&1 || fail_with_log kube "$logf" "openssl could not create the certificates."
  # token,user,uid,"groups"; the apiserver reads it at startup.
  {
    printf '%s,herald-admin,herald-admin,"system:masters"\n' "$(openssl rand -hex 24)"
    printf '%s,%s,herald-operator,"%s"\n' "$(openssl rand -hex 24)" "$OPERATOR_USER" "$OPERATOR_GROUPS"
  } >"$tmp/tokens.csv"
  chmod 600 "$tmp/tokens.csv"
  mv -f "$tmp/tokens.csv" "$KUBE_TOKENS"
  rm -rf "$KUBE_PKI"
  mv "$tmp" "$KUBE_PKI"
}

# token_of USER: the token of USER in tokens.csv.
token_of() { awk -F, -v u="$1" '$2 == u { print $1; exit }' "$KUBE_TOKENS"; }

# write_kubeconfig FILE USER NAMESPACE: written on every start (the port may have changed).
write_kubeconfig() {
  local file="$1" user="$2" ns="$3" ca token
  ca=$(base64 -w0 <"$KUBE_PKI/ca.crt")
  token=$(token_of "$user")
  [[ -n "$token" ]] || die "no token for $user in $KUBE_TOKENS; delete $KUBE_RUN/pki and $KUBE_TOKENS and start again"
  (
    umask 077
    cat >"$file.tmp" <<YAML
# written by test/infra/kube.sh
apiVersion: v1
kind: Config
clusters:
  - name: herald-test
    cluster:
      server: https://127.0.0.1:$KUBE_PORT
      certificate-authority-data: $ca
users:
  - name: $user
    user:
      token: $token
contexts:
  - name: herald-test
    context:
      cluster: herald-test
      user: $user
      namespace: $ns
current-context: herald-test
YAML
  )
  mv -f "$file.tmp" "$file"
}

prepare_run() {
  mkdir -p "$KUBE_RUN"
  ensure_pki
  write_kubeconfig "$ADMIN_KUBECONFIG" herald-admin default
  write_kubeconfig "$OPERATOR_KUBECONFIG" "$OPERATOR_USER" herald-system
  write_kubeconfig "$KCM_KUBECONFIG" herald-admin kube-system
}

# ---------------------------------------------------------------------------------------------
# the three processes, each run through lib.sh's generic lifecycle

# use_component etcd|apiserver|controller-manager: points the SRV_* settings at one process.
use_component() {
  SRV_STOP_TIMEOUT=30
  SRV_START_TIMEOUT="$KUBE_START_TIMEOUT"
  case "$1" in
    etcd)
      SRV_NAME=kube-etcd
      SRV_MARKER="--data-dir=$KUBE_RUN/etcd"
      SRV_PORTS=("$ETCD_PORT" "$ETCD_PEER_PORT")
      SRV_FIX_HINT="Check the log for the cause (a port taken?); 'test/infra/kube.sh restart' starts afresh; 'rm -rf $ETCD_HOME' forces a rebuild."
      ;;
    apiserver)
      SRV_NAME=kube-apiserver
      SRV_MARKER="--token-auth-file=$KUBE_TOKENS"
      SRV_PORTS=("$KUBE_PORT")
      SRV_FIX_HINT="Check the log for the cause (etcd reachable on 127.0.0.1:$ETCD_PORT? a port taken?); 'test/infra/kube.sh restart' starts afresh; 'rm -rf $KUBE_RUN/pki $KUBE_TOKENS' remakes the credentials."
      ;;
    controller-manager)
      SRV_NAME=kube-controller-manager
      SRV_MARKER="--kubeconfig=$KCM_KUBECONFIG"
      SRV_PORTS=("$KCM_PORT")
      SRV_FIX_HINT="Check the log for the cause (apiserver up? a port taken?); 'test/infra/kube.sh restart' starts afresh."
      ;;
    *) die "unknown component $1" ;;
  esac
  SRV_PID_FILE="$KUBE_RUN/$1.pid"
  SRV_LOG="$KUBE_RUN/$1.log"
}

srv_launch() {
  [[ -f "$SRV_LOG" ]] && mv -f "$SRV_LOG" "$SRV_LOG.1"
  case "$SRV_NAME" in
    kube-etcd)
      rm -rf "$KUBE_RUN/etcd"
      # --unsafe-no-fsync: the data is thrown away on the next start anyway, and fsync on a
      # test VM's disk is what makes etcd (and so every API write) slow.
      start_detached "$SRV_LOG" "$ETCD_HOME/etcd" \
        --name=herald-test \
        "$SRV_MARKER" \
        --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster="herald-test=http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster-state=new \
        --unsafe-no-fsync \
        --log-level=warn
      ;;
    kube-apiserver)
      # --endpoint-reconciler-type=none: there is no node network, nothing should try to
      # publish 127.0.0.1 as the kubernetes service endpoint. ServiceAccount admission would
      # demand the ServiceAccount of every pod exist and mount tokens; tests create bare pods.
      # --allow-privileged: like kind and most clusters, so pod specs are validated as there.
      start_detached "$SRV_LOG" "$KUBE_HOME/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --bind-address=127.0.0.1 \
        --advertise-address=127.0.0.1 \
        --secure-port="$KUBE_PORT" \
        --tls-cert-file="$KUBE_PKI/serving.crt" \
        --tls-private-key-file="$KUBE_PKI/serving.key" \
        --service-cluster-ip-range=10.0.0.0/24 \
        --service-account-issuer=https://kubernetes.default.svc \
        --service-account-key-file="$KUBE_PKI/sa.pub" \
        --service-account-signing-key-file="$KUBE_PKI/sa.key" \
        "$SRV_MARKER" \
        --authorization-mode=RBAC \
        --disable-admission-plugins=ServiceAccount \
        --endpoint-reconciler-type=none \
        --allow-privileged=true \
        --profiling=false
      ;;
    kube-controller-manager)
      # It serves /healthz with the apiserver's certificate (127.0.0.1 is in it), so probes
      # verify it with the same CA.
      start_detached "$SRV_LOG" "$KUBE_HOME/kube-controller-manager" \
        "$SRV_MARKER" \
        --bind-address=127.0.0.1 \
        --secure-port="$KCM_PORT" \
        --tls-cert-file="$KUBE_PKI/serving.crt" \
        --tls-private-key-file="$KUBE_PKI/serving.key" \
        --leader-elect=false \
        --controllers="$KCM_CONTROLLERS" \
        --service-account-private-key-file="$KUBE_PKI/sa.key" \
        --profiling=false
      ;;
  esac
}

srv_probe() {
  local rc=0
  case "$SRV_NAME" in
    kube-etcd)
      node_probe etcd "$ETCD_PORT" 3000 || rc=$?
      if ((rc == 2)); then
        port_open "$ETCD_PORT" && echo "etcd ok: client port open (install node for a real probe)" && return 0
        echo "etcd not answering on 127.0.0.1:$ETCD_PORT"
        return 1
      fi
      ;;
    kube-apiserver)
      node_probe kube "$KUBE_PORT" 3000 "$KUBE_PKI/ca.crt" || rc=$?
      if ((rc == 2)); then
        # no node: our own kubectl speaks TLS just as well
        "$KUBECTL" --kubeconfig="$ADMIN_KUBECONFIG" --request-timeout=3s get --raw /readyz 2>&1 | grep -qx ok &&
          echo "kube-apiserver ok: /readyz ok (kubectl)" && return 0
        echo "kube-apiserver /readyz not ok on https://127.0.0.1:$KUBE_PORT"
        return 1
      fi
      ;;
    kube-controller-manager)
      node_probe kube-controller-manager "$KCM_PORT" 3000 "$KUBE_PKI/ca.crt" || rc=$?
      if ((rc == 2)); then
        port_open "$KCM_PORT" && echo "kube-controller-manager ok: port open (install node for a real probe)" && return 0
        echo "kube-controller-manager not answering on 127.0.0.1:$KCM_PORT"
        return 1
      fi
      ;;
  esac
  return "$rc"
}

# ---------------------------------------------------------------------------------------------
# commands

kube_start() {
  with_lock kube-start _kube_start_locked
}

_kube_start_locked() {
  local t0 etcd_pids
  t0=$(now_ms)
  kube_install
  prepare_run
  use_component etcd
  etcd_pids=$(server_pids)
  if [[ -z "$etcd_pids" || -n "$PKI_CHANGED" ]]; then
    # etcd starts with no data (or the credentials are new): an apiserver still running would
    # keep serving its caches of the old data, so the whole control plane starts afresh.
    kube_stop_running controller-manager apiserver
    if [[ -n "$etcd_pids" ]]; then kube_stop_running etcd; fi
    use_component etcd
  fi
  _server_start_locked
  use_component apiserver
  _server_start_locked
  use_component controller-manager
  _server_start_locked
  log "kube ready ($(since "$t0")): kubeconfig $ADMIN_KUBECONFIG"
}

# kube_stop_running NAME...: stop those that run, quietly skip the others.
kube_stop_running() {
  local c
  for c in "$@"; do
    use_component "$c"
    if [[ -n "$(server_pids)" ]]; then server_stop; fi
  done
}

# All three at once: none needs another to shut down (etcd alone takes ~2 s, the apiserver ~3 s),
# and a missing one is reported as not running.
kube_stop() {
  local c pids=() failed=0 p
  for c in controller-manager apiserver etcd; do
    (use_component "$c" && server_stop) &
    pids+=("$!")
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  return "$failed"
}

kube_status() {
  local c rc all=() overall
  for c in etcd apiserver controller-manager; do
    use_component "$c"
    rc=0
    server_status || rc=$?
    all+=("$rc")
  done
  case " ${all[*]} " in
    " 0 0 0 ") overall=0 ;;
    " 3 3 3 ") overall=3 ;;
    *) overall=1 ;;
  esac
  return "$overall"
}

kube_env() {
  printf '%s\n' \
    "HERALD_KUBECONFIG=$ADMIN_KUBECONFIG" \
    "HERALD_KUBE_OPERATOR_KUBECONFIG=$OPERATOR_KUBECONFIG" \
    "HERALD_KUBECTL=$KUBECTL" \
    "HERALD_HELM=$HELM"
}

case "${1:-}" in
  install) kube_install ;;
  start) kube_start ;;
  stop) kube_stop ;;
  restart) kube_stop; kube_start ;;
  status) kube_status ;;
  env) kube_env ;;
  *)
    echo "usage: $(basename "$0") install|start|stop|restart|status|env" >&2
    exit 2
    ;;
esac
