"""Revocation that reaches every cluster: the notice outbox and its receiver.

On the issuer, revoking a token queues one notice per cluster that validated it. The
:class:`RevocationOutbox` of every worker sends the due ones: ``POST
/federation/v1/revocations`` ``{"token_uuid", "proof"}``, where ``proof`` is the token's
secret salted for the receiver. A failed attempt is retried with backoff (the first
within a second, then at most every 30 s) until delivered or until the token would have
expired anyway. A worker claims a notice for a lease before sending it, so two workers
never send the same notice at once.

On the receiver, :func:`receive_notice` digests the proof as the L2 cache does (its
digest is of the secret salted for this cluster) and, when it matches, deletes the L2
row and logs a purge for every worker; anything else changes nothing. Either way the
answer is the same 202.

A ``DELETE /arvados/v1/api_client_authorizations/<uuid>`` for another cluster's token
is sent to that cluster by :func:`route_revocation`, with the token as presented when
that cluster issued it; on success the token leaves this cluster's cache at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from clusterfed.config import RemoteCluster
from clusterfed.errors import FederationError, RemoteError
from clusterfed.tokens import (
    SALTED_SECRET_LENGTH,
    TOKEN_TYPE,
    Token,
    is_uuid,
    salted_secret,
    uuid_cluster,
)

from .store import FederationStore

if TYPE_CHECKING:  # the HTTP client and metrics are handed in; `tokens revoke` needs neither
    from clusterfed.metrics import FederationMetrics
    from clusterfed.outbound.remote import RemoteClient, RemoteResponse

log = logging.getLogger("clusterfed.revocation")

NOTICE_PATH = "/federation/v1/revocations"
TOKEN_RECORDS = "/arvados/v1/api_client_authorizations/"
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 30.0
POLL_SECONDS = 0.5
# A remote that validated a token this recently before its revocation may still have that
# validation in flight (answered, not yet cached) when the notice arrives, and would then
# cache a revoked token: it gets the notice a second time, ECHO_SECONDS after the first.
ECHO_WINDOW = timedelta(seconds=60)
ECHO_SECONDS = 1.0
# Finished notices stay this long for the operator to see; then they, and what the issuer
# remembers about tokens that expired that long ago, are pruned (every PRUNE_SECONDS).
RETENTION = timedelta(days=7)
PRUNE_SECONDS = 600.0
# Statuses that say "this cluster does not take notices" (an Arvados cluster, say):
# retrying cannot help, and the token leaves its cache at its next refresh.
UNSUPPORTED = frozenset({404, 405, 501})
RECEIVED = {"kind": "clusterfed#revocationNotice", "status": "received"}
HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Notice:
    id: int
    token_uuid: str
    remote: str
    attempts: int
    give_up_at: datetime | None
    # Send once more ECHO_SECONDS after delivery: the remote validated the token just
    # before the revocation, and may save that validation after the first notice arrived.
    echo: bool = False


class RevocationStore(Protocol):
    """What an issuer's notice outbox needs of the host's storage: the outbox rows and the
    secrets of its own tokens (the example server: ``server.users.revocation_store``)."""

    async def claim_notices(self, *, now: datetime, lease_until: datetime) -> list[Notice]:
        """Due, undelivered notices no other worker holds, now held until ``lease_until``."""

    async def token_secret(self, token_uuid: str) -> str | None:
        """The secret of a token issued here (revoked or not); None when it is gone."""

    async def notice_delivered(self, notice_id: int, *, again_at: datetime | None) -> None:
        """Finished, or (``again_at``) to be sent once more then, without an echo."""

    async def notice_failed(
        self, notice_id: int, *, attempts: int, retry_at: datetime, error: str
    ) -> None: ...

    async def notice_abandoned(self, notice_id: int, *, outcome: str, reason: str) -> None:
        """Stop sending it; ``outcome`` is ``expired`` (the token would have expired
        anyway) or ``abandoned`` (unknown remote, token gone, notices unsupported)."""

    async def prune(self, *, before: datetime) -> int:
        """Drop notices finished before ``before``, and the validators of tokens that
        expired (or were revoked) before then; returns how many rows went."""


def retry_delay(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: 0.25-0.5 s, doubling, at most 30 s."""
    ceiling = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


