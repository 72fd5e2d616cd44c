"""The Grafana dashboard charts what imageq exports: each PromQL expression parses, and each
metric it names is one imageq's workers or its exporter serve (names read in process)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client.registry import REGISTRY

import imageq.worker.metrics  # noqa: F401 -- registers the workers' metrics in REGISTRY
from imageq.config import Settings
from imageq.worker.metrics_cluster import ClusterCollector

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "imageq-dashboard.json"
# Grafana's own variables, as Grafana would fill them in before sending the query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# Series Prometheus itself adds to every scrape.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds"}
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
    "info": ("_info",),
    "summary": ("", "_sum", "_count"),
}


def panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows included."""
    for panel in node.get("panels", []):
        yield panel
        yield from panels(panel)


def expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]


def exported_names() -> set[str]:
    """Every series name imageq serves: the workers' registry (counters with _total,
    histograms with _bucket/_sum/_count) and the cluster collector's families."""
    families = [
        *REGISTRY.collect(),
        *ClusterCollector.from_settings(Settings(_env_file=None)).describe(),
    ]
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects, from its parsed syntax tree."""
    for variable, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    assert "$" not in expression, f"unknown Grafana variable in {expression!r}"
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expression!r}"
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expression), visit)
    return names


EXPRESSIONS = expressions()
EXPORTED = exported_names()


def test_the_dashboard_has_expressions() -> None:
    """A guard on the tests below: the walk finds the panels' queries."""
    assert len(EXPRESSIONS) >= 20


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_every_metric_charted_is_exported(expression: str) -> None:
    """Each expression parses, and each metric it names is served by imageq (or Prometheus)."""
    names = metric_names(expression)
    assert names, expression
    assert names <= EXPORTED | PROMETHEUS_SERIES, sorted(names - EXPORTED - PROMETHEUS_SERIES)


def test_every_imageq_metric_is_charted() -> None:
    """No metric of imageq's is left off the dashboard."""
    charted = set().union(*(metric_names(expression) for expression in EXPRESSIONS))
    bases = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in charted}
    families = {name for name in EXPORTED if name.startswith("imageq_")}
    missing = {
        name for name in families if re.sub(r"_(total|bucket|sum|count)$", "", name) not in bases
    }
    assert missing == set()


def test_the_parser_reads_names_not_labels_or_functions() -> None:
    """The extraction itself: label names, functions and grouping are not metric names."""
    expression = (
        'histogram_quantile(0.9, sum by (le) (rate(a_bucket{job="x"}[$__rate_interval]))) / b'
    )
    assert metric_names(expression) == {"a_bucket", "b"}


def test_a_misspelt_metric_is_caught() -> None:
    """The check can fail: a name imageq does not export is found out."""
    assert not metric_names("rate(imageq_jobs_finishd_total[5m])") <= EXPORTED
