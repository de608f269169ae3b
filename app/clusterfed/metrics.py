"""Prometheus metrics of one federation (its own registry, so several apps can coexist)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class FederationMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.cache_lookups = Counter(
            "clusterfed_token_cache_lookups",
            "Foreign-token cache lookups by level and result",
            ["level", "result"],
            registry=self.registry,
        )
        self.validations = Counter(
            "clusterfed_validations",
            "Validations of foreign tokens at their issuer",
            ["issuer", "outcome"],
            registry=self.registry,
        )
        self.validation_seconds = Histogram(
            "clusterfed_validation_seconds",
            "Duration of a validation at the issuer",
            ["issuer"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.circuit_state = Gauge(
            "clusterfed_remote_circuit_state",
            "Circuit state per remote (0 closed, 1 half-open, 2 open)",
            ["remote"],
            registry=self.registry,
        )
        self.cached_entries = Gauge(
            "clusterfed_token_cache_entries",
            "Entries in this process's L1 token cache",
            registry=self.registry,
        )
        # Bound once: resolving labels takes a lock and a dict lookup, and the L1 path
        # runs on every request with a foreign token.
        self.l1_hit = self.cache_lookups.labels("l1", "hit")
        self.l1_miss = self.cache_lookups.labels("l1", "miss")
        self.l2_hit = self.cache_lookups.labels("l2", "hit")
        self.l2_miss = self.cache_lookups.labels("l2", "miss")
        self.purges = Counter(
            "clusterfed_token_cache_purges",
            "Purges applied to this process's L1 cache",
            ["kind"],
            registry=self.registry,
        )
        self.throttled = Counter(
            "clusterfed_validations_throttled",
            "Cold validations refused by a rate limit (429), by which limit",
            ["reason"],
            registry=self.registry,
        )
        self.notices = Counter(
            "clusterfed_revocation_notices",
            "Revocation notices by remote and event: queued, delivered, failed (an attempt)"
            ", expired (given up: the token would have expired anyway)",
            ["remote", "event"],
            registry=self.registry,
        )
        self.notices_received = Counter(
            "clusterfed_revocation_notices_received",
            "Revocation notices received, by result: applied, or ignored",
            ["result"],
            registry=self.registry,
        )
