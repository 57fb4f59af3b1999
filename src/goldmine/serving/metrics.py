"""Prometheus metrics of one server process, in a registry of its own (so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Requests by model and status, latency, batch sizes, queue depth, tokens processed, usage-write failures."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("goldmine_requests_total", "HTTP requests by model ('-' for none) and status.",
                                ["model", "status"], registry=r)
        self.latency = Histogram("goldmine_request_latency_seconds", "Request latency by model.", ["model"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("goldmine_batch_size", "Texts per forward pass by model.", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("goldmine_batch_seconds", "Time per forward pass by model.", ["model"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("goldmine_queue_depth", "Texts waiting for a batch, by model.", ["model"],
                                 registry=r)
        self.tokens = Counter("goldmine_input_tokens_total", "Input tokens of billed calls, by model.", ["model"],
                              registry=r)
        self.usage_write_failures = Counter("goldmine_usage_write_failures_total",
                                            "Usage records that could not be committed (the call got 503).",
                                            registry=r)
        self.feedback_rollbacks = Counter("goldmine_feedback_rollbacks_total", "Automatic rollbacks of a model's "
                                          "alias after its live accuracy from feedback fell (an alert).", ["model"],
                                          registry=r)
        self.loaded_versions = Gauge("goldmine_loaded_versions", "Model versions in memory.", registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
