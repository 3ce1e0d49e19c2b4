# syntax=docker/dockerfile:1
#
# One image with every binary; the command picks the service (or the operator's command):
#   docker run --rm herald change-detector | renderer | sender | fake-provider --listen 0.0.0.0:8025
#   docker run --rm herald heraldctl audit --schedule acme/welcome-email --from 2h
# Settings: /app/config (HERALD_CONFIG_DIR) + HERALD_ENV + HERALD__SECTION__KEY variables;
# secrets only from the environment (see README "Configuration").
# Build from the repository root: docker build -t herald .

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# rdkafka-sys compiles the bundled librdkafka with its mklove ./configure + make (C/C++
# toolchain, bash) and links the system zlib found through pkg-config (rdkafka's `libz`
# feature). cmake is not used by rdkafka's default build; it is here as the fallback builder
# of aws-lc-sys, which the rustls stack may pull in. Most of these are in the rust image
# already; listing them keeps the build independent of that. Versions are Debian stable's
# (security updates roll in), hence not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cargo registry and target dir live in BuildKit cache mounts (kept between builds, not
# in the image), so the binaries are copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bins \
 && mkdir -p /out \
 && cp target/release/change-detector target/release/renderer target/release/sender \
       target/release/fake-provider target/release/heraldctl /out/

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# ca-certificates: TLS to the real SendGrid / Twilio and to SQL Server with a CA-signed
# certificate. zlib1g: librdkafka links it (already in the base image, as are glibc and
# libgcc-s1, the binaries' other libraries). bash, also in the base image, runs the compose
# healthcheck of the fake provider. Not pinned: Debian stable's versions.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin herald
COPY --from=builder /out/ /usr/local/bin/
COPY config/ /app/config/
# Fail the build, not the first start, if a binary needs a shared library this image lacks.
RUN for bin in change-detector renderer sender fake-provider heraldctl; do \
        libs="$(ldd "/usr/local/bin/$bin")"; \
        if grep -q 'not found' <<<"$libs"; then \
            echo "$bin: missing shared libraries:" >&2; echo "$libs" >&2; exit 1; \
        fi; \
    done
WORKDIR /app
ENV HERALD_CONFIG_DIR=/app/config
# Numeric, so runtimes that enforce non-root (runAsNonRoot) can verify it.
USER 10001:10001
CMD ["sh", "-c", "echo 'herald image: name a service as the command: change-detector, renderer, sender or fake-provider (or heraldctl)' >&2; exit 64"]
