"""Prometheus metrics; each node exposes its own /metrics.

A node running several processes (`serve --processes N`) sets PROMETHEUS_MULTIPROC_DIR
before it starts them: prometheus-client then keeps every value in a file per process there,
and :func:`exposition` sums them, so any process answers a scrape for the whole node
(counters keep what a process counted before it was replaced). The gauges are read from the
database just before a scrape, so the most recent value is the node's.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                   600)

requests_total = Counter(
    "imagegate_requests_total", "HTTP requests by route, model and status",
    ["route", "model", "status"], registry=REGISTRY)
request_seconds = Histogram(
    "imagegate_request_duration_seconds", "HTTP request latency by route",
    ["route"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
upstream_calls = Counter(
    "imagegate_upstream_calls_total", "Upstream calls by provider, channel and outcome",
    ["provider", "channel", "outcome"], registry=REGISTRY)
upstream_seconds = Histogram(
    "imagegate_upstream_duration_seconds", "Upstream call latency by provider",
    ["provider"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
connections_refused = Counter(
    "imagegate_connections_refused_total",
    "Connections answered 429 because the process held its maximum of connections",
    registry=REGISTRY)
retries_total = Counter(
    "imagegate_upstream_retries_total", "Upstream calls retried on the same channel",
    ["channel"], registry=REGISTRY)
failovers_total = Counter(
    "imagegate_upstream_failovers_total", "Requests moved on to another channel",
    ["model"], registry=REGISTRY)
queue_depth = Gauge(
    "imagegate_queue_depth", "Tasks waiting for a worker", registry=REGISTRY,
    multiprocess_mode="mostrecent")
oldest_queued_age = Gauge(
    "imagegate_queue_oldest_task_age_seconds", "Age of the oldest queued task",
    registry=REGISTRY, multiprocess_mode="mostrecent")
running_tasks = Gauge(
    "imagegate_tasks_running", "Tasks running on any node", registry=REGISTRY,
    multiprocess_mode="mostrecent")
task_seconds = Histogram(
    "imagegate_task_duration_seconds", "Task run time by model and final status",
    ["model", "status"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
callbacks_total = Counter(
    "imagegate_callback_deliveries_total", "Callback delivery attempts by outcome",
    ["outcome"], registry=REGISTRY)
credits_charged = Counter(
    "imagegate_credits_charged_total", "Credits settled by model", ["model"],
    registry=REGISTRY)


_children: dict[tuple[object, ...], Any] = {}


def child(metric: Counter | Histogram, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once: prometheus-client takes a lock and
    validates the names on every ``labels`` call (~3% of an async submission, py-spy)."""
    key = (metric, *labels)
    found = _children.get(key)
    if found is None:
        if len(_children) >= 10_000:  # label values are bounded, but never grow unbounded
            _children.clear()
        found = _children[key] = metric.labels(*labels)
    return found


def exposition() -> bytes:
    """The text a scrape gets: this process's metrics, or the whole node's."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if not directory:
        return generate_latest(REGISTRY)  # type: ignore[no-any-return]
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)  # type: ignore[no-any-return]
