#!/usr/bin/env bash
# A real Kubernetes control plane for tests, built from Go modules (like controller-runtime's
# envtest, with a controller manager): etcd, kube-apiserver and kube-controller-manager on
# 127.0.0.1, plus kubectl and helm. Nothing runs a kubelet, so Pods are created but never run.
#
#   scripts/k8s-testenv.sh build                 build the five binaries into the cache (once)
#   scripts/k8s-testenv.sh bin-dir               print the cached bin dir; exit 1 if not built
#   scripts/k8s-testenv.sh up [--dir DIR] [--watch-pid PID]
#                                                start the control plane; prints KUBECONFIG=...
#   scripts/k8s-testenv.sh down [--dir DIR] [--keep]
#                                                stop it and remove DIR (unless --keep)
#   scripts/k8s-testenv.sh env [--dir DIR]       print DIR/env (shell assignments)
#
# The versions are the ones pinned in e2e/testenv/*/go.mod; see e2e/testenv/README.md.
set -euo pipefail

script_path="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
repo_root="$(cd "$(dirname "$script_path")/.." && pwd)"
src_root="$repo_root/e2e/testenv"
cache_root="${TRIBUTARY_CACHE_DIR:-${HOME:-/root}/.cache/tributary}/k8s-testenv"
default_dir="${TMPDIR:-/tmp}/tributary-testenv"
# Bump when the build commands below change, so that the cache key changes with them.
recipe=1
binaries=(etcd kube-apiserver kube-controller-manager kubectl helm)

log() { printf 'k8s-testenv: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# build

# The version of MODULE required by the go.mod in DIR.
module_version() {
  local v
  v="$(awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$1/go.mod")"
  [ -n "$v" ] || die "$1/go.mod does not require $2"
  printf '%s\n' "$v"
}

k8s_version() { module_version "$src_root/kubernetes" k8s.io/kubernetes; }
etcd_version() { module_version "$src_root/etcd" go.etcd.io/etcd/server/v3; }
helm_version() { module_version "$src_root/helm" helm.sh/helm/v4; }

check_go() {
  command -v go >/dev/null 2>&1 || die "go is not on PATH (Go >= 1.26 is needed to build the test bed)"
  local v
  v="$(GOTOOLCHAIN=local go env GOVERSION)"
  case "$v" in
    go1.2[6-9]* | go1.[3-9][0-9]* | go[2-9]*) ;;
    *) die "Go >= 1.26 is needed to build the test bed, found $v" ;;
  esac
}

# The cache key: the pinned versions, and a hash of everything that decides the binaries'
# bytes (the wrapper modules, the toolchain, this script's build recipe).
cache_key() {
  local kv ev hv sum
  kv="$(k8s_version)"
  ev="$(etcd_version)"
  hv="$(helm_version)"
  sum="$(
    {
      printf 'recipe %s\n' "$recipe"
      GOTOOLCHAIN=local go version
      for m in kubernetes etcd helm; do
        cat "$src_root/$m/go.mod" "$src_root/$m/go.sum"
      done
    } | sha256sum | cut -c1-16
  )"
  printf 'k8s-%s_etcd-%s_helm-%s_%s\n' "$kv" "$ev" "$hv" "$sum"
}

bin_dir_path() { printf '%s/%s/bin\n' "$cache_root" "$(cache_key)"; }

is_built() {
  local b
  for b in "${binaries[@]}"; do
    [ -x "$1/$b" ] || return 1
  done
}

# go build in the wrapper module DIR, with the committed go.sum and no toolchain download.
go_build() {
  local dir="$1"
  shift
  (cd "$dir" && GOFLAGS=-mod=readonly GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath "$@")
}

