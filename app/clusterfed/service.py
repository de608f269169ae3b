"""``Federation``: the one object a host creates, mounts, starts and stops.

    federation = Federation(config, store)
    app.add_middleware(FederationMiddleware, federation=federation)
    # in the lifespan:  await federation.start()  ...  await federation.aclose()

It owns the remote client, the validator (with its caches), the remote block reader, the
metrics, and the task that applies purges made by other worker processes to this
process's L1 cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import httpx
from starlette.requests import Request

from .config import ClusterConfig
from .identity import Identity, UserRecord
from .keep.copying import LocalBlocks
from .keep.remote_blocks import RemoteBlocks
from .keep.signer import BlobSigner
from .metrics import FederationMetrics
from .outbound.circuit import STATE_VALUES
from .outbound.permissions import RemotePermissions
from .outbound.remote import RemoteClient
from .storage.database import Database
from .tokens import Token
from .trust.local_tokens import LocalTokenCache
from .trust.login_cluster import KnowsCredential, LoginCredentials, RuntimeOwners
from .trust.revocation import RevocationOutbox, RevocationStore, receive_notice
from .trust.store import FederationStore
from .trust.validator import TokenValidator

log = logging.getLogger("clusterfed.federation")


@dataclass(frozen=True, slots=True)
class LocalLogin:
    """What a host knows of one of its own credentials: whose it is, and its token."""

    user: UserRecord
    token_uuid: str | None  # None: a credential with no token record (a SystemRootToken)
    expires_at: datetime | None
    scopes: tuple[str, ...]


class LocalCredentials(Protocol):
    """The host's answer to "whose is this local credential?", for the admin API and page.

    Local tokens are the host's business; clusterfed asks only when an operator logs in
    with one (``login``) and again on each request of the page session that login made
    (``recheck``, by the token's UUID: the session never holds the secret).
    """

    async def login(self, request: Request, credential: str) -> LocalLogin | None:
        """None when the credential is not valid here; may raise Unauthorized/Forbidden."""

    async def recheck(
        self, request: Request, token_uuid: str | None, user_uuid: str
    ) -> LocalLogin | None:
        """The same login now; None once the token is revoked, expired or gone."""


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
        local_credentials: LocalCredentials | None = None,
        knows_credential: KnowsCredential | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        revocations: RevocationStore | None = None,
    ) -> None:
        self.config = config
        self.store = store
        # clusterfed's own tables, for the admin API and the CLI (None: a host that only
        # validates tokens through a store of its own)
        self._database = database
        self.local_credentials = local_credentials
        # The issuer's notice outbox (SPEC 3.7): only a host that issues tokens has one.
        self.revocations = revocations
        self.metrics = FederationMetrics()
        self.remote = RemoteClient(config, transport=transport)
        self.validator = TokenValidator(config, store, self.remote, self.metrics)
        # The host's own tokens, for a host that resolves them through it (the example
        # server does): purged by the same log as L1.
        self.local_tokens: LocalTokenCache[object] = LocalTokenCache(
            maxsize=config.federation.token_cache_size,
            ttl=config.federation.local_token_cache_ttl,
        )
        self.permissions = RemotePermissions(config, self.remote)
        # Blocks other clusters hold, read and written for our clients (+R<X>- locators).
        self.remote_blocks = RemoteBlocks(config, self.remote, transport=transport)
        self.signer = BlobSigner.from_config(config)
        # The host's block store, when it has one: blocks signed here that a collection
        # saved on another cluster names are copied there from it.
        self.local_blocks: LocalBlocks | None = None
        # A notice's lease outlasts one delivery attempt, retries included.
        self.outbox = (
            RevocationOutbox(
                revocations,
                self.remote,
                self.metrics,
                lease_seconds=config.federation.remote_timeout + 5,
            )
            if revocations is not None
            else None
        )
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
        if self.outbox is not None:
            self.outbox.start()

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self.outbox is not None:
            await self.outbox.aclose()
        await self.login.aclose()
        await self.runtime_owners.aclose()
        await self.validator.aclose()
        await self.remote_blocks.aclose()
        await self.remote.aclose()

    async def identify(self, token: Token, *, client: str | None = None) -> Identity:
        """``client``: the caller's address, for the cold-validation rate limit."""
        return await self.validator.identify(token, client=client)

    async def receive_notice(self, body: bytes) -> dict[str, str]:
        """A revocation notice from an issuer (SPEC 3.7); the answer is always the same."""
        return await receive_notice(
            body,
            local_id=self.cluster_id,
            digest=self.validator.secret_digest,
            store=self.store,
            invalidate=self.invalidate,
            metrics=self.metrics,
        )

    async def forget_token(self, token_uuid: str) -> None:
        """Its issuer said this token is revoked: out of L2, and of L1 in every worker."""
        await self.store.forget_token(token_uuid, digest=None)
        self.invalidate("token", token_uuid)

    def invalidate(self, kind: str, value: str | None = None) -> int:
        """Drop this process's L1 entries (token, cluster, user or all), and the local
        token cache's (token, user or all); returns how many L1 entries went."""
        self.metrics.purges.labels(kind).inc()
        self.local_tokens.invalidate(kind, value)
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
