# Multi-stage build: compile in the Rust image, ship the binary alone in a
# distroless image that runs as a non-root user (uid 65532).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY benches benches
COPY config config
# The commit, for tripgate_build_info (the image has no .git):
# docker build --build-arg TRIPGATE_GIT_SHA=$(git rev-parse --short=12 HEAD) .
ARG TRIPGATE_GIT_SHA=unknown
ENV TRIPGATE_GIT_SHA=$TRIPGATE_GIT_SHA
RUN cargo build --release --locked --bin tripgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/tripgate /usr/local/bin/tripgate
COPY config /etc/tripgate/config
ENV TRIPGATE_ENV=production \
    TRIPGATE_CONFIG_DIR=/etc/tripgate/config
USER 65532:65532
EXPOSE 8080 9100
# Asks the admin listener's /readyz (exit 0 ready or degraded, 1 not).
HEALTHCHECK --interval=10s --timeout=5s --retries=3 CMD ["/usr/local/bin/tripgate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/tripgate"]
CMD ["serve"]