cmd_build() {
  check_go
  local bin key final tmp kv ev hv minor start step
  key="$(cache_key)"
  final="$cache_root/$key"
  bin="$final/bin"
  if is_built "$bin"; then
    printf '%s\n' "$bin"
    return 0
  fi
  mkdir -p "$cache_root"
  # One build at a time per cache: a second caller waits, then finds the result.
  if command -v flock >/dev/null 2>&1; then
    exec {lock_fd}>"$cache_root/.lock"
    if ! flock -n "$lock_fd"; then
      log "waiting for another build of the test bed to finish"
      flock "$lock_fd"
    fi
    if is_built "$bin"; then
      printf '%s\n' "$bin"
      return 0
    fi
  fi
  kv="$(k8s_version)"
  ev="$(etcd_version)"
  hv="$(helm_version)"
  minor="${kv#v1.}"
  minor="${minor%%.*}"
  tmp="$(mktemp -d "$cache_root/.build.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: tmp is local
  trap "rm -rf '$tmp'" EXIT
  trap 'exit 130' INT TERM HUP
  chmod 755 "$tmp"
  mkdir -p "$tmp/bin"

  start=$SECONDS
  step=$SECONDS
  log "building etcd $ev"
  go_build "$src_root/etcd" -ldflags "-s -w" -o "$tmp/bin/etcd" go.etcd.io/etcd/server/v3
  log "etcd built in $((SECONDS - step))s; building helm $hv"
  step=$SECONDS
  go_build "$src_root/helm" \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$hv -X helm.sh/helm/v4/internal/version.metadata=" \
    -o "$tmp/bin/" helm.sh/helm/v4/cmd/helm
  log "helm built in $((SECONDS - step))s; building kube-apiserver, kube-controller-manager and kubectl $kv (a cold build takes long)"
  step=$SECONDS
  # The version stamp makes /version and `kubectl version` report the release instead of
  # v0.0.0-master, which helm's kubeVersion checks need.
  go_build "$src_root/kubernetes" \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$kv -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" \
    -o "$tmp/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
  log "kubernetes built in $((SECONDS - step))s"
  is_built "$tmp/bin" || die "the build finished without producing all of: ${binaries[*]}"
  {
    printf 'kubernetes %s\netcd %s\nhelm %s\n' "$kv" "$ev" "$hv"
    GOTOOLCHAIN=local go version
  } >"$tmp/VERSIONS"
  # Atomic: the key directory appears complete or not at all.
  if ! mv -T "$tmp" "$final" 2>/dev/null; then
    is_built "$bin" || die "could not move the build into $final"
  fi
  trap - EXIT INT TERM HUP
  rm -rf "$tmp"
  log "built in $((SECONDS - start))s"
  printf '%s\n' "$bin"
}

cmd_bin_dir() {
  check_go
  local bin
  bin="$(bin_dir_path)"
  if ! is_built "$bin"; then
    log "not built yet: run scripts/k8s-testenv.sh build"
    exit 1
  fi
  printf '%s\n' "$bin"
}

# ---------------------------------------------------------------------------------------------
# up / down

# Is a TCP port in use on this machine (in any state, IPv4 or IPv6)?
port_in_use() {
  local hex
  hex="$(printf '%04X' "$1")"
  awk -v p=":$hex" 'FNR > 1 && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# A TCP port that nothing uses now (a start that loses a race for it is retried).
free_port() {
  local p _
  for _ in $(seq 1 200); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
    port_in_use "$p" || {
      printf '%s\n' "$p"
      return 0
    }
  done
  die "found no free TCP port"
}

# PID runs (a zombie, exited but not yet reaped by its new parent, does not).
alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
  [ "$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# The pid in DIR/pids/NAME.pid if that process still runs and is ours (its command line
# names DIR, so a recycled pid is never signalled).
running_pid() {
  local f="$1/pids/$2.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  alive "$pid" || return 1
  # (No `| grep -q`: with pipefail, tr's SIGPIPE would fail the match.)
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$1"[/\ ]* ]] || return 1
  printf '%s\n' "$pid"
}

# Starts NAME (binary path, args...) detached: own session, stdin from /dev/null, output to
# DIR/logs/NAME.log. The process writes its own pid before exec, so the pid file is exact.
start_detached() {
  local name="$1"
  shift
  : >"$dir/logs/$name.log"
  rm -f "$dir/pids/$name.pid"
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$dir/pids/$name.pid" "$@" \
    </dev/null >>"$dir/logs/$name.log" 2>&1 &
  local _
  for _ in $(seq 1 100); do
    [ -s "$dir/pids/$name.pid" ] && return 0
    sleep 0.02
  done
  die "$name did not start"
}

fail_component() {
  local name="$1"
  shift
  log "error: $name $*; the last lines of $dir/logs/$name.log:"
  grep -v 'FLAG: --' "$dir/logs/$name.log" | tail -n 30 >&2 || true
  exit 1
}

# On a failed `up`, stop whatever it started and keep DIR (with its logs) for a look.
up_exit() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -f "$dir/.tributary-testenv" ]; then
    cmd_down_internal "$dir" keep
    log "up failed; logs kept in $dir/logs (remove with: scripts/k8s-testenv.sh down --dir $dir)"
  fi
  exit "$rc"
}

