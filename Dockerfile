# syntax=docker/dockerfile:1
# One image for every role: `aihub serve | command-api | read-api | projectors | bootstrap |
# backup | restore …`. Built in two stages: the Rust build with what it needs (OpenSSL headers
# for Kafka over TLS, npm for the Swagger UI the docs page embeds), then a small runtime on
# Debian slim that runs as a non-root user and is happy with a read-only root filesystem (the only
# writable path is the volume of the chat-event spool).

FROM rust:1-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      pkg-config libssl-dev cmake npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p aihub \
 && strip target/release/aihub

FROM debian:bookworm-slim AS runtime
# libssl3: librdkafka's TLS; curl: the health check; ca-certificates: TLS to providers.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libssl3 curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 aihub \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin aihub \
 && mkdir -p /var/lib/aihub/spool \
 && chown -R 10001:10001 /var/lib/aihub
COPY --from=build /src/target/release/aihub /usr/local/bin/aihub
USER 10001:10001
# The API on 8001; health, metrics and docs on the operator port 9090 (keep it off the public
# load balancer); JSON logs; the spool on its volume (mount it persistent: it holds answered
# calls' events until the journal has them).
ENV AIHUB_LISTEN=0.0.0.0:8001 \
    AIHUB_OPS_LISTEN=0.0.0.0:9090 \
    AIHUB_SPOOL_DIR=/var/lib/aihub/spool \
    AIHUB_LOG_FORMAT=json \
    RUST_LOG=info
VOLUME ["/var/lib/aihub"]
EXPOSE 8001 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9090/readyz"]
ENTRYPOINT ["/usr/local/bin/aihub"]
CMD ["serve"]
