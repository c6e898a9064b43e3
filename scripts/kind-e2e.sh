#!/usr/bin/env bash
# The operator on a real Kubernetes node: a kind cluster, the broker, operator and e2e images
# built from docker/, the operator installed by the Helm chart, three brokers
# (e2e/kind/brokers.yaml) and the chart's examples, then the operator's e2e suite as a Job in
# the cluster, each step waited for with a deadline. .github/workflows/e2e.yml runs the steps
# one by one; on a machine with Docker, Go and the test bed they run the same.
#
#   scripts/kind-e2e.sh install-kind    go install sigs.k8s.io/kind at the pinned version
#   scripts/kind-e2e.sh up              create the kind cluster with the pinned node image
#   scripts/kind-e2e.sh images          docker build the three images, kind load them into the node
#   scripts/kind-e2e.sh deploy          helm install the chart, apply the brokers; wait for both
#   scripts/kind-e2e.sh examples        apply charts/tributary/examples; wait for each to be Ready
#   scripts/kind-e2e.sh test            the operator's e2e suite, as a Job in the kind cluster
#   scripts/kind-e2e.sh logs DIR        what a failed run needs looked at, into DIR
#   scripts/kind-e2e.sh down            delete the kind cluster
#   scripts/kind-e2e.sh all             up, images, deploy, examples, test
#
# kubectl and helm are the test bed's (scripts/k8s-testenv.sh build: the versions pinned in
# e2e/testenv/*/go.mod), else whatever is on PATH. The kubeconfig is kind's: $KUBECONFIG, or
# ~/.kube/config; every command names the context kind-$KIND_CLUSTER. `test` runs the Job of
# e2e/kind/e2e-job.yaml (the image of docker/e2e.Dockerfile), which reaches the API server
# through its ServiceAccount, for up to E2E_TIMEOUT seconds (default 1800), and prints its log.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# kind v0.33.0's node image for Kubernetes 1.36, by digest, as its release notes ask (an
# image is built for one kind release). That release built v1.36.4, one patch above the test
# bed's v1.36.3 (e2e/testenv/kubernetes/go.mod); no kind release has a v1.36.3 image. Set
# KIND_NODE_IMAGE to use another, e.g. one made by `kind build node-image v1.36.3`.
KIND_VERSION="${KIND_VERSION:-v0.33.0}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed}"
KIND_CLUSTER="${KIND_CLUSTER:-tributary-e2e}"
# The names e2e/kind/brokers.yaml, e2e/kind/operator-values.yaml and e2e/kind/e2e-job.yaml use.
BROKER_IMAGE=tributary:e2e
OPERATOR_IMAGE=tributary-operator:e2e
E2E_IMAGE=tributary-e2e:e2e
# Where the chart goes (as in docs/operator.md) and where the brokers and examples go (the
# namespace in the example Cluster's bootstrap addresses).
OPERATOR_NS=tributary-system
BROKER_NS=tributary
RELEASE=tributary
# The e2e suite's Job and the namespace it runs and tests in (e2e/kind/e2e-job.yaml), and
# how long `test` waits for it (the Job's own activeDeadlineSeconds is 1800 too).
E2E_NS=tributary-e2e
E2E_JOB=tributary-e2e
E2E_TIMEOUT="${E2E_TIMEOUT:-1800}"

