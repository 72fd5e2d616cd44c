# One image for the worker, the producers' CLI and the API simulator.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 imageq
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY worker ./worker
COPY producers ./producers
COPY simulator ./simulator
COPY devenv ./devenv
RUN pip install --no-cache-dir .
USER imageq
CMD ["celery", "-A", "worker.app", "worker", "--loglevel=INFO"]
