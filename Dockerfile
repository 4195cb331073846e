# syntax=docker/dockerfile:1
#
# Headway in a container: one static (musl) binary on an empty base image,
# run as an unprivileged user.
#
#   docker build -t headway --build-arg HEADWAY_GIT_COMMIT=$(git rev-parse --short=12 HEAD) .
#   docker run -d --name headway \
#     -p 8080:8080 -p 3478:3478/udp -p 3340:3340 \
#     -v headway-data:/var/lib/headway \
#     -v /etc/headway/config.yaml:/etc/headway/config.yaml:ro \
#     headway
#   docker exec headway headway users create alice
#
# The image holds the binary, CA certificates (for OIDC, ACME and DERP map
# URLs), /etc/passwd naming the user, and the empty data directory: no
# shell, no package manager, no libc. State lives in the volume
# /var/lib/headway; the configuration is read from /etc/headway/config.yaml
# when mounted (else defaults and HEADWAY_ variables).

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
# musl-gcc builds the C parts (SQLite, zstd, ring) for the static target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# .git is not copied: the commit comes in as a build argument.
ARG HEADWAY_GIT_COMMIT=""
ENV HEADWAY_GIT_COMMIT=${HEADWAY_GIT_COMMIT} \
    CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="--remap-path-prefix=/src=/headway --remap-path-prefix=/usr/local/cargo=/cargo -C strip=symbols"
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl -p headway \
 && install -D -m 0755 target/x86_64-unknown-linux-musl/release/headway /out/usr/local/bin/headway
# The unprivileged user (65532, as distroless images use) and its data
# directory, mode 0700.
RUN install -d -m 0700 -o 65532 -g 65532 /out/var/lib/headway \
 && install -d -m 0755 /out/etc/headway /out/etc/ssl/certs \
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
 && echo 'headway:x:65532:65532:Headway:/var/lib/headway:/sbin/nologin' > /out/etc/passwd \
 && echo 'headway:x:65532:' > /out/etc/group

FROM scratch
COPY --from=build /out/ /
USER 65532:65532
# Listen on every interface inside the container (the defaults are
# loopback-only); a mounted config.yaml or -e HEADWAY_... overrides these.
ENV HEADWAY_DATA_DIR=/var/lib/headway \
    HEADWAY_LISTEN_ADDR=0.0.0.0:8080 \
    HEADWAY_METRICS_LISTEN_ADDR=0.0.0.0:9090 \
    HEADWAY_DERP__SERVER__STUN_LISTEN_ADDR=0.0.0.0:3478 \
    HEADWAY_DERP__SERVER__TLS_LISTEN_ADDR=0.0.0.0:3340 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
VOLUME ["/var/lib/headway"]
# Control protocol and API; STUN; embedded DERP over TLS (http:// server_url
# only); metrics (keep it private).
EXPOSE 8080/tcp 3478/udp 3340/tcp 9090/tcp
# `headway health` asks the server over its admin socket in the data
# directory whether it and its database answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD ["/usr/local/bin/headway", "health"]
ENTRYPOINT ["/usr/local/bin/headway"]
CMD ["serve"]
