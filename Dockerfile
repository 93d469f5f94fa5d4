# syntax=docker/dockerfile:1.7
# Multi-stage build: compile in the Rust image, ship the binary alone in a
# distroless image that runs as a non-root user (uid 65532).
#
# BuildKit cache mounts keep the crate registry and the target directory
# between builds: a change to tripgate's sources recompiles tripgate, not
# its few hundred dependencies.
#   docker build --build-arg TRIPGATE_GIT_SHA=$(git rev-parse --short=12 HEAD) -t tripgate .
# Pin the base images by digest in the release pipeline (FROM image@sha256:...,
# resolved from the registry it can reach).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY benches benches
COPY config config
# The commit, for tripgate_build_info (the image has no .git).
ARG TRIPGATE_GIT_SHA=unknown
ENV TRIPGATE_GIT_SHA=$TRIPGATE_GIT_SHA
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tripgate \
    && cp target/release/tripgate /tripgate

FROM gcr.io/distroless/cc-debian12:nonroot
ARG TRIPGATE_GIT_SHA=unknown
LABEL org.opencontainers.image.title="tripgate" \
      org.opencontainers.image.description="Pre-trip health-code gate for ride-hailing dispatch" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${TRIPGATE_GIT_SHA}"
COPY --from=build /tripgate /usr/local/bin/tripgate
COPY config /etc/tripgate/config
ENV TRIPGATE_ENV=production \
    TRIPGATE_CONFIG_DIR=/etc/tripgate/config
USER 65532:65532
EXPOSE 8080 9100
# Asks the admin listener's /readyz (exit 0 ready or degraded, 1 not).
HEALTHCHECK --interval=10s --timeout=5s --retries=3 CMD ["/usr/local/bin/tripgate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/tripgate"]
CMD ["serve"]
