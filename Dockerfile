# syntax=docker/dockerfile:1
# keyward container image: `docker build -t keyward .`
# Runs `keyward serve` on 0.0.0.0:8080; needs DATABASE_URL (see docker-compose.yml).

# ---- build -------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# sqlx's compile-time query macros, if any, must use the checked-in .sqlx data:
# there is no database during the image build.
ENV SQLX_OFFLINE=true \
    CARGO_INCREMENTAL=0
COPY . .
# Cache mounts keep the crate registry and the target dir between builds, so a
# code change does not recompile every dependency. The binary is copied out of
# the (cached, not image-persisted) target dir.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin keyward \
    && install -D -m 0755 target/release/keyward /out/keyward

# ---- runtime -----------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin keyward
COPY --from=builder /out/keyward /usr/local/bin/keyward
USER keyward
ENV KEYWARD_LISTEN=0.0.0.0:8080 \
    KEYWARD_LOG=info
EXPOSE 8080
# Other subcommands work too, e.g.
#   docker compose run --rm keyward admin create-service-token --platform --name bootstrap --permissions tenants:admin
ENTRYPOINT ["keyward"]
CMD ["serve"]
