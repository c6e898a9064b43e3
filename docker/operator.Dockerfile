# syntax=docker/dockerfile:1
#
# The operator image: the `tributary-operator` binary on distroless, as uid 65532. The Helm
# chart (charts/tributary) runs it; its `image.repository` and `image.tag` name the image.
#
#   docker build -f docker/operator.Dockerfile -t tributary-operator:dev .
#
# The build context is the repository root (.dockerignore says what is left out). BuildKit is
# needed for the cache mounts (the default builder of Docker 23 and later).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Nothing is installed besides the Rust image's toolchain: kube uses rustls with ring (ring
# compiles a little C with the image's cc; no OpenSSL, no cmake), and rdkafka is a
# dev-dependency of the operator's tests only, which a build of the binary leaves out.
#
# The cache mounts keep the downloaded crates and the compiled dependencies between builds
# on one builder. They are not part of the image, so the binary is copied out of target/ in
# the same step. Their ids are shared with docker/broker.Dockerfile (see there).
RUN --mount=type=cache,id=tributary-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=tributary-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=tributary-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p tributary-operator --bin tributary-operator \
    && install -D -m 0755 target/release/tributary-operator /out/tributary-operator

# glibc and libgcc_s (Debian 12, as the build stage), CA certificates; no shell. In a cluster
# the operator trusts the API server through its ServiceAccount's CA file.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/tributary-operator /usr/local/bin/tributary-operator
# Numeric, so that Kubernetes can check runAsNonRoot against the image.
USER 65532:65532
# /metrics, /healthz and /readyz (`--metrics-addr`, the chart's `metrics.port`).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tributary-operator"]
