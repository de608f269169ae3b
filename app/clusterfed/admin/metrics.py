"""A gauge of L2 token-cache rows per issuer, read from the table at scrape time.

Prometheus collectors are synchronous and the database is not, so ``/metrics`` refreshes
the counts (one ``GROUP BY`` on an indexed column) just before rendering; between
scrapes nothing is kept up to date. L2 is shared by every worker, so any worker's
answer is the cluster's.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .services.token_cache import count_by_cluster

STATE_KEY = "l2_entries_collector"


class L2EntriesCollector(Collector):
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "clusterfed_token_cache_l2_entries",
            "Rows in the shared L2 token cache, by issuer",
            labels=["issuer"],
        )
        for issuer, count in sorted(self.counts.items()):
            gauge.add_metric([issuer], count)
        yield gauge


async def refresh_l2_metrics(app: FastAPI) -> None:
    collector: L2EntriesCollector | None = getattr(app.state, STATE_KEY, None)
    if collector is None:
        # No await between the check and the registration: two scrapes cannot both register.
        collector = L2EntriesCollector()
        app.state.metrics_registry.register(collector)
        setattr(app.state, STATE_KEY, collector)
    async with app.state.database.sessionmaker() as session:
        collector.counts = await count_by_cluster(session)
