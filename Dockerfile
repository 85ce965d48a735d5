# syntax=docker/dockerfile:1
#
# One image for every ecomd role: the role is chosen at run time with --role (or ECOMD_ROLE).
#
#   docker build -t ecomd:0.1.0 .
#   docker run --rm -p 8080:8080 -v ecomd-data:/var/lib/ecomd ecomd:0.1.0 --role=all
#   docker run --rm ecomd:0.1.0 --role=order --bus=kafka --brokers=kafka:9092
#
# The build stage runs exactly the scripts a developer runs (scripts/install-deps.sh, then
# scripts/build-release.sh); tests/helm/docker_recipe_test.sh runs the same two steps on a machine
# without a container engine, so the recipe stays exercised. Keep the RUN lines marked
# "recipe:" in step with that test.

ARG DEBIAN_RELEASE=12

############################################################################### build
FROM debian:${DEBIAN_RELEASE} AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src

# Dependencies in their own layer: editing sources does not re-run apt-get.
COPY scripts/install-deps.sh scripts/install-deps.sh
# recipe: install-deps
RUN bash scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*

COPY . .
# recipe: build-release
RUN bin="$(bash scripts/build-release.sh /src/build-release | tail -n 1)" \
 && test -x "${bin}" \
 && install -D -m 0755 "${bin}" /out/ecomd \
 && strip --strip-unneeded /out/ecomd \
 && /out/ecomd --version

############################################################################### runtime
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG ECOMD_UID=10001
ARG ECOMD_VERSION=0.1.0
ENV DEBIAN_FRONTEND=noninteractive

# Only the shared libraries the binary links (Boost.Beast/Asio and RapidJSON are header-only);
# tests/helm/docker_recipe_test.sh checks this list against `ldd` of the built binary.
# recipe: runtime-packages
RUN apt-get update \
 && apt-get install -y --no-install-recommends librdkafka1 libsqlite3-0 libfmt9 libcurl4 libssl3 libprometheus-cpp-core1.0 libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid "${ECOMD_UID}" ecomd \
 && useradd --system --uid "${ECOMD_UID}" --gid ecomd --home-dir /var/lib/ecomd --no-create-home \
      --shell /usr/sbin/nologin ecomd \
 && install -d -o ecomd -g ecomd -m 0750 /var/lib/ecomd

COPY --from=build /out/ecomd /usr/local/bin/ecomd
COPY --from=build /src/config/ /etc/ecomd/
# Fail the build, not the first start, when a runtime library is missing.
RUN ! ldd /usr/local/bin/ecomd | grep 'not found' && ecomd --version

ENV ECOMD_CONFIG=/etc/ecomd/ecomd.json \
    ECOMD_DATA_DIR=/var/lib/ecomd \
    ECOMD_HTTP=0.0.0.0:8080

LABEL org.opencontainers.image.title="ecomd" \
      org.opencontainers.image.description="Event-driven order processing: one binary, every role" \
      org.opencontainers.image.version="${ECOMD_VERSION}"

# Numeric user so that Kubernetes' runAsNonRoot can verify it.
USER ${ECOMD_UID}:${ECOMD_UID}
WORKDIR /var/lib/ecomd
VOLUME ["/var/lib/ecomd"]
EXPOSE 8080
# ecomd stops gracefully on SIGTERM (finishes in-flight requests, commits consumed offsets).
STOPSIGNAL SIGTERM

# No curl in the image: bash's /dev/tcp speaks just enough HTTP/1.0 for a health check.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${ECOMD_HTTP##*:} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r _ code _ <&3 && [ \"${code}\" = 200 ]"]

ENTRYPOINT ["ecomd"]
CMD ["--role=all"]
