#!/usr/bin/env bash
# The operator on a real Kubernetes node: a kind cluster, the broker and operator images built
# from docker/, the operator installed by the Helm chart, three brokers (e2e/kind/brokers.yaml)
# and the chart's examples, each step waited for with a deadline. .github/workflows/e2e.yml
# runs the steps one by one; on a machine with Docker, Go and the test bed they run the same.
#
#   scripts/kind-e2e.sh install-kind    go install sigs.k8s.io/kind at the pinned version
#   scripts/kind-e2e.sh up              create the kind cluster with the pinned node image
#   scripts/kind-e2e.sh images          docker build both images, kind load them into the node
#   scripts/kind-e2e.sh deploy          helm install the chart, apply the brokers; wait for both
#   scripts/kind-e2e.sh examples        apply charts/tributary/examples; wait for each to be Ready
#   scripts/kind-e2e.sh test            the operator's e2e suite against the kind cluster
#   scripts/kind-e2e.sh logs DIR        what a failed run needs looked at, into DIR
#   scripts/kind-e2e.sh down            delete the kind cluster
#   scripts/kind-e2e.sh all             up, images, deploy, examples, test
#
# kubectl and helm are the test bed's (scripts/k8s-testenv.sh build: the versions pinned in
# e2e/testenv/*/go.mod), else whatever is on PATH. The kubeconfig is kind's: $KUBECONFIG, or
# ~/.kube/config; every command names the context kind-$KIND_CLUSTER. `test` hands the suite
# TRIBUTARY_E2E_KUBECONFIG if set (its current context must be the kind cluster's), else a
# kubeconfig of the kind cluster alone, written to target/kind-e2e/kubeconfig.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# kind v0.33.0's node image for Kubernetes 1.36, by digest, as its release notes ask (an
# image is built for one kind release). That release built v1.36.4, one patch above the test
# bed's v1.36.3 (e2e/testenv/kubernetes/go.mod); no kind release has a v1.36.3 image. Set
# KIND_NODE_IMAGE to use another, e.g. one made by `kind build node-image v1.36.3`.
KIND_VERSION="${KIND_VERSION:-v0.33.0}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed}"
KIND_CLUSTER="${KIND_CLUSTER:-tributary-e2e}"
# The names e2e/kind/brokers.yaml and e2e/kind/operator-values.yaml use.
BROKER_IMAGE=tributary:e2e
OPERATOR_IMAGE=tributary-operator:e2e
# Where the chart goes (as in docs/operator.md) and where the brokers and examples go (the
# namespace in the example Cluster's bootstrap addresses).
OPERATOR_NS=tributary-system
BROKER_NS=tributary
RELEASE=tributary

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
  docker image ls "${BROKER_IMAGE%%:*}"
  docker image ls "${OPERATOR_IMAGE%%:*}"
  "$kind" load docker-image "$BROKER_IMAGE" "$OPERATOR_IMAGE" --name "$KIND_CLUSTER"
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
  # The suite reaches the cluster through the e2e kit (e2e/kit) when it is given a kubeconfig
  # in TRIBUTARY_E2E_KUBECONFIG, instead of starting its own control plane.
  local missing="" kubeconfig context kind
  [ -f "$repo_root/operator/tests/clusters.rs" ] || missing="operator/tests/clusters.rs does not exist"
  if [ -z "$missing" ] && ! grep -rq TRIBUTARY_E2E_KUBECONFIG "$repo_root/e2e/kit/src"; then
    missing="the e2e kit (e2e/kit/src) does not read TRIBUTARY_E2E_KUBECONFIG, so the suite would start its own control plane instead of using kind"
  fi
  if [ -n "$missing" ]; then
    # Not a failure: the suite and the kit's switch land separately from this script.
    log "skipping the e2e suite: $missing"
    [ -z "${GITHUB_ACTIONS:-}" ] || echo "::warning title=kind e2e suite skipped::$missing"
    return 0
  fi
  use_testenv_tools
  if [ -n "${TRIBUTARY_E2E_KUBECONFIG:-}" ]; then
    kubeconfig="$TRIBUTARY_E2E_KUBECONFIG"
    # The kit takes the file's current context: it must be the kind cluster.
    context="$(kubectl --kubeconfig "$kubeconfig" config current-context)"
    [ "$context" = "kind-$KIND_CLUSTER" ] ||
      die "the current context of $kubeconfig is $context, not kind-$KIND_CLUSTER"
  else
    # A kubeconfig of the kind cluster alone, so that nothing else can be picked up.
    kind="$(kind_bin)"
    mkdir -p "$repo_root/target/kind-e2e"
    kubeconfig="$repo_root/target/kind-e2e/kubeconfig"
    "$kind" get kubeconfig --name "$KIND_CLUSTER" >"$kubeconfig"
  fi
  cd "$repo_root"
  TRIBUTARY_E2E_KUBECONFIG="$kubeconfig" cargo nextest run --profile ci -p tributary-operator --test clusters
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
  for ns in "$OPERATOR_NS" "$BROKER_NS"; do
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
    sed -n '2,21p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
