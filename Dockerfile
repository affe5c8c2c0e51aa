# syntax=docker/dockerfile:1
# The vane image: a release build on the Rust image, then only the binary on distroless.
#
#   docker build -t vane:0.1.0 .
#
# The chart (charts/vane) runs it as user 65532 with a read-only root filesystem.

# --- build -------------------------------------------------------------------------------------
# Debian 12 (bookworm), like the runtime image below, so the binary links the same glibc.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The caches keep the crates and the build directory between builds; the binary is copied out
# of the cached target directory, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vane \
    && cp target/release/vane /vane

# --- runtime -----------------------------------------------------------------------------------
# glibc, libgcc and CA certificates, no shell, no package manager; "nonroot" is uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /vane /vane
# 8080: plain HTTP (--http-addr); 9090: health, readiness and debug (--admin-addr).
EXPOSE 8080 9090
USER 65532:65532
ENTRYPOINT ["/vane"]
