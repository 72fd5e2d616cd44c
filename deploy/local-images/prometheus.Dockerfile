# Prometheus from Debian's package, on the local base image: what `make compose-check` runs
# where no image registry is reachable (PROMETHEUS_IMAGE). It behaves as the official image
# does for docker-compose.yml: config at /etc/prometheus/prometheus.yml, data in /prometheus,
# wget for the healthcheck, user nobody.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus \
    && chown nobody:nogroup /prometheus
USER nobody
EXPOSE 9090
VOLUME /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
