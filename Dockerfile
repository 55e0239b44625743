# syntax=docker/dockerfile:1
#
# ext-runner container image (see README "Deployment").
#
#   docker build -t ext-runner:0.1.0 .
#
# Stage 1 builds the release `ext-runner` binary and the example extension
# (examples/hello, for wasm32-wasip2) with the project's pinned toolchain;
# stage 2 is debian:bookworm-slim with ca-certificates (rustls reads the
# system roots), the binary and the example, running as uid 10001.
#
# The runtime writes only below RUNNER_DATA_DIR, RUNNER_CACHE_DIR and /tmp,
# so it runs with a read-only root filesystem:
#   docker run --read-only --tmpfs /tmp -v ext-runner-cache:/var/cache/ext-runner ...

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Guest components (the example extension) build for this target.
RUN rustup target add wasm32-wasip2
COPY . .
ENV CARGO_TARGET_DIR=/cache/target
# The cache mounts keep crates.io downloads and compiled dependencies between
# builds (BuildKit); everything the runtime stage needs is copied to /out.
# `exec` runs the freshly built example through the freshly built runner:
# an image whose runner cannot execute a component fails here, not in a pod.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/cache/target,sharing=locked \
    cargo build --release --locked -p ext-runner --bin ext-runner \
    && scripts/build-example \
    && install -D -m 0755 "$CARGO_TARGET_DIR/release/ext-runner" /out/usr/local/bin/ext-runner \
    && mkdir -p /out/usr/share/ext-runner/examples/hello \
    && cp -R examples/hello/manifest.json examples/hello/dist examples/hello/ui \
        /out/usr/share/ext-runner/examples/hello/ \
    && /out/usr/local/bin/ext-runner exec /out/usr/share/ext-runner/examples/hello --path /hello

FROM debian:bookworm-slim
# ca-certificates is deliberately unpinned: a pinned Debian version disappears
# from the archive with the next security update and breaks the build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ext-runner \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ext-runner \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/ext-runner /var/cache/ext-runner
COPY --from=builder /out/ /
# PORT, not RUNNER_LISTEN: the runner listens on 0.0.0.0:$PORT when
# RUNNER_LISTEN is unset, and container platforms (Knative, Cloud Run) set
# PORT themselves. The Helm chart sets RUNNER_LISTEN explicitly.
ENV RUNNER_DATA_DIR=/var/lib/ext-runner \
    RUNNER_CACHE_DIR=/var/cache/ext-runner \
    PORT=8080
# `serve --dev` finds its default `--extension examples/hello` here.
WORKDIR /usr/share/ext-runner
USER 10001:10001
VOLUME ["/var/lib/ext-runner", "/var/cache/ext-runner"]
# 8080: internal listener (/v1/execute, /healthz, /readyz, /metrics);
# 8081: public UI listener when RUNNER_PUBLIC_LISTEN=0.0.0.0:8081.
EXPOSE 8080 8081
# No HEALTHCHECK: Kubernetes/Knative probe /healthz and /readyz themselves.
ENTRYPOINT ["ext-runner", "serve"]