class RevocationOutbox:
    """Sends due notices; one per worker, woken at once when a revocation is made here."""

    def __init__(
        self,
        store: RevocationStore,
        remote: RemoteClient,
        metrics: FederationMetrics,
        *,
        lease_seconds: float,
    ) -> None:
        self.store = store
        self.remote = remote
        self.metrics = metrics
        self.lease = timedelta(seconds=lease_seconds)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="clusterfed-revocation-outbox")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    def queued(self, remotes: list[str]) -> None:
        for remote in remotes:
            self.metrics.notices.labels(remote, "queued").inc()
        self.wake()

    async def _run(self) -> None:
        # Never pruned yet: prune on the first pass. (0.0 would wait until monotonic(),
        # whose origin is undefined, passes PRUNE_SECONDS: on Linux, 10 min after boot.)
        pruned_at = -math.inf
        while True:
            try:
                await self.send_due()
                if time.monotonic() - pruned_at >= PRUNE_SECONDS:
                    pruned_at = time.monotonic()
                    await self.store.prune(before=datetime.now(UTC) - RETENTION)
            except Exception:  # a database blip must not end the outbox
                log.exception("could not read the revocation outbox; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()

    async def send_due(self) -> int:
        """Send every due notice this worker can claim; returns how many it tried."""
        now = datetime.now(UTC)
        notices = await self.store.claim_notices(now=now, lease_until=now + self.lease)
        await asyncio.gather(*(self._send(notice) for notice in notices))
        return len(notices)

    async def _send(self, notice: Notice) -> None:
        remote = notice.remote
        if notice.give_up_at is not None and datetime.now(UTC) >= notice.give_up_at:
            await self._abandon(notice, "expired", "the token would have expired by now")
            return
        if remote not in self.remote.clusters:
            await self._abandon(notice, "abandoned", "no longer in RemoteClusters")
            return
        secret = await self.store.token_secret(notice.token_uuid)
        if secret is None:
            await self._abandon(notice, "abandoned", "the token no longer exists")
            return
        body = {"token_uuid": notice.token_uuid, "proof": salted_secret(secret, remote)}
        try:
            answer = await self.remote.request(
                remote, "POST", NOTICE_PATH, token=None, json_body=body
            )
            status = answer.status_code
        except RemoteError as exc:
            await self._failed(notice, exc.message)
            return
        if 200 <= status < 300:
            again_at = datetime.now(UTC) + timedelta(seconds=ECHO_SECONDS) if notice.echo else None
            await self.store.notice_delivered(notice.id, again_at=again_at)
            self.metrics.notices.labels(remote, "delivered").inc()
            log.info("revocation notice token=%s remote=%s delivered", notice.token_uuid, remote)
        elif status in UNSUPPORTED:
            await self._abandon(notice, "abandoned", f"remote answered {status}: no notices")
        else:
            await self._failed(notice, f"remote answered {status}")

    async def _failed(self, notice: Notice, error: str) -> None:
        attempts = notice.attempts + 1
        delay = retry_delay(attempts)
        retry_at = datetime.now(UTC) + timedelta(seconds=delay)
        await self.store.notice_failed(notice.id, attempts=attempts, retry_at=retry_at, error=error)
        self.metrics.notices.labels(notice.remote, "failed").inc()
        log.info(
            "revocation notice token=%s remote=%s attempt=%d failed: %s; retry in %.1fs",
            notice.token_uuid,
            notice.remote,
            attempts,
            error,
            delay,
        )

    async def _abandon(self, notice: Notice, event: str, reason: str) -> None:
        await self.store.notice_abandoned(notice.id, outcome=event, reason=reason)
        self.metrics.notices.labels(notice.remote, event).inc()
        log.info(
            "revocation notice token=%s remote=%s given up: %s",
            notice.token_uuid,
            notice.remote,
            reason,
        )


def parse_notice(body: bytes) -> tuple[str, str] | None:
    """(token UUID, proof) from a notice body, or None for anything malformed."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    uuid, proof = document.get("token_uuid"), document.get("proof")
    if not is_uuid(uuid, type_=TOKEN_TYPE) or not isinstance(proof, str):
        return None
    if len(proof) != SALTED_SECRET_LENGTH or not set(proof) <= HEX:
        return None
    return uuid, proof


async def receive_notice(
    body: bytes,
    *,
    local_id: str,
    digest: Callable[[str], str],
    store: FederationStore,
    invalidate: Callable[[str, str], Any],
    metrics: FederationMetrics,
) -> dict[str, str]:
    """Apply a notice when its proof matches what is cached; the answer never says which."""
    parsed = parse_notice(body)
    applied = False
    if parsed is not None and uuid_cluster(parsed[0]) != local_id:
        uuid, proof = parsed
        applied = await store.forget_token(uuid, digest=digest(proof))
        if applied:
            invalidate("token", uuid)
            log.info("revocation notice token=%s applied: purged from the cache", uuid)
    metrics.notices_received.labels("applied" if applied else "ignored").inc()
    return RECEIVED


def revocation_target(method: str, path: str) -> str | None:
    """The token UUID of ``DELETE /arvados/v1/api_client_authorizations/<uuid>``."""
    if method != "DELETE" or not path.startswith(TOKEN_RECORDS):
        return None
    uuid = path[len(TOKEN_RECORDS) :]
    return uuid if is_uuid(uuid, type_=TOKEN_TYPE) else None


async def route_revocation(
    *,
    uuid: str,
    presented: Token | None,
    salted_for_issuer: Callable[[], Token | None],
    remote: RemoteClient,
    clusters: Mapping[str, RemoteCluster],
    forget: Callable[[str], Awaitable[None]],
    path: str,
) -> RemoteResponse:
    """Revoke another cluster's token at its issuer; the issuer's answer.

    The issuer gets the token as presented when it issued it (salting for the issuer
    changes nothing, and a token salted for us is still the issuer's to revoke); any
    other cluster's token goes salted for the issuer, as every forwarded request does.
    """
    issuer = uuid_cluster(uuid)
    if issuer not in clusters:
        raise FederationError(
            f"{uuid} was issued by cluster {issuer}, which is not a remote of this one",
            status_code=404,
        )
    token = presented if presented is not None and presented.issuer == issuer else None
    if token is None:
        token = salted_for_issuer()
    answer = await remote.request(issuer, "DELETE", path, token=token)
    if 200 <= answer.status_code < 300:
        await forget(uuid)
    return answer
