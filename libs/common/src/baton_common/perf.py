"""Performance metrics of a service process, for its ``/metrics`` (Prometheus text format).

Latencies are histograms (steps per tool, store commits per consumer, relay publishes), so rates
(steps/s: the count's rate) and percentiles come from any Prometheus. Lag is sampled from the
server every few seconds (by the service runtime, ``service.sample_lag``): per durable consumer, the messages not yet delivered and those
delivered but not acked, and those redelivered; per stream, its depth; the dead letters; and
each relay's committed-but-unpublished events. prometheus-client does the bookkeeping and the
text format; the runtime's older counters are printed next to it.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

STEP_SECONDS = Histogram(
    "baton_step_duration_seconds",
    "Tool call time of one step attempt, in a worker or (pure tools) in the executor, by tool"
    " and outcome",
    ["tool", "outcome"],
    buckets=BUCKETS,
    registry=REGISTRY,
)
COMMIT_SECONDS = Histogram(
    "baton_commit_duration_seconds",
    "Store commit of one handled batch (events + inbox), by consumer",
    ["consumer"],
    buckets=BUCKETS,
    registry=REGISTRY,
)
PUBLISH_SECONDS = Histogram(
    "baton_relay_publish_duration_seconds",
    "Publishing one batch of committed events to JetStream, by relay",
    ["relay"],
    buckets=BUCKETS,
    registry=REGISTRY,
)
RPC_CALLS = Counter(
    "baton_rpc_calls",
    "Request/reply calls this process answered, by service, verb and status",
    ["service", "verb", "status"],
    registry=REGISTRY,
)
RPC_SECONDS = Histogram(
    "baton_rpc_duration_seconds",
    "Time to answer one request/reply call, by service",
    ["service"],
    buckets=BUCKETS,
    registry=REGISTRY,
)
REDELIVERIES = Counter(
    "baton_redeliveries",
    "Messages this process got more than once (a lost ack, a crash, a nack)",
    ["consumer"],
    registry=REGISTRY,
)
PENDING = Gauge(
    "baton_consumer_pending_messages",
    "Consumer lag: messages on the stream not yet delivered to the durable consumer",
    ["consumer"],
    registry=REGISTRY,
)
ACK_PENDING = Gauge(
    "baton_consumer_ack_pending_messages",
    "Messages delivered to the consumer and not yet acknowledged",
    ["consumer"],
    registry=REGISTRY,
)
REDELIVERED = Gauge(
    "baton_consumer_redelivered_messages",
    "Messages the server redelivered and still waits on, per consumer",
    ["consumer"],
    registry=REGISTRY,
)
STREAM_MESSAGES = Gauge(
    "baton_stream_messages", "Messages held by a stream", ["stream"], registry=REGISTRY
)
DEAD_LETTERS = Gauge(
    "baton_dead_letters", "Messages parked on the dead-letter stream", registry=REGISTRY
)
RELAY_LAG = Gauge(
    "baton_relay_lag_events",
    "Events committed to the store and not yet published, by relay",
    ["relay"],
    registry=REGISTRY,
)


def text() -> str:
    return generate_latest(REGISTRY).decode()
