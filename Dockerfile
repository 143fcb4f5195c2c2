# syntax=docker/dockerfile:1
#
# Steward: a Matrix application service that looks after a Synapse homeserver.
#
#   docker build -t steward .
#   docker run -d --name steward \
#     -v /srv/steward/config:/config:ro \
#     -v steward-data:/data \
#     -v /srv/steward/dumps:/dumps \
#     -p 9993:9993 \
#     steward
#
# /config/config.yaml must have these settings for the container:
#   appservice:
#     bind_address: 0.0.0.0   # the default, 127.0.0.1, can't be reached from outside the container
#     port: 9993              # the default; if you change it, also change EXPOSE/-p and the HEALTHCHECK
#     url: http://steward:9993  # how Synapse reaches the bot (written into the registration)
#   storage:
#     database: /data/steward.db  # relative paths resolve against /config, which is read-only
#     dumps: /dumps
#
# The config and registration are mounted read-only. The bot runs as uid/gid 10001, so that
# user must be able to read both files. generate-registration writes the registration with
# mode 0600, so on the host run `chown 10001:10001` on it (or use --user). Host directories
# bind-mounted on /data and /dumps must also be writable by uid 10001. Named volumes are
# fine as they are, because they start out with the image's ownership.
#
# One-off commands use the same image. STEWARD_CONFIG and STEWARD_REGISTRATION are set
# below, so -c/-r aren't needed:
#   docker exec steward node dist/main.js status
#   docker run --rm --user "$(id -u):$(id -g)" -v /srv/steward/config:/config steward \
#     node dist/main.js generate-registration -f /config/registration.yaml
#   (then make the file readable by uid 10001 as described above)

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: every dependency, including dev dependencies, then compile src/ to dist/ ---------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# packages/no-e2ee is the in-repo stand-in for @matrix-org/matrix-sdk-crypto-nodejs
# (a file: dependency plus an override), so npm ci needs it to be present.
COPY package.json package-lock.json ./
COPY packages/no-e2ee/ packages/no-e2ee/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src/ src/
RUN npx tsc -p tsconfig.build.json

# ---- deps: production dependencies only ------------------------------------------------------
# No install scripts need to run. better-sqlite3 13 has none: it ships prebuilt glibc and musl
# binaries for x64/arm64 under prebuilds/, and allowScripts in package.json would deny one anyway.
# So the glibc slim base needs no compiler toolchain.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/no-e2ee/ packages/no-e2ee/
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# ---- runtime ---------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime

LABEL org.opencontainers.image.title="Steward" \
      org.opencontainers.image.description="A Matrix application service that does the caretaking of a Synapse homeserver, driven from an admin room." \
      org.opencontainers.image.licenses="Apache-2.0" \
      steward.config="/config/config.yaml (read-only); set appservice.bind_address: 0.0.0.0" \
      steward.registration="/config/registration.yaml (read-only, readable by uid 10001)" \
      steward.storage.database="/data/steward.db" \
      steward.storage.dumps="/dumps"

ENV NODE_ENV=production \
    STEWARD_CONFIG=/config/config.yaml \
    STEWARD_REGISTRATION=/config/registration.yaml

RUN groupadd --gid 10001 steward \
 && useradd --uid 10001 --gid steward --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin steward \
 && mkdir -p /data /dumps /config \
 && chown steward:steward /data /dumps \
 && chmod 0750 /data /dumps

WORKDIR /app
# Application files stay owned by root: the bot only reads them, and writes only to /data and /dumps.
# package.json must be next to dist/: dist/version.js imports '../package.json'.
COPY package.json package-lock.json ./
COPY packages/no-e2ee/ packages/no-e2ee/
# node_modules/@matrix-org/matrix-sdk-crypto-nodejs is a symlink to ../../packages/no-e2ee. COPY keeps symlinks.
COPY --from=deps /app/node_modules/ node_modules/
COPY --from=build /app/dist/ dist/

USER 10001:10001
VOLUME ["/data", "/dumps"]

# The appservice port (appservice.port, default 9993). Synapse sends transactions here.
EXPOSE 9993

# GET /health is unauthenticated and returns 200 with JSON. The image has no curl or wget, so
# use Node's fetch. It only answers once the bot has reached the homeserver and set up its
# rooms, so the start period is generous.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9993/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# `run` stops cleanly on SIGTERM (docker stop). Interrupted jobs resume on the next start.
STOPSIGNAL SIGTERM
CMD ["node", "dist/main.js", "run", "-c", "/config/config.yaml", "-r", "/config/registration.yaml"]
