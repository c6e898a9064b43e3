#!/usr/bin/env bash
# Installs what building and testing Tributary needs on a new Debian machine, and nothing
# that is already there. The broker itself needs only cargo; the tests and the benchmark
# build librdkafka from source (a C compiler, make, pkg-config, zlib headers) and run under
# cargo-nextest.
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v perl >/dev/null 2>&1 || need_apt+=(perl)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# kafka-python for the compatibility test, in a virtualenv under target/ so the system
# Python stays untouched.
venv="$(cd "$(dirname "$0")/.." && pwd)/target/compat-venv"
if ! "$venv/bin/python" -c 'import kafka' >/dev/null 2>&1; then
  echo "setup: installing kafka-python into $venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q kafka-python==3.0.12
fi

# The Kubernetes test bed (scripts/k8s-testenv.sh, e2e/testenv/README.md): openssl makes its
# certificates, curl probes it, and its binaries are built from Go modules into a cache
# outside the clone, ~/.cache/tributary/k8s-testenv (long the first time on a machine, then
# nothing). It needs Go >= 1.26.
need_apt=()
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}"
fi
"$(dirname "$0")/k8s-testenv.sh" build >/dev/null