# Waits until CHECK (a command) succeeds, or NAME's process exits, or SECONDS pass.
# Returns 0 on success, 1 on time-out, 2 if the process exited.
wait_for() {
  local name="$1" timeout="$2" pid
  shift 2
  pid="$(cat "$dir/pids/$name.pid")"
  local deadline=$((SECONDS + timeout))
  while :; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    alive "$pid" || return 2
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# etcd answers on PORT (not just anything listening there: a race may have given the port to
# another program).
etcd_healthy() {
  local resp fd
  if [ "$have_curl" = 1 ]; then
    resp="$(curl -fsS --max-time 2 "http://127.0.0.1:$1/health")" || return 1
  else
    exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&"$fd"
    resp="$(timeout 2 cat <&"$fd")" || true
    exec {fd}>&-
  fi
  [[ "$resp" == *'"health":"true"'* ]]
}

address_in_use() { grep -q 'address already in use' "$dir/logs/$1.log"; }

# ECDSA P-256 keys: generated at once, unlike RSA keys (seconds each on a busy machine).
gen_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign KEY SUBJECT EXTENSION_SECTION OUT_CERT [CA_NAME]: a certificate for KEY, self-signed when
# no CA is named.
sign() {
  local key="$1" subj="$2" ext="$3" out="$4" ca="${5:-}"
  local pki="$dir/pki"
  if [ -z "$ca" ]; then
    openssl req -x509 -new -config "$pki/openssl.cnf" -extensions "$ext" -key "$key" \
      -subj "$subj" -days 3650 -sha256 -out "$out" 2>/dev/null
  else
    openssl req -new -config "$pki/openssl.cnf" -key "$key" -subj "$subj" -out "$out.csr" 2>/dev/null
    openssl x509 -req -in "$out.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
      -set_serial "0x$(openssl rand -hex 12)" -days 3650 -sha256 \
      -extfile "$pki/openssl.cnf" -extensions "$ext" -out "$out" 2>/dev/null
    rm -f "$out.csr"
  fi
}

make_pki() {
  local pki="$dir/pki"
  mkdir -p "$pki"
  chmod 700 "$pki"
  cat >"$pki/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
EOF
  # The serving CA, the client CA, the service-account key pair.
  gen_key "$pki/ca.key"
  sign "$pki/ca.key" "/CN=tributary-testenv-ca" ca "$pki/ca.crt"
  gen_key "$pki/client-ca.key"
  sign "$pki/client-ca.key" "/CN=tributary-testenv-client-ca" ca "$pki/client-ca.crt"
  gen_key "$pki/apiserver.key"
  sign "$pki/apiserver.key" "/CN=kube-apiserver" server "$pki/apiserver.crt" ca
  gen_key "$pki/admin.key"
  sign "$pki/admin.key" "/O=system:masters/CN=tributary-admin" client "$pki/admin.crt" client-ca
  gen_key "$pki/kcm.key"
  # In system:masters: the controllers act as this identity (no
  # --use-service-account-credentials), and the bootstrap role of
  # system:kube-controller-manager alone does not let them.
  sign "$pki/kcm.key" "/O=system:masters/CN=system:kube-controller-manager" client "$pki/kcm.crt" client-ca
  gen_key "$pki/sa.key"
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

# write_kubeconfig FILE USER CERT KEY
write_kubeconfig() {
  local file="$1" user="$2" cert="$3" key="$4" pki="$dir/pki"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tributary-testenv
  cluster:
    server: $api_url
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$cert")
    client-key-data: $(base64 -w0 "$key")
contexts:
- name: tributary-testenv
  context:
    cluster: tributary-testenv
    user: $user
current-context: tributary-testenv
EOF
  chmod 600 "$file"
}

# The API server answers GET PATH with 200, as the admin.
api_get() {
  if [ "$have_curl" = 1 ]; then
    curl -fsS --max-time 5 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" \
      --key "$dir/pki/admin.key" "$api_url$1"
  else
    "$bin/kubectl" --kubeconfig "$dir/kubeconfig" --request-timeout=5s get --raw "$1"
  fi
}

api_ready() { [ "$(api_get /readyz)" = ok ]; }

# Process start time (clock ticks since boot) of PID: with the pid, an identity that survives
# pid reuse.
start_time() { awk '{ sub(/^.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null; }

cmd_up() {
  dir="$default_dir"
  local watch_pid=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) dir="${2:?--dir needs a value}"; shift 2 ;;
      --watch-pid) watch_pid="${2:?--watch-pid needs a value}"; shift 2 ;;
      *) die "up: unknown argument $1" ;;
    esac
  done
  command -v openssl >/dev/null 2>&1 || die "openssl is needed (apt-get install openssl)"
  command -v setsid >/dev/null 2>&1 || die "setsid is needed (apt-get install util-linux)"
  if [ -n "$watch_pid" ]; then
    alive "$watch_pid" || die "--watch-pid $watch_pid: no such process"
  fi
  have_curl=0
  command -v curl >/dev/null 2>&1 && have_curl=1

  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [ -f "$dir/.tributary-testenv" ]; then
    if running_pid "$dir" kube-apiserver >/dev/null || running_pid "$dir" etcd >/dev/null; then
      die "a test bed already runs in $dir: run scripts/k8s-testenv.sh down --dir $dir first"
    fi
    log "removing the remains of an earlier test bed in $dir"
    cmd_down_internal "$dir" remove
    mkdir -p "$dir"
  elif [ -n "$(ls -A "$dir")" ]; then
    die "$dir is not empty and is not a test bed directory: pick another --dir"
  fi

  bin="$(cmd_build)"
  local t0=$SECONDS
  trap up_exit EXIT
  touch "$dir/.tributary-testenv"
  mkdir -p "$dir/logs" "$dir/pids" "$dir/etcd"
  make_pki

  # etcd
  local etcd_port attempt rc
  for attempt in 1 2 3 4 5; do
    etcd_port="$(free_port)"
    start_detached etcd "$bin/etcd" --name=testenv --data-dir="$dir/etcd" \
      --listen-client-urls="http://127.0.0.1:$etcd_port" \
      --advertise-client-urls="http://127.0.0.1:$etcd_port" \
      --listen-peer-urls=http://127.0.0.1:0 --unsafe-no-fsync=true \
      --log-level=warn
    rc=0
    wait_for etcd 30 etcd_healthy "$etcd_port" || rc=$?
    [ "$rc" = 0 ] && break
    if [ "$rc" = 2 ] && address_in_use etcd && [ "$attempt" -lt 5 ]; then
      rm -rf "$dir/etcd"
      mkdir -p "$dir/etcd"
      continue
    fi
    [ "$rc" = 2 ] && fail_component etcd "exited while starting"
    fail_component etcd "was not healthy (GET /health) on 127.0.0.1:$etcd_port within 30s"
  done

  # kube-apiserver
  local api_port pki="$dir/pki"
  for attempt in 1 2 3 4 5; do
    api_port="$(free_port)"
    api_url="https://127.0.0.1:$api_port"
    write_kubeconfig "$dir/kubeconfig" tributary-admin "$pki/admin.crt" "$pki/admin.key"
    start_detached kube-apiserver "$bin/kube-apiserver" \
      --etcd-servers="http://127.0.0.1:$etcd_port" \
      --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
      --cert-dir="$pki" --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
      --client-ca-file="$pki/client-ca.crt" \
      --authorization-mode=Node,RBAC \
      --service-cluster-ip-range=10.96.0.0/16 \
      --service-account-issuer=https://kubernetes.default.svc.cluster.local \
      --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
      --endpoint-reconciler-type=none \
      --allow-privileged=true --profiling=false --v=1
    rc=0
    wait_for kube-apiserver 90 api_ready || rc=$?
    [ "$rc" = 0 ] && break
    if [ "$rc" = 2 ] && address_in_use kube-apiserver && [ "$attempt" -lt 5 ]; then continue; fi
    [ "$rc" = 2 ] && fail_component kube-apiserver "exited while starting"
    fail_component kube-apiserver "was not ready (GET /readyz) within 90s"
  done

  # kube-controller-manager: garbage collector, namespace deletion, workload controllers,
  # default ServiceAccounts and their tokens. It serves nothing (--secure-port=0). All its
  # controllers use its own identity (in system:masters): --use-service-account-credentials
  # would add ~5 s to every start (each controller's ServiceAccount and token made first).
  write_kubeconfig "$dir/kcm.kubeconfig" system:kube-controller-manager "$pki/kcm.crt" "$pki/kcm.key"
  start_detached kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$dir/kcm.kubeconfig" --secure-port=0 --leader-elect=false \
    --root-ca-file="$pki/ca.crt" --service-account-private-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 --v=1
  rc=0
  wait_for kube-controller-manager 60 api_get /api/v1/namespaces/default/serviceaccounts/default || rc=$?
  [ "$rc" = 2 ] && fail_component kube-controller-manager "exited while starting"
  [ "$rc" = 1 ] && fail_component kube-controller-manager "did not create the default ServiceAccount within 60s"

  local watcher_pid=""
  if [ -n "$watch_pid" ]; then
    # Runs `down` when PID exits (or its pid now names another process: the start time
    # differs), and quits by itself once the test bed is gone.
    # shellcheck disable=SC2016 # expanded by the inner bash
    start_detached watcher bash -c '
      script=$1 dir=$2 pid=$3 start=$4
      while [ -f "$dir/.tributary-testenv" ]; do
        now=$(awk "{ sub(/^.*\\) /, \"\"); print \$20 }" "/proc/$pid/stat" 2>/dev/null || true)
        if [ "$now" != "$start" ]; then
          echo "watched pid $pid exited: stopping the test bed"
          exec bash "$script" down --dir "$dir"
        fi
        sleep 1
      done' _ "$script_path" "$dir" "$watch_pid" "$(start_time "$watch_pid")"
    watcher_pid="$(cat "$dir/pids/watcher.pid")"
  fi

  {
    printf 'KUBECONFIG=%q\n' "$dir/kubeconfig"
    printf 'TESTENV_BIN=%q\n' "$bin"
    printf 'TESTENV_DIR=%q\n' "$dir"
    printf 'TESTENV_API_URL=%q\n' "$api_url"
    printf 'TESTENV_CA_CERT=%q\n' "$pki/ca.crt"
    printf 'TESTENV_ETCD_URL=%q\n' "http://127.0.0.1:$etcd_port"
    printf 'ETCD_PID=%q\n' "$(cat "$dir/pids/etcd.pid")"
    printf 'KUBE_APISERVER_PID=%q\n' "$(cat "$dir/pids/kube-apiserver.pid")"
    printf 'KUBE_CONTROLLER_MANAGER_PID=%q\n' "$(cat "$dir/pids/kube-controller-manager.pid")"
    printf 'WATCHER_PID=%q\n' "$watcher_pid"
  } >"$dir/env"
  trap - EXIT
  log "up in $((SECONDS - t0))s: $api_url (logs in $dir/logs)"
  printf 'KUBECONFIG=%s\n' "$dir/kubeconfig"
}

