"""Prometheus metrics of one server process, in a registry of its own (so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


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
        # what each version answers and whether its inputs drift (goldmine.monitoring)
        self.predictions = Counter("goldmine_predictions_total", "Answered texts by model, version and label.",
                                   ["model", "version", "label"], registry=r)
        self.out_of_scope = Counter("goldmine_out_of_scope_total", "Answers that were 'none of these', by model "
                                    "and version.", ["model", "version"], registry=r)
        self.confidence = Histogram("goldmine_prediction_confidence", "Score of the answered label, by model.",
                                    ["model"], buckets=CONFIDENCE_BUCKETS, registry=r)
        self.drift_windows = Counter("goldmine_drift_windows_total", "Windows of inputs tested for drift.",
                                     ["model", "version"], registry=r)
        self.drift_p_value = Gauge("goldmine_drift_p_value", "MMD permutation-test p-value of the last window "
                                   "against the training data (small: the inputs have drifted).",
                                   ["model", "version"], registry=r)
        self.drift_mmd = Gauge("goldmine_drift_mmd", "Squared MMD of the last window's embeddings against the "
                               "training sample.", ["model", "version"], registry=r)
        self.drift_oov_rate = Gauge("goldmine_drift_oov_rate", "Out-of-vocabulary word share of the last window "
                                    "minus the training baseline.", ["model", "version"], registry=r)
        self.drift_length_ks = Gauge("goldmine_drift_length_ks", "Kolmogorov-Smirnov statistic of the last "
                                     "window's word counts against training.", ["model", "version"], registry=r)
        self.drift_alarm = Gauge("goldmine_drift_alarm", "1 while the last window's inputs differ from the training "
                                 "data (p-value below drift.alarm_p_value), else 0.", ["model", "version"],
                                 registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
