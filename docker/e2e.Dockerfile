# syntax=docker/dockerfile:1
#
# The operator's e2e suite as an image, for the kind workflow (scripts/kind-e2e.sh, which runs
# it as the Job of e2e/kind/e2e-job.yaml): the test executables of operator/tests/
# operated_cluster.rs, operated_failover.rs and operated_refusal.rs, and docker/e2e-run.sh,
# which runs them one after the other. Inside the cluster the suite reaches the API server through the pod's
# ServiceAccount (TRIBUTARY_E2E_KUBECONFIG=in-cluster) and the brokers through their pods'
# DNS names. Test-only: it has a shell, and it is never published.
#
#   docker build -f docker/e2e.Dockerfile -t tributary-e2e:e2e .
#
# The build context is the repository root (.dockerignore says what is left out). BuildKit is
# needed for the cache mounts (the default builder of Docker 23 and later).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Nothing is installed besides the Rust image's toolchain: rdkafka (a dev-dependency of the
# tests) builds librdkafka from source with its own ./configure and make, which need the C
# compiler, make, perl and pkg-config of the image, and the zlib headers (zlib1g-dev), which
# the image (buildpack-deps) has too. zstd is compiled by zstd-sys and linked statically;
# libz is linked dynamically from the system's zlib.
#
# The cache mounts are those of docker/broker.Dockerfile and docker/operator.Dockerfile (see
# there): the release build of the operator's dependencies is shared with the operator image.
# The test executables have a hash in their names, and the target/ cache may hold older ones,
# so the names are taken from cargo's JSON messages (the `executable` of the compiler
# artifact of each test target) and copied under stable names in the same step.
RUN --mount=type=cache,id=tributary-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=tributary-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=tributary-target,target=/src/target,sharing=locked \
    cargo test --release --locked -p tributary-operator \
        --test operated_cluster --test operated_failover --test operated_refusal --no-run --message-format=json \
        >/tmp/cargo-messages.json \
    && for test in operated_cluster operated_failover operated_refusal; do \
         exe="$(grep '"reason":"compiler-artifact"' /tmp/cargo-messages.json \
           | grep -F "\"kind\":[\"test\"]" \
           | grep -F "\"name\":\"$test\"" \
           | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"; \
         if [ -z "$exe" ] || [ ! -x "$exe" ]; then \
           echo "no test executable for $test in cargo's messages" >&2; exit 1; \
         fi; \
         echo "$test: $exe"; \
         install -D -m 0755 "$exe" "/out/$test" || exit 1; \
       done

# glibc, libgcc_s and libz (Debian 12, as the build stage, so the glibc versions match), CA
# certificates, and a shell for the runner.
FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -m 0755 -o 65532 -g 65532 /e2e
WORKDIR /e2e
COPY --from=build /out/operated_cluster /out/operated_failover /out/operated_refusal /e2e/
COPY --chmod=0755 docker/e2e-run.sh /e2e/e2e-run.sh
# Numeric, so that Kubernetes can check runAsNonRoot against the image. The user has no
# passwd entry: HOME is set so that nothing writes into /.
USER 65532:65532
ENV HOME=/e2e
# Runs every test executable with --test-threads 1; arguments are handed to each of them
# (a test name filter, --nocapture).
ENTRYPOINT ["/e2e/e2e-run.sh"]