log() { printf 'kind-e2e: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

kind_bin() {
  if command -v kind >/dev/null 2>&1; then
    command -v kind
  elif [ -x "$(go env GOPATH 2>/dev/null)/bin/kind" ]; then
    printf '%s/bin/kind\n' "$(go env GOPATH)"
  else
    die "kind is not installed: run scripts/kind-e2e.sh install-kind"
  fi
}

# Puts the test bed's kubectl and helm first on PATH, when it is built.
testenv_tools_on_path() {
  local bin
  if bin="$("$repo_root/scripts/k8s-testenv.sh" bin-dir 2>/dev/null)"; then
    PATH="$bin:$PATH"
  fi
}

# The same, and fails without a kubectl and a helm.
use_testenv_tools() {
  testenv_tools_on_path
  command -v kubectl >/dev/null 2>&1 || die "no kubectl: run scripts/k8s-testenv.sh build"
  command -v helm >/dev/null 2>&1 || die "no helm: run scripts/k8s-testenv.sh build"
}

k() { kubectl --context "kind-$KIND_CLUSTER" "$@"; }

cmd_install_kind() {
  command -v go >/dev/null 2>&1 || die "go is not on PATH"
  # Only the Go module proxy is needed; kind's go.mod pins its own dependencies.
  go install "sigs.k8s.io/kind@$KIND_VERSION"
  local kind
  kind="$(kind_bin)"
  "$kind" version
}

cmd_up() {
  local kind clusters
  kind="$(kind_bin)"
  # (Not piped into `grep -q`: with pipefail, kind's SIGPIPE would fail the match.)
  clusters="$("$kind" get clusters 2>/dev/null || true)"
  if grep -qx "$KIND_CLUSTER" <<<"$clusters"; then
    log "kind cluster $KIND_CLUSTER exists; using it"
  else
    "$kind" create cluster --name "$KIND_CLUSTER" --image "$KIND_NODE_IMAGE" --wait 180s
  fi
  use_testenv_tools
  k wait --for=condition=Ready node --all --timeout=120s
  k version
}

cmd_images() {
  local kind start
  kind="$(kind_bin)"
  start=$SECONDS
  # BuildKit (the default builder of Docker 23+) for the Dockerfiles' cache mounts.
  DOCKER_BUILDKIT=1 docker build -f "$repo_root/docker/broker.Dockerfile" -t "$BROKER_IMAGE" "$repo_root"
  log "broker image built in $((SECONDS - start))s"
  start=$SECONDS
  DOCKER_BUILDKIT=1 docker build -f "$repo_root/docker/operator.Dockerfile" -t "$OPERATOR_IMAGE" "$repo_root"
  log "operator image built in $((SECONDS - start))s"
  # The e2e suite's test executables (a release build of the operator's tests, with
  # librdkafka): most of the operator's dependencies come from the same cache mounts.
  start=$SECONDS
  DOCKER_BUILDKIT=1 docker build -f "$repo_root/docker/e2e.Dockerfile" -t "$E2E_IMAGE" "$repo_root"
  log "e2e image built in $((SECONDS - start))s"
  docker image ls "${BROKER_IMAGE%%:*}"
  docker image ls "${OPERATOR_IMAGE%%:*}"
  docker image ls "${E2E_IMAGE%%:*}"
  "$kind" load docker-image "$BROKER_IMAGE" "$OPERATOR_IMAGE" "$E2E_IMAGE" --name "$KIND_CLUSTER"
}

cmd_deploy() {
  use_testenv_tools
  # The chart installs the CRDs from crds/ (through the charts/tributary/crds link) first.
  helm --kube-context "kind-$KIND_CLUSTER" upgrade --install "$RELEASE" "$repo_root/charts/tributary" \
    --namespace "$OPERATOR_NS" --create-namespace \
    --values "$repo_root/e2e/kind/operator-values.yaml" --timeout 5m
  k wait --for=condition=Established crd --all --timeout=60s
  k apply -f "$repo_root/e2e/kind/brokers.yaml"
  # The operator's readiness probe is /readyz: the API server has answered.
  k -n "$OPERATOR_NS" wait --for=condition=Available "deployment/$RELEASE" --timeout=180s
  # Every broker's Kafka port is bound. Admission to the cluster is what the example Cluster's
  # Ready condition shows next.
  k -n "$BROKER_NS" rollout status statefulset/tributary --timeout=300s
}

cmd_examples() {
  use_testenv_tools
  local examples="$repo_root/charts/tributary/examples"
  k -n "$BROKER_NS" apply -f "$examples/cluster.yaml" -f "$examples/topic.yaml" \
    -f "$examples/consumer-group.yaml"
  # Cluster: the operator reached the brokers (ClusterReachable). Topic: the Kafka topic
  # exists with 6 partitions, replication factor 3 and the configs (TopicReady).
  # ConsumerGroup: the brokers were asked about the group (GroupObserved; no member yet).
  # (Group-qualified names: `cluster` alone could mean another API's kind.)
  k -n "$BROKER_NS" wait --for=condition=Ready clusters.tributary.dev/main --timeout=300s
  k -n "$BROKER_NS" wait --for=condition=Ready topics.tributary.dev/orders --timeout=180s
  k -n "$BROKER_NS" wait --for=condition=Ready consumergroups.tributary.dev/billing --timeout=180s

  # A Cluster the operator runs itself, when the chart has that example: with the broker
  # image loaded into the node instead of the release it names by default, and requests
  # small enough for the runner (three more brokers next to the three above).
  local managed="$examples/cluster-managed.yaml" applied
  if [ -f "$managed" ]; then
    # `patch --local` edits the file's object without asking the API server.
    applied="$(k patch --local -f "$managed" --type merge -o yaml -p "{\"spec\": {
        \"image\": \"$BROKER_IMAGE\", \"imagePullPolicy\": \"Never\",
        \"resources\": {\"requests\": {\"cpu\": \"100m\", \"memory\": \"256Mi\"},
                      \"limits\": {\"memory\": \"1Gi\"}}}}" |
      k -n "$BROKER_NS" apply -f - -o name)"
    log "applied $applied (from $managed)"
    k -n "$BROKER_NS" wait --for=condition=Ready "$applied" --timeout=300s
  fi
  k -n "$BROKER_NS" get tributary -o wide
}

cmd_test() {
  use_testenv_tools
  local job="job/$E2E_JOB" deadline status="" conditions phase waiting stream_pid="" stream_cut="" i
  # A Job's pod template cannot change, and a finished Job would be taken for this run's:
  # the previous one goes first, with its pod.
  k -n "$E2E_NS" delete "$job" --ignore-not-found --wait --cascade=foreground --timeout=120s
  k apply -f "$repo_root/e2e/kind/e2e-job.yaml"
  log "waiting up to ${E2E_TIMEOUT}s for $job in namespace $E2E_NS"
  deadline=$((SECONDS + E2E_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    # The suite's output as it comes, once its container runs. (The Job's pod is deleted if
    # the Job's activeDeadlineSeconds passes, and its log with it.)
    if [ -z "$stream_pid" ]; then
      phase="$(k -n "$E2E_NS" get pods -l "batch.kubernetes.io/job-name=$E2E_JOB" \
        -o jsonpath='{.items[0].status.phase}' 2>/dev/null || true)"
      case "$phase" in
        Running | Succeeded | Failed)
          k -n "$E2E_NS" logs "$job" --follow --timestamps --tail=-1 &
          stream_pid=$!
          ;;
      esac
      # A container that cannot start (the image not loaded into the node, with pull policy
      # Never) would leave the Job waiting until its deadline.
      waiting="$(k -n "$E2E_NS" get pods -l "batch.kubernetes.io/job-name=$E2E_JOB" \
        -o jsonpath='{.items[0].status.containerStatuses[0].state.waiting.reason}' 2>/dev/null || true)"
      case "$waiting" in
        ErrImageNeverPull | ErrImagePull | ImagePullBackOff | InvalidImageName | \
          CreateContainerConfigError | CreateContainerError)
          status="NotStarted: $waiting"
          break
          ;;
      esac
    fi
    # The types of the Job's true conditions: Complete, or Failed (backoffLimit 0: the pod
    # failed; or activeDeadlineSeconds passed). SuccessCriteriaMet and FailureTarget come
    # first, while the pod is still being stopped.
    conditions="$(k -n "$E2E_NS" get "$job" \
      -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}' 2>/dev/null || true)"
    case " $conditions " in
      *" Complete "*) status=Complete ;;
      *" Failed "*) status=Failed ;;
    esac
    [ -z "$status" ] || break
    # A stream that ended before the Job did was cut: the whole log is printed at the end.
    if [ -n "$stream_pid" ] && ! kill -0 "$stream_pid" 2>/dev/null; then
      stream_cut=1
    fi
    sleep 10
  done
  if [ -n "$stream_pid" ]; then
    # The stream ends with the container; a little time for its last lines, then it stops.
    for ((i = 0; i < 30; i++)); do
      kill -0 "$stream_pid" 2>/dev/null || break
      sleep 1
    done
    kill "$stream_pid" 2>/dev/null || true
    wait "$stream_pid" 2>/dev/null || true
  fi
  if [ -z "$stream_pid" ] || [ -n "$stream_cut" ]; then
    log "log of $job:"
    k -n "$E2E_NS" logs "$job" --timestamps --tail=-1 || log "no log of $job"
  fi
  k -n "$E2E_NS" get "$job" -o wide || true
  k -n "$E2E_NS" get pods -o wide || true
  case "$status" in
    Complete) log "e2e suite passed" ;;
    Failed)
      die "e2e suite failed: $(k -n "$E2E_NS" get "$job" \
        -o jsonpath='{range .status.conditions[?(@.type=="Failed")]}{.reason}: {.message}{end}' 2>/dev/null || true)"
      ;;
    NotStarted*)
      k -n "$E2E_NS" describe pods -l "batch.kubernetes.io/job-name=$E2E_JOB" || true
      die "the container of $job cannot start (${status#NotStarted: })"
      ;;
    *) die "$job did not finish within ${E2E_TIMEOUT}s" ;;
  esac
}

