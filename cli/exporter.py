"""`imageq metrics-exporter`: the cluster-wide metrics, served once for the whole cluster.

Register with `app.command("metrics-exporter")(metrics_exporter)`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from imageq.cli.exits import Exit
from imageq.cli.views import err, fail
from imageq.config import get_settings
from imageq.ops.terminal_text import shown
from imageq.worker.domain.payload import iso_time
from imageq.worker.metrics_cluster import (
    CLUSTER_METRICS,
    ClusterCollector,
    cluster_registry,
    serve_cluster_metrics,
)


def metrics_exporter(
    port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="Port (default: IMAGEQ_OBSERVABILITY__EXPORTER_PORT, 9109)."
        ),
    ] = None,
    # All interfaces by default: a scrape target, like the worker's metrics port.
    address: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",  # noqa: S104
    once: Annotated[
        bool, typer.Option("--once", help="Read the metrics once, print them and exit.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """Serve the cluster-wide metrics on /metrics (one exporter per cluster).

    Queue depths, jobs in flight, the in-flight cap's use and poll lag, read from Redis.

    Every worker serves its own metrics as well (IMAGEQ_OBSERVABILITY__METRICS_PORT).

    With --once: print one reading (Prometheus text, or JSON with --json); exit 1 if Redis is down.
    """
    settings = get_settings()
    registry = cluster_registry(ClusterCollector.from_settings(settings))
    if once:
        _print_once(registry, as_json=as_json)
        return
    chosen = settings.observability.exporter_port if port is None else port
    try:
        serve_cluster_metrics(registry, port=chosen, address=address)
    except OSError as error:
        message = f"cannot serve on {address}:{chosen}: {error.strerror or error}"
        raise fail(message, Exit.INVALID) from None
    url = f"http://{address}:{chosen}/metrics"
    if as_json:
        typer.echo(json.dumps({"serving": url, "metrics": sorted(CLUSTER_METRICS)}))
    else:
        err.print(shown(f"serving cluster metrics on {url}"))
    try:
        threading.Event().wait()  # the server runs in its own thread, until the process ends
    except KeyboardInterrupt:
        raise typer.Exit(Exit.OK) from None


def _print_once(registry: CollectorRegistry, *, as_json: bool) -> None:
    collected_at = time.time()
    families = list(registry.collect())  # read Redis once, for both the check and the output
    samples = [sample for family in families for sample in family.samples]
    redis_up = any(s.name == "imageq_exporter_redis_up" and s.value == 1 for s in samples)
    if as_json:
        reading: dict[str, Any] = {
            "collected_at": iso_time(collected_at),
            "redis_up": redis_up,
            "samples": [
                {"name": s.name, "labels": dict(s.labels), "value": s.value} for s in samples
            ],
        }
        typer.echo(json.dumps(reading))
    else:
        typer.echo(generate_latest(_Collected(families)).decode(), nl=False)
    if not redis_up:
        message = "Redis did not answer: only the exporter's own metrics were read"
        raise fail(message, Exit.NOT_ALL_SUCCEEDED)


class _Collected(Collector):
    """Families already read, for `generate_latest` to show as it shows a registry's."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families
