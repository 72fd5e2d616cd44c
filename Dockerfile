# One image for every imageq process: the worker (the default command), the scheduler (beat),
# Flower, the metrics exporter and the producers' CLI; docker-compose.yml picks the command.
# The API simulator is a stage of its own (`--target simulator`), so that production images
# carry none of its dependencies. `docker build .` builds the last stage: the production image.
# The base is the official Python image, patch release and Debian release pinned, so a rebuild
# gets the same base (bump them together). PYTHON_IMAGE swaps it for another Debian bookworm
# image with python3 and python3-venv: `make compose-check` builds this same file on a base it
# makes from Debian's packages, where no image registry is reachable.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
FROM ${PYTHON_IMAGE} AS imageq

# imageq and its dependencies live in a virtual environment of their own, first on PATH: the
# same layout on either base (Debian's python3 refuses a system-wide pip install).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/imageq \
    PATH=/opt/imageq/bin:$PATH
RUN useradd --create-home --uid 10001 imageq \
    && python3 -m venv /opt/imageq
# No per-thread malloc cache (glibc's tcache): each thread's cache pinned chunks its work had
# freed, resident, so a poller-mode worker's memory grew with its threads
# (docs/performance.md, "Memory per job in flight"). Ignored where the C library is not glibc.
ENV GLIBC_TUNABLES=glibc.malloc.tcache_count=0
WORKDIR /app

# Exact versions of every dependency (and of the build backend), so the image runs what the
# tests ran; its own layer, rebuilt only when a pin changes. The header says how to regenerate.
# It holds the `ops` extra (Flower), for compose's Flower service.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

COPY pyproject.toml README.md ./
# imageq/ holds links to the folders below: the wheel's imageq.worker, imageq.cli ... are them.
COPY imageq ./imageq
COPY config ./config
COPY worker ./worker
COPY producers ./producers
COPY simulator ./simulator
COPY devenv ./devenv
COPY ops ./ops
COPY cli ./cli
# --no-deps: everything came from the lock above; --no-build-isolation: built with its setuptools.
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && mkdir -p /app/var \
    && chown imageq:imageq /app/var

# The code stays root's and read-only; the process writes only under /app/var (manifests,
# saved images), where docker-compose.yml mounts a volume.
USER imageq

# Prometheus metrics of the worker (IMAGEQ_OBSERVABILITY__METRICS_PORT).
EXPOSE 9108

# The worker's healthcheck: broker, job store, API key and a worker answering a ping, each
# bounded by --timeout and run side by side; schedules are the scheduler's to report. Other
# services override it in docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=20s --start-period=30s --retries=3 \
    CMD ["imageq", "health", "--json", "--timeout", "5", "--skip", "schedules"]

CMD ["celery", "-A", "imageq.worker.app", "worker", "--loglevel=INFO"]

# The API simulator, for compose's demo profile: the image above plus the `simulator` extra
# (aiohttp), pinned by its own lock (the same pins, and aiohttp's).
FROM imageq AS simulator
USER root
COPY requirements-simulator.lock ./
RUN pip install --no-cache-dir -r requirements-simulator.lock
USER imageq
CMD ["imageq-simulator", "--host", "0.0.0.0", "--port", "8080"]

# The default target: the production image, without the simulator's dependencies.
FROM imageq
