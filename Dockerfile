# One image for every stage (extract, score, publish, gc, nightly) and serve.
# Build: docker build -t faverecs .
# Run:   docker run --rm -e FLICKR_API_KEY -e FAVERECS__STORAGE__URL=s3://bucket/prefix faverecs nightly
#        docker run --rm -p 8080:8080 -e FAVERECS__STORAGE__URL=s3://bucket/prefix faverecs serve --addr 0.0.0.0:8080

# --- build: the release binary (thin LTO, see Cargo.toml) ---
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The registry and target folders are BuildKit cache mounts, so a rebuild after a
# code change recompiles our crates, not the dependencies.
COPY Cargo.toml Cargo.lock ./
COPY config config
COPY pipeline pipeline
COPY serve serve
COPY jobs jobs
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin faverecs \
    && install -m 0755 target/release/faverecs /usr/local/bin/faverecs

# --- runtime: the binary, CA certificates and a non-root user ---
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /work --create-home faverecs \
    && install -d -o 10001 -g 10001 -m 0700 /work/tmp
COPY --from=build /usr/local/bin/faverecs /usr/local/bin/faverecs
USER 10001
WORKDIR /work
# The root file system is read-only in ECS and Batch: temporary files (score
# builds a run's serving layout there, serve downloads one from S3 there) go to
# /work/tmp, which the task definitions mount as a volume on the task's
# ephemeral storage; as a VOLUME here, ECS copies its owner (this user) to it.
ENV RUST_LOG=info TMPDIR=/work/tmp
VOLUME ["/work/tmp"]
EXPOSE 8080
# For serve (`faverecs probe` GETs /readyz; the image has no curl). Batch jobs
# ignore it; ECS serve tasks use the same path as the ALB's health check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["faverecs", "probe", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["faverecs"]
CMD ["serve", "--addr", "0.0.0.0:8080"]
