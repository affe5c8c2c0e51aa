# syntax=docker/dockerfile:1
# The vane image: a release build on the Rust image, then only the stripped binary on distroless.
#
#   make image                                  # docker or podman, tagged as the chart's default
#   docker build -t ghcr.io/vane-dev/vane:0.1.0 .   # the same by hand
#   docker build --target debug-info --output type=local,dest=target/image .
#                                               # the split-off debug info, for symbolizing
#
# The chart (charts/vane) runs it as user 65532 with a read-only root filesystem. Releases are
# built for linux/amd64 and linux/arm64 and pushed by .github/workflows/release.yml.
#
# Base images are pinned by tag, not yet by digest: the digests could not be looked up where
# this file was written (no registry access). To pin, resolve each tag once
# (`docker buildx imagetools inspect rust:1.95-bookworm`, and the same for the distroless tag)
# and write `FROM IMAGE:TAG@sha256:...`; Renovate or Dependabot then keep the digests fresh.

# --- build -------------------------------------------------------------------------------------
# Debian 12 (bookworm), like the runtime image below, so the binary links the same glibc.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The caches keep the crates and the build directory between builds; the binary is copied out
# of the cached target directory, which is not part of the image. The release profile keeps
# line tables (Cargo.toml: debug = "line-tables-only", for profiling a local build); in the
# image they are split off into /vane.debug (the debug-info stage below) and the binary keeps
# only its symbol table, enough for function names in backtraces and profiles.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vane \
    && objcopy --only-keep-debug target/release/vane /vane.debug \
    && objcopy --strip-debug --add-gnu-debuglink=/vane.debug target/release/vane /vane

# --- debug info (not part of the image; `--target debug-info --output ...` exports it) --------
FROM scratch AS debug-info
COPY --from=build /vane.debug /vane.debug

# --- runtime -----------------------------------------------------------------------------------
# glibc, libgcc and CA certificates, no shell, no package manager; "nonroot" is uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
# Set by `make image` (the crate version and the git commit); override with --build-arg.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="vane" \
      org.opencontainers.image.description="A Kubernetes ingress controller with an embedded hyper reverse proxy" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot" \
      org.opencontainers.image.documentation="charts/vane/README.md"
COPY --from=build /vane /vane
# 8080: plain HTTP (--http-addr); 8443: HTTPS (--https-addr); 9090: health and readiness
# (--admin-addr); 9091: metrics (--metrics-addr). Not 9092: /debug/routes (--debug-addr) belongs
# on loopback. All unprivileged: the image needs no capability.
EXPOSE 8080 8443 9090 9091
USER 65532:65532
ENTRYPOINT ["/vane"]
