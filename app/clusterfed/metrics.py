"""Prometheus metrics of one federation (its own registry, so several apps can coexist).

A server of several worker processes counts as one: with ``PROMETHEUS_MULTIPROC_DIR`` set
before the workers start (``clusterfed serve --workers N`` sets it up:
:func:`prepare_multiprocess_dir`), every worker writes its counters and histograms to
files there, and a scrape, whichever worker answers it, adds up every worker's files
(Prometheus client's multiprocess mode). The gauges that describe one worker (its L1
entries, its view of each remote's circuit) carry that worker's ``pid`` label.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The directory every worker counts into, when this process counts into one."""
    if values.ValueClass is values.MutexValue:  # decided when prometheus_client was imported
        return None
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir() -> str:
    """For a server about to start its worker processes: ``PROMETHEUS_MULTIPROC_DIR`` (the
    operator's, else a new temporary directory, removed at exit), emptied of what an
    earlier run left, set in the environment the workers inherit."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        for stale in Path(path).glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        path = tempfile.mkdtemp(prefix="clusterfed-metrics-")
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        os.environ[MULTIPROC_ENV] = path
    return path


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class FederationMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # Counting into files every worker shares (see the module's docstring)?
        self.multiprocess_dir = multiprocess_dir()
        self._scrape: CollectorRegistry | None = None
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
            "Circuit state per remote (0 closed, 1 half-open, 2 open), as each worker sees it",
            ["remote"],
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.cached_entries = Gauge(
            "clusterfed_token_cache_entries",
            "Entries in each worker's L1 token cache",
            registry=self.registry,
            multiprocess_mode="liveall",
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

    def scrape_registry(self) -> CollectorRegistry:
        """What ``/metrics`` renders: this registry, or, counting into a shared directory,
        every worker's files added up."""
        if self.multiprocess_dir is None:
            return self.registry
        if self._scrape is None:
            self._scrape = CollectorRegistry()
            MultiProcessCollector(self._scrape, path=self.multiprocess_dir)
        return self._scrape

    def worker_stopped(self) -> None:
        """This worker is going: its per-worker gauges leave the shared directory."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)
