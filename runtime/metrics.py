"""The runtime's Prometheus metrics (`GET /metrics`), one `Metrics` per app (Services.metrics) in its own registry,
so several runtimes in one process never share a series.

Domain code records through this object's plain methods (it never imports prometheus itself); what is cheaper to
read than to track (queues, jobs, nodes, model reloads) is collected at scrape time. Names follow llama-server's
`--metrics` where the two overlap (`llamacpp:*`, here with a `model` or `queue_class` label); the rest are
`tarx_*`. The metric names are listed in the README ("Metrics").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runtime.store import Database
from runtime.store import jobs as job_store
from runtime.store import nodes as node_store
from runtime.store.jobs import JobState

CONTENT_TYPE = CONTENT_TYPE_LATEST
NODE_STATES = ("online", "draining", "offline")
# Requests include streams, timed to their last event; queue waits run from seconds to minutes under load.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Engine(Protocol):
    """What a scrape reads from the inference engine (runtime/inference/engine.py), without importing it."""

    @property
    def registry(self) -> Any: ...

    def capacity(self) -> dict[str, dict[str, Any]]: ...

    def model_status(self, spec: Any) -> dict[str, Any]: ...


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tarx_http_requests", "HTTP requests answered, by API family and status code.",
                                ["family", "status"], registry=r)
        self.request_seconds = Histogram("tarx_http_request_duration_seconds",
                                         "Time to answer an HTTP request (streams: to their end), by API family.",
                                         ["family"], buckets=REQUEST_BUCKETS, registry=r)
        self.prompt_tokens = Counter("llamacpp:prompt_tokens", "Number of prompt tokens processed.", ["model"],
                                     registry=r)
        self.predicted_tokens = Counter("llamacpp:tokens_predicted", "Number of generation tokens processed.",
                                        ["model"], registry=r)
        self.queue_wait = Histogram("tarx_queue_wait_seconds",
                                    "Time a local generation waited in its model's queue before it started.",
                                    ["model", "queue_class"], buckets=QUEUE_BUCKETS, registry=r)
        self.webhook_failures = Counter("tarx_webhook_delivery_failures",
                                        "Outbound webhook delivery attempts that did not deliver (retried or not).",
                                        registry=r)

    # ---- recording (domain code and the request middleware call these) ---------------------------------------

    def request(self, family: str, status: int, seconds: float) -> None:
        self.requests.labels(family, str(status)).inc()
        self.request_seconds.labels(family).observe(seconds)

    def tokens(self, model: str, prompt: int, completion: int = 0) -> None:
        """One recorded inference call's usage (chat: both; embeddings: prompt only)."""
        self.prompt_tokens.labels(model).inc(max(prompt, 0))
        if completion:
            self.predicted_tokens.labels(model).inc(max(completion, 0))

    def queued(self, model: str, queue_class: str, queue_ms: float) -> None:
        self.queue_wait.labels(model, queue_class).observe(max(queue_ms, 0.0) / 1000)

    def webhook_failed(self) -> None:
        self.webhook_failures.inc()

    # ---- scraping ------------------------------------------------------------------------------------------

    async def scrape(self, db: Database, engine: Engine) -> bytes:
        """The text exposition: the recorded series plus the live figures read now."""
        jobs, nodes = await job_store.count_by_state(db), await node_store.count_by_state(db)
        live = _Live(list(_live_families(engine, jobs, nodes)))
        return generate_latest(_Both(self.registry, live))


# Objects built outside Services (unit tests, tools) record here, where nothing reads it.
DETACHED = Metrics()


class _Live(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


class _Both(Collector):
    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for c in self.collectors:
            yield from c.collect()


def _live_families(engine: Engine, jobs: dict[str, int], nodes: dict[str, int]) -> Iterator[Metric]:
    capacity = engine.capacity()
    processing = GaugeMetricFamily("llamacpp:requests_processing", "Number of requests processing.",
                                   labels=["queue_class"])
    deferred = GaugeMetricFamily("llamacpp:requests_deferred", "Number of requests deferred.",
                                 labels=["queue_class"])
    for cls, figures in capacity.items():
        processing.add_metric([cls], figures.get("in_flight", 0))
        deferred.add_metric([cls], figures.get("depth", 0))
    yield processing
    yield deferred

    job_states = GaugeMetricFamily("tarx_jobs", "Compute jobs in each state.", labels=["state"])
    for state in JobState:
        job_states.add_metric([state.value], jobs.get(state.value, 0))
    yield job_states
    node_states = GaugeMetricFamily("tarx_nodes", "Registered worker nodes in each state (their sum: all nodes).",
                                    labels=["state"])
    for state in NODE_STATES:
        node_states.add_metric([state], nodes.get(state, 0))
    yield node_states

    # A model's runner loads again after keep_alive_seconds idle unloaded it, or after it died (a crash, a kill:
    # counted apart, as are loads that failed). Read from each chat worker's statistics.
    restarts = CounterMetricFamily("tarx_runner_restarts",
                                   "Model worker reloads: loads of a chat model after its first.", labels=["model"])
    crashes = CounterMetricFamily("tarx_runner_crashes",
                                  "Model runners that died unexpectedly; their requests failed with a 503.",
                                  labels=["model"])
    load_failures = CounterMetricFamily("tarx_model_load_failures", "Model loads that ended in an error.",
                                        labels=["model"])
    for spec in engine.registry.all():
        stats = engine.model_status(spec).get("stats") or {}
        restarts.add_metric([spec.name], max(int(stats.get("loads", 0)) - 1, 0))
        crashes.add_metric([spec.name], int(stats.get("runner_restarts", 0)))
        load_failures.add_metric([spec.name], int(stats.get("load_failures", 0)))
    yield restarts
    yield crashes
    yield load_failures
