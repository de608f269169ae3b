"""``Federation``: the one object a host creates, mounts, starts and stops.

    federation = Federation(config, store)
    app.add_middleware(FederationMiddleware, federation=federation)
    # in the lifespan:  await federation.start()  ...  await federation.aclose()

It owns the remote client, the validator (with its caches), the metrics, and the task
that applies purges made by other worker processes to this process's L1 cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import httpx
from starlette.requests import Request

from .config import ClusterConfig
from .identity import Identity, UserRecord
from .metrics import FederationMetrics
from .outbound.circuit import STATE_VALUES
from .outbound.permissions import RemotePermissions
from .outbound.remote import RemoteClient
from .storage.database import Database
from .tokens import Token
from .trust.login_cluster import KnowsCredential, LoginCredentials, RuntimeOwners
from .trust.store import FederationStore
from .trust.validator import TokenValidator

log = logging.getLogger("clusterfed.federation")

# The host's answer to "whose is this local credential?" (used by the admin API): the
# user, or None when it is not valid here; it may raise Unauthorized or Forbidden.
LocalUserLookup = Callable[[Request, str], Awaitable[UserRecord | None]]

# How far behind the purge cursor each poll looks again (see apply_pending_purges).
PURGE_LOOKBACK_IDS = 100


@dataclass(frozen=True, slots=True)
class RemoteStatus:
    cluster_id: str
    host: str
    reachable: bool | None  # None: never contacted by this process
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    circuit_state: str


class Federation:
    def __init__(
        self,
        config: ClusterConfig,
        store: FederationStore,
        *,
        database: Database | None = None,
        local_user: LocalUserLookup | None = None,
        knows_credential: KnowsCredential | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.store = store
        # clusterfed's own tables, for the admin API and the CLI (None: a host that only
        # validates tokens through a store of its own)
        self._database = database
        self.local_user = local_user
        self.metrics = FederationMetrics()
        self.remote = RemoteClient(config, transport=transport)
        self.validator = TokenValidator(config, store, self.remote, self.metrics)
        self.permissions = RemotePermissions(config, self.remote)
        # SPEC 3.8: credentials a satellite defers to its login cluster, runtime tokens.
        self.login = LoginCredentials(
            config,
            store,
            self.remote,
            self.metrics,
            self.validator,
            knows_credential=knows_credential,
        )
        self.runtime_owners = RuntimeOwners(config, store, self.remote)
        if config.login_cluster:
            self.validator.runtime_owners = self.runtime_owners
        self._purge_cursor = 0
        self._applied: set[int] = set()
        self._poller: asyncio.Task[None] | None = None
        self.metrics.cached_entries.set_function(lambda: len(self.validator.cache))
        for cluster_id, circuit in self.remote.circuits.items():
            self.metrics.circuit_state.labels(cluster_id).set_function(
                lambda circuit=circuit: STATE_VALUES[circuit.state]
            )

    @property
    def cluster_id(self) -> str:
        return self.config.cluster_id

    @property
    def database(self) -> Database:
        if self._database is None:
            raise RuntimeError("this Federation was built without clusterfed's database")
        return self._database

    async def start(self) -> None:
        # Purges logged before this process started concern an L1 it never had.
        self._purge_cursor = await self.store.latest_purge_id()
        low = max(0, self._purge_cursor - PURGE_LOOKBACK_IDS)
        self._applied = {event.id for event in await self.store.purges_after(low)}
        self._poller = asyncio.create_task(self._poll_purges(), name="clusterfed-purge-poller")

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await self.login.aclose()
        await self.runtime_owners.aclose()
        await self.validator.aclose()
        await self.remote.aclose()

    async def identify(self, token: Token) -> Identity:
        return await self.validator.identify(token)

    def invalidate(self, kind: str, value: str | None = None) -> int:
        """Drop this process's L1 entries (token, cluster, user or all)."""
        self.metrics.purges.labels(kind).inc()
        return self.validator.cache.invalidate(kind, value)

    async def apply_pending_purges(self) -> int:
        """Apply purges other workers logged since the last look; returns how many.

        On PostgreSQL a purge's id is drawn at insert but seen at commit, so purge 5 can
        appear after purge 6 has been read. Each look re-reads a window of ids behind
        the cursor and skips the ones already applied, so a late commit is not lost.
        """
        low = max(0, self._purge_cursor - PURGE_LOOKBACK_IDS)
        events = [e for e in await self.store.purges_after(low) if e.id not in self._applied]
        for event in events:
            self.invalidate(event.kind, event.value)
            self._applied.add(event.id)
            self._purge_cursor = max(self._purge_cursor, event.id)
        floor = self._purge_cursor - PURGE_LOOKBACK_IDS
        self._applied = {purge_id for purge_id in self._applied if purge_id > floor}
        return len(events)

    async def _poll_purges(self) -> None:
        interval = self.config.federation.purge_poll_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.apply_pending_purges()
            except Exception:  # a database blip must not end the poller
                log.exception("could not read the purge log; will retry")

    def remote_status(self) -> list[RemoteStatus]:
        statuses = []
        for cluster_id, remote in self.remote.clusters.items():
            circuit = self.remote.circuits[cluster_id]
            if circuit.last_success is None and circuit.last_error_at is None:
                reachable = None
            elif circuit.last_error_at is None or circuit.last_success is None:
                reachable = circuit.last_error_at is None
            else:
                reachable = circuit.last_success >= circuit.last_error_at
            statuses.append(
                RemoteStatus(
                    cluster_id=cluster_id,
                    host=remote.host,
                    reachable=reachable,
                    last_success=circuit.last_success,
                    last_error=circuit.last_error,
                    last_error_at=circuit.last_error_at,
                    circuit_state=circuit.state,
                )
            )
        return statuses
