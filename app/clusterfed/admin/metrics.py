"""A gauge of L2 token-cache rows per issuer, read from the table at scrape time.

Prometheus collectors are synchronous and the database is not, so ``/metrics`` refreshes
the counts (one ``GROUP BY`` on an indexed column) just before rendering; between
scrapes nothing is kept up to date. L2 is shared by every worker, so any worker's
answer is the cluster's.
"""

from __future__ import annotations

from collections.abc import Iterator
from weakref import WeakKeyDictionary

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from clusterfed.service import Federation

from .token_cache import count_by_cluster


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


# One collector per federation, registered on first scrape: no await between the look-up
# and the registration, so two scrapes cannot both register.
_collectors: WeakKeyDictionary[Federation, L2EntriesCollector] = WeakKeyDictionary()


async def refresh_l2_metrics(federation: Federation) -> None:
    federation.refresh_gauges()  # this worker's own, as of now
    collector = _collectors.get(federation)
    if collector is None:
        collector = _collectors[federation] = L2EntriesCollector()
        federation.metrics.scrape_registry().register(collector)
    async with federation.database.sessionmaker() as session:
        collector.counts = await count_by_cluster(session)