# Stops the processes of the test bed in DIR; MODE is keep or remove (the directory).
cmd_down_internal() {
  local d="$1" mode="$2" name pid group
  # The controller manager and the API server first, etcd last.
  for group in "kube-controller-manager kube-apiserver" "etcd"; do
    local -a pids=()
    for name in $group; do
      if pid="$(running_pid "$d" "$name")"; then
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
      fi
    done
    local deadline=$((SECONDS + 15))
    for pid in "${pids[@]}"; do
      while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
      if alive "$pid"; then
        log "pid $pid did not stop within 15s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
  done
  # The watcher, unless this is the watcher itself running `down`.
  if pid="$(running_pid "$d" watcher)" && [ "$pid" != "$$" ]; then
    kill -TERM "$pid" 2>/dev/null || true
  fi
  if [ "$mode" = remove ]; then
    rm -rf "$d"
  fi
}

cmd_down() {
  local d="$default_dir" mode=remove
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) d="${2:?--dir needs a value}"; shift 2 ;;
      --keep) mode=keep; shift ;;
      *) die "down: unknown argument $1" ;;
    esac
  done
  if [ ! -d "$d" ]; then
    log "no test bed in $d"
    return 0
  fi
  d="$(cd "$d" && pwd)"
  [ -f "$d/.tributary-testenv" ] || die "$d is not a test bed directory (no .tributary-testenv)"
  cmd_down_internal "$d" "$mode"
}

cmd_env() {
  local d="$default_dir"
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) d="${2:?--dir needs a value}"; shift 2 ;;
      *) die "env: unknown argument $1" ;;
    esac
  done
  [ -f "$d/env" ] || die "no test bed in $d (no $d/env)"
  cat "$d/env"
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  bin-dir) shift; cmd_bin_dir "$@" ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  env) shift; cmd_env "$@" ;;
  *)
    sed -n '2,14p' "$script_path" >&2
    exit 2
    ;;
esac
