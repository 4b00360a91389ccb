"""Prometheus metrics, one registry per app (so tests can run several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages_in = Counter(
            "hub_messages_received_total", "Inbound customer messages stored", ["channel"], registry=self.registry
        )
        self.duplicates = Counter(
            "hub_messages_duplicate_total",
            "Inbound deliveries dropped as provider retries",
            ["channel"],
            registry=self.registry,
        )
        self.messages_out = Counter(
            "hub_messages_sent_total", "Outbound messages delivered to a channel", ["channel"], registry=self.registry
        )
        self.delivery_failures = Counter(
            "hub_delivery_failures_total", "Failed delivery attempts", ["channel", "outcome"], registry=self.registry
        )
        self.webhook_deliveries = Counter(
            "hub_webhook_deliveries_total",
            "Outgoing webhook attempts by event and outcome (delivered, retry, dead)",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.outbox_depth = Gauge("hub_outbox_depth", "Outbox entries by status", ["status"], registry=self.registry)
        self.request_latency = Histogram(
            "hub_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.degraded = Gauge(
            "hub_degraded",
            "1 while a dependency is down and the hub runs on a fallback",
            ["component"],
            registry=self.registry,
        )

    def delivery_result(self, channel: str, outcome: str) -> None:
        if outcome == "delivered":
            self.messages_out.labels(channel).inc()
        else:
            self.delivery_failures.labels(channel, outcome).inc()

    def webhook_result(self, event: str, outcome: str) -> None:
        self.webhook_deliveries.labels(event, outcome).inc()
