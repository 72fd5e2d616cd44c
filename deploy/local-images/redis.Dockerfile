# Redis from Debian's package, on the local base image: what `make compose-check` runs where
# no image registry is reachable (REDIS_IMAGE). It behaves as the official image does for
# docker-compose.yml: `redis-server` on PATH, working directory /data (the volume), not root,
# and protected mode off (the official image builds Redis so; the compose network, with no
# published port, is what fences it), else every other container is refused.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /data \
    && chown redis:redis /data \
    && printf '#!/bin/sh\nexec /usr/bin/redis-server --protected-mode no "$@"\n' \
        > /usr/local/bin/redis-server \
    && chmod 755 /usr/local/bin/redis-server
WORKDIR /data
VOLUME /data
USER redis
EXPOSE 6379
CMD ["redis-server"]
