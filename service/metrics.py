"""Prometheus metrics, in a registry of the app's own (so several apps in one process don't clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mimicry_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("mimicry_http_request_duration_seconds", "Request latency by route", ["route"],
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)
        self.batch_size = Histogram("mimicry_batch_size", "Images per onnxruntime call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.batch_seconds = Histogram("mimicry_batch_duration_seconds", "Time per onnxruntime call",
                                       buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5), registry=self.registry)
        self.queue_depth = Gauge("mimicry_queue_depth", "Images waiting for the model", registry=self.registry)
        self.images = Counter("mimicry_images", "Images answered, by outcome (a label or an error code)",
                              ["outcome"], registry=self.registry)
        self.model = Info("mimicry_model", "The loaded model", registry=self.registry)
        self.overloaded = Counter("mimicry_overloaded", "Requests refused with 503 because the queue was full",
                                  registry=self.registry)

    def observe_batch(self, n: int, seconds: float) -> None:
        self.batch_size.observe(n)
        self.batch_seconds.observe(seconds)
