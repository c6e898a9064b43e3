# syntax=docker/dockerfile:1
#
# The broker image: the `tributary` binary on distroless, as uid 65532.
#
#   docker build -f docker/broker.Dockerfile -t tributary:dev .
#   docker run --rm -p 9092:9092 -e TRIBUTARY_ADVERTISED_LISTENERS=PLAINTEXT://localhost:9092 tributary:dev
#
# The build context is the repository root (.dockerignore says what is left out). BuildKit is
# needed for the cache mounts (the default builder of Docker 23 and later).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Nothing is installed besides the Rust image's toolchain: proto/build.rs compiles the .proto
# file with protox (pure Rust, no protoc), and rdkafka (librdkafka, built from source with a
# C toolchain) is a dev-dependency of the tests and the load generator only, which a build of
# the binary leaves out.
#
# The cache mounts keep the downloaded crates and the compiled dependencies between builds
# on one builder. They are not part of the image, so the binary is copied out of target/ in
# the same step. Their ids are shared with docker/operator.Dockerfile: the dependencies the
# two binaries have in common are compiled once, and `sharing=locked` makes a second build
# wait instead of compiling into the same directory at once.
RUN --mount=type=cache,id=tributary-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=tributary-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=tributary-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p tributary --bin tributary \
    && install -D -m 0755 target/release/tributary /out/tributary \
    && install -d -m 0755 /out/data

# glibc and libgcc_s, the only shared libraries the binary links (Debian 12, as the build
# stage, so the glibc versions match); no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/tributary /usr/local/bin/tributary
# The volume's mount point, owned by the broker's user: a volume Docker creates on first use
# copies this ownership, so the broker can write there without running as root. (Kubernetes
# volumes get it from the pod's fsGroup instead.)
COPY --from=build --chown=65532:65532 /out/data /var/lib/tributary
COPY docker/broker.properties /etc/tributary/server.properties
# Numeric, so that Kubernetes can check runAsNonRoot against the image.
USER 65532:65532
VOLUME ["/var/lib/tributary"]
# 9092: Kafka (`listeners`). 9093: gRPC between brokers (`controller.listener` of a cluster
# member; a standalone broker binds it on loopback only). 9644: HTTP health and metrics
# (`http.listener`).
EXPOSE 9092 9093 9644
ENTRYPOINT ["/usr/local/bin/tributary"]
# The image's defaults; give other arguments to run another subcommand (`topics`, `groups`,
# `cluster`) or another configuration file.
CMD ["broker", "--config", "/etc/tributary/server.properties"]
