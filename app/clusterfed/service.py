"""``Federation``: the one object a host creates, mounts, starts and stops.

    federation = Federation(config, store)
    app.add_middleware(FederationMiddleware, federation=federation)
    # in the lifespan:  await federation.start()  ...  await federation.aclose()

It owns the remote client, the validator (with its caches), the remote block reader, the
metrics, the follower of the purge log (``trust/purges.py``) that applies purges made by
other worker processes to this process's caches (told at once on PostgreSQL:
``storage/purge_notices.py``), and the cluster's shared rate-limit budget
(``storage/rate_buckets.py``) with its bookkeeping. What it reports of the remotes'
health is read in ``outbound/status.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import httpx
from starlette.requests import Request

from .config import ClusterConfig
from .identity import Identity, UserRecord, admin_here
from .keep.copying import LocalBlocks
from .keep.remote_blocks import RemoteBlocks
from .keep.signer import BlobSigner
from .metrics import FederationMetrics
from .outbound.circuit import STATE_VALUES
from .outbound.permissions import RemotePermissions
from .outbound.remote import RemoteClient
from .outbound.status import RemoteStatus, remote_statuses
from .storage.database import Database
from .storage.purge_notices import PurgeListener
from .storage.rate_buckets import MAINTAIN_SECONDS, SharedBudget
from .tokens import Token
from .trust.local_tokens import LocalTokenCache
from .trust.login_cluster import KnowsCredential, LoginCredentials, RuntimeOwners
from .trust.purges import PurgeFollower
from .trust.revocation import RevocationOutbox, RevocationStore, receive_notice
from .trust.store import FederationStore
from .trust.throttle import Budget, RateLimit, TooManyRequests, parse_networks
from .trust.validator import TokenValidator

log = logging.getLogger("clusterfed.federation")

# How often a worker's own gauges are written where every worker's are added up.
GAUGE_SECONDS = 1.0


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
        # The issuer's notice outbox: only a host that issues tokens has one.
        self.revocations = revocations
        self.metrics = FederationMetrics()
        self.remote = RemoteClient(config, transport=transport)
        self.validator = TokenValidator(config, store, self.remote, self.metrics)
        # The rate limits are the cluster's: with clusterfed's database every worker of
        # every host spends from the same buckets (without it, from this process's).
        self.shared_budget = SharedBudget(database) if database is not None else None
        self.validator.throttle.budget = self.shared_budget
        # The host's own tokens, for a host that resolves them through it (the example
        # server does): purged by the same log as L1.
        self.local_tokens: LocalTokenCache[object] = LocalTokenCache(
            maxsize=config.federation.token_cache_size,
            ttl=config.federation.local_token_cache_ttl,
        )
        self.permissions = RemotePermissions(config, self.remote)
        # Blocks other clusters hold, read and written for our clients (+R<X>- locators).
        self.remote_blocks = RemoteBlocks(config, self.remote)
        self.signer = BlobSigner.from_config(config)
        # The host's block store, when it has one: blocks signed here that a collection
        # saved on another cluster names are copied there from it.
        self.local_blocks: LocalBlocks | None = None
        # Revocation notices cost a database write each and anyone can send them: per
        # client address, at the cold-validation rate, from the cluster's shared budget.
        self.notice_throttle = RateLimit(
            "notice", config.federation.cold_validation_rate, budget=self.shared_budget
        )
        self.trusted_proxies = parse_networks(config.federation.trusted_proxies)
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
        # Login cluster: credentials a satellite defers to its login cluster, runtime tokens.
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
        self.purges = PurgeFollower(
            store, self.invalidate, interval=config.federation.purge_poll_interval
        )
        self._housekeeper: asyncio.Task[None] | None = None
        if self.metrics.multiprocess_dir is None:
            self.metrics.cached_entries.set_function(lambda: len(self.validator.cache))
            for cluster_id, circuit in self.remote.circuits.items():
                self.metrics.circuit_state.labels(cluster_id).set_function(
                    lambda circuit=circuit: STATE_VALUES[circuit.state]
                )

    @property
    def cluster_id(self) -> str:
        return self.config.cluster_id

    @property
    def budget(self) -> Budget | None:
        """The budget every throttle of this cluster spends from (None: each its own)."""
        return self.shared_budget

    @property
    def database(self) -> Database:
        if self._database is None:
            raise RuntimeError("this Federation was built without clusterfed's database")
        return self._database

    async def start(self) -> None:
        pg = self._database.pg if self._database is not None else None
        if pg is not None:  # PostgreSQL announces each purge: no waiting for the poll
            self.purges.announcer = PurgeListener(pg, self.purges.wake)
        await self.purges.start()
        if self.shared_budget is not None or self.metrics.multiprocess_dir is not None:
            self._housekeeper = asyncio.create_task(
                self._housekeeping(), name="clusterfed-housekeeping"
            )
        if self.outbox is not None:
            self.outbox.start()

    async def aclose(self) -> None:
        await self.purges.aclose()
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeper
            self._housekeeper = None
        if self.shared_budget is not None:
            with contextlib.suppress(Exception):  # else the others stop counting it in 15 s
                await self.shared_budget.leave()
        self.metrics.worker_stopped()
        if self.outbox is not None:
            await self.outbox.aclose()
        await self.login.aclose()
        await self.runtime_owners.aclose()
        await self.validator.aclose()
        await self.remote_blocks.aclose()
        await self.remote.aclose()

    def is_admin(self, identity: Identity) -> bool:
        """Whether the holder of this accepted foreign token is an admin here: the one
        rule (``identity.admin_here``) the admin API uses too. A host asks this, never
        ``identity.user.is_admin``, which a login cluster user's runtime token from a
        satellite carries although it must not make its holder an admin."""
        return admin_here(
            identity.user,
            identity.issuer,
            cluster_id=self.cluster_id,
            login_cluster=self.config.login_cluster,
        )

    async def identify(self, token: Token, *, client: str | None = None) -> Identity:
        """``client``: the caller's address, for the cold-validation rate limit."""
        return await self.validator.identify(token, client=client)

    async def admit_notice(self, client: str | None) -> None:
        """Spend one revocation notice of ``client`` (the sender's address), or raise
        ``TooManyRequests`` (429): anyone can send notices, and each costs a write."""
        wait = await self.notice_throttle.acquire(client or "")
        if wait:
            self.metrics.throttled.labels("notice").inc()
            if self.validator.refusals.should_log("notice", client) is not None:
                log.info("revocation notice throttled client=%s", client)
            raise TooManyRequests(
                f"too many revocation notices from this client; retry in {math.ceil(wait)}s",
                retry_after=wait,
                reason="client",
            )

    async def receive_notice(self, body: bytes) -> dict[str, str]:
        """A revocation notice from an issuer; the answer is always the same."""
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
        """Apply purges other workers logged since the last look; returns how many."""
        return await self.purges.apply_pending()

    def refresh_gauges(self) -> None:
        """Write this worker's gauges where every worker's are added up (only then: in one
        process they are read from the caches at scrape time)."""
        if self.metrics.multiprocess_dir is None:
            return
        self.metrics.cached_entries.set(len(self.validator.cache))
        for cluster_id, circuit in self.remote.circuits.items():
            self.metrics.circuit_state.labels(cluster_id).set(STATE_VALUES[circuit.state])

    async def _housekeeping(self) -> None:
        """This worker's part of the shared budget's bookkeeping (alive, the workers
        counted, full buckets pruned) and of the shared metrics."""
        next_maintain = 0.0
        while True:
            self.refresh_gauges()
            if self.shared_budget is not None and time.monotonic() >= next_maintain:
                next_maintain = time.monotonic() + MAINTAIN_SECONDS
                try:
                    await self.shared_budget.maintain()
                except Exception as exc:  # the budget falls back on its own; try again later
                    log.warning("could not keep the shared rate limits' books: %s", exc)
            await asyncio.sleep(GAUGE_SECONDS)

    def remote_status(self) -> list[RemoteStatus]:
        return remote_statuses(self.remote)