# Best effort: every command runs whatever failed before it, and nothing here fails the step.
cmd_logs() {
  local dir="${1:?logs needs a directory}" kind ns pod
  mkdir -p "$dir/pods"
  testenv_tools_on_path
  {
    k get nodes -o wide
    k get all -A -o wide
    k get pvc,pv -A -o wide
  } >"$dir/get-all.txt" 2>&1 || true
  k get tributary -A -o yaml >"$dir/tributary-resources.yaml" 2>&1 || true
  k get events -A --sort-by=.lastTimestamp >"$dir/events.txt" 2>&1 || true
  k describe pods -A >"$dir/describe-pods.txt" 2>&1 || true
  k -n "$OPERATOR_NS" describe "deployment/$RELEASE" >"$dir/describe-operator.txt" 2>&1 || true
  k -n "$BROKER_NS" describe statefulset/tributary >"$dir/describe-brokers.txt" 2>&1 || true
  k -n "$E2E_NS" get tributary,pods,statefulsets,pvc -o wide >"$dir/get-e2e.txt" 2>&1 || true
  k -n "$E2E_NS" describe "job/$E2E_JOB" >"$dir/describe-e2e-job.txt" 2>&1 || true
  for ns in "$OPERATOR_NS" "$BROKER_NS" "$E2E_NS"; do
    for pod in $(k -n "$ns" get pods -o name 2>/dev/null); do
      pod="${pod#pod/}"
      k -n "$ns" logs "$pod" --all-containers --timestamps >"$dir/pods/$ns.$pod.log" 2>&1 || true
      # The containers' previous run, if they restarted.
      k -n "$ns" logs "$pod" --all-containers --timestamps --previous \
        >"$dir/pods/$ns.$pod.previous.log" 2>/dev/null || true
      [ -s "$dir/pods/$ns.$pod.previous.log" ] || rm -f "$dir/pods/$ns.$pod.previous.log"
    done
  done
  helm --kube-context "kind-$KIND_CLUSTER" -n "$OPERATOR_NS" status "$RELEASE" >"$dir/helm-status.txt" 2>&1 || true
  docker image ls >"$dir/docker-images.txt" 2>&1 || true
  if kind="$(kind_bin 2>/dev/null)"; then
    "$kind" export logs "$dir/kind" --name "$KIND_CLUSTER" >"$dir/kind-export.txt" 2>&1 || true
  fi
  log "diagnostics in $dir"
}

cmd_down() {
  "$(kind_bin)" delete cluster --name "$KIND_CLUSTER"
}

case "${1:-}" in
  install-kind) cmd_install_kind ;;
  up) cmd_up ;;
  images) cmd_images ;;
  deploy) cmd_deploy ;;
  examples) cmd_examples ;;
  test) cmd_test ;;
  logs) shift; cmd_logs "$@" ;;
  down) cmd_down ;;
  all)
    cmd_up
    cmd_images
    cmd_deploy
    cmd_examples
    cmd_test
    ;;
  *)
    sed -n '2,22p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
