"""Turning a foreign token into an Identity (docs/protocol.md#accepting-a-foreign-token).

Order of the checks, cheapest first: issuer allowed (no network) -> L1 -> negative
cache -> (one flight per token) L2 -> the issuer. The status mapping of a validation lives
in ``judge_token_answer`` and ``user_from_issuer``, and nowhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from clusterfed.config import ClusterConfig
from clusterfed.errors import FederationError, RemoteError, Unauthorized
from clusterfed.flights import Flights
from clusterfed.identity import Identity, RemoteUser, UserRecord
from clusterfed.jsonbody import check_text
from clusterfed.metrics import FederationMetrics
from clusterfed.outbound.remote import RemoteClient, RemoteResponse
from clusterfed.outbound.statuses import IssuerRejected, token_call_error, user_call_error
from clusterfed.tokens import (
    TOKEN_TYPE,
    USER_TYPE,
    Token,
    anonymous_user_uuid,
    is_uuid,
    salted_secret,
    secrets_equal,
)

from .cache import L1Entry, TokenCache
from .mirroring import MirrorPolicy
from .store import CachedToken, FederationStore
from .throttle import RefusalLog, TooManyRequests, ValidationThrottle

log = logging.getLogger("clusterfed.validation")


class RuntimeOwnerCheck(Protocol):
    """Who may vouch for whose users besides their own (``login_cluster.RuntimeOwners``,
    which depends on this module, not the other way round)."""

    def owner_cluster(self, issuer: str) -> str | None: ...

    async def owner(self, issuer: str, owner_uuid: str) -> UserRecord: ...


TOKEN_PATH = "/arvados/v1/api_client_authorizations/current"
USER_PATH = "/arvados/v1/users/current"
# last_used_at is bookkeeping for operators; writing it on every cache hit would put a
# database write on the hot path, so it is written at most once a minute per token.
TOUCH_INTERVAL_SECONDS = 60.0
# ... and the touches of one second go in one transaction: with 12,000 active tokens one
# write per token per minute was 200 transactions a second (SQLite: each a commit).
TOUCH_BATCH_SECONDS = 1.0
# Validations in flight to one issuer at a time; the others wait their turn. More gain
# nothing (the issuer answers no faster) and cost the most: the pooled client scans every
# open connection to the issuer on each request and each answer (httpcore), so 32
# validations at once spent a third of the worker in that scan.
ISSUER_CONCURRENCY = 8


class TokenValidator:
    def __init__(
        self,
        config: ClusterConfig,
        store: FederationStore,
        remote: RemoteClient,
        metrics: FederationMetrics,
    ) -> None:
        self.config = config
        self.local_id = config.cluster_id
        self.store = store
        self.remote = remote
        self.metrics = metrics
        settings = config.federation
        self.refresh = timedelta(seconds=config.remote_token_refresh)
        self.stale_if_error = settings.stale_if_error
        self.cache = TokenCache(
            maxsize=settings.token_cache_size,
            ttl=config.remote_token_refresh + settings.stale_if_error,
            negative_ttl=settings.negative_cache_ttl,
        )
        # The L2 digest key must be the same in every worker and across restarts, so it
        # derives from configuration. Secrets are 50 random characters: the key guards
        # against offline guessing only as a second line.
        self._digest_key = l2_digest_key(self.local_id, config.system_root_token)
        if not config.system_root_token and config.remote_clusters:
            log.warning(
                "SystemRootToken is not set: the token-cache digests are keyed by the "
                "cluster ID alone; set it so they are keyed by a secret"
            )
        self.throttle = ValidationThrottle(
            client_rate=settings.cold_validation_rate, issuer_rate=settings.issuer_validation_rate
        )
        self.refusals = RefusalLog()
        self._flights: Flights[bytes, Identity] = Flights()
        self._issuer_slots: dict[str, asyncio.Semaphore] = {}
        self._touched: dict[str, datetime] = {}
        self._background: set[asyncio.Task[Any]] = set()
        # Runtime tokens (a token whose owner is a login-cluster user, issued by
        # another cluster of the federation): set by Federation when LoginCluster is set.
        self.runtime_owners: RuntimeOwnerCheck | None = None

    # -- the entry point -------------------------------------------------------------

    def issuer_allowed(self, issuer: str) -> bool:
        return issuer in self.remote.clusters

    async def identify(self, token: Token, *, client: str | None = None) -> Identity:
        """The identity for a foreign v2 token, or a FederationError to answer with.

        ``client`` is the caller's address, for the cold-validation rate limit.
        """
        issuer = token.issuer
        assert issuer is not None and issuer != self.local_id
        if not self.issuer_allowed(issuer):
            if issuer == self.config.login_cluster:
                raise Unauthorized(f"login cluster {issuer} has no RemoteClusters entry")
            raise Unauthorized(f"tokens issued by cluster {issuer} are not accepted here")
        key = self.cache.key(issuer, token.encode())
        now = time.time()
        entry = self.cache.get(key)
        if entry is not None and entry.fresh(now):
            self.metrics.l1_hit.inc()
            if now - entry.touched_at >= TOUCH_INTERVAL_SECONDS:
                entry.touched_at = now
                self.touch(entry.identity.token_uuid, datetime.fromtimestamp(now, UTC))
            return entry.identity
        self.metrics.l1_miss.inc()
        rejection = self.cache.rejection(key)
        if rejection is not None:
            raise Unauthorized(rejection)
        # One flight per token, whichever form it came in: the raw and the salted
        # presentation share one L2 entry and so one validation.
        salted = self.salted_for_us(token)
        flight_key = self.cache.key(issuer, f"v2/{token.uuid}/{salted}")
        return await self._flights.join(
            flight_key, lambda: self._validate(token, key, entry, salted, client)
        )

    # -- one flight ------------------------------------------------------------------

    async def admit_cold(self, client: str | None, issuer: str, token_uuid: str) -> None:
        """A validation no cache could answer is rate-limited per client address and per
        issuer, on the cluster's shared budget when there is one; over a limit, 429 and
        the issuer is not asked."""
        try:
            await self.throttle.acquire(client, issuer)
        except TooManyRequests as exc:
            self.metrics.throttled.labels(exc.reason).inc()
            left_out = self.refusals.should_log(exc.reason, client)
            if left_out is not None:
                log.info(
                    "validation token=%s issuer=%s outcome=throttled reason=%s client=%s"
                    " (and %d refusals like it not logged before this one)",
                    token_uuid,
                    issuer,
                    exc.reason,
                    client,
                    left_out,
                )
            raise

    async def _validate(
        self, token: Token, key: bytes, stale: L1Entry | None, salted: str, client: str | None
    ) -> Identity:
        assert token.uuid is not None and token.issuer is not None
        now = datetime.now(UTC)
        digest = self.secret_digest(salted)
        cached = await self.store.load_token(token.uuid)
        # A known UUID with another secret is never served from cache.
        same_secret = cached is not None and secrets_equal(cached.secret_digest, digest)
        if cached is not None and same_secret and cached.is_fresh(now):
            user = cached.user or await self.store.get_user(cached.user_uuid)
            if user is not None:
                self.metrics.l2_hit.inc()
                identity = Identity(
                    user, cached.token_uuid, cached.scopes, cached.cluster_id, cached.expires_at
                )
                self.cache.put(key, L1Entry(identity, cached.refreshes_at, now.timestamp()))
                return identity
        self.metrics.l2_miss.inc()
        if stale is None and cached is not None and same_secret:
            stale = await self._stale_from_l2(cached)
        if not self.remote.refuses_now(token.issuer):
            # The limit protects the issuer from calls: with its circuit open no call
            # goes out, and the refusal below (502, or the stale identity) needs no token
            # of the budget, nor the round trip to the shared one.
            await self.admit_cold(client, token.issuer, token.uuid)

        started = time.monotonic()
        outcome = "error"
        try:
            async with self._issuer_slot(token.issuer):
                identity, refreshes_at = await self._ask_issuer(token, digest)
            outcome = "accepted"
        except IssuerRejected as exc:
            outcome = "rejected"
            self.cache.reject(key, exc.message)
            raise
        except (RemoteError, FederationError) as exc:
            outcome = "unreachable" if isinstance(exc, RemoteError) else "invalid"
            usable = stale is not None and stale.usable_stale(
                datetime.now(UTC), self.stale_if_error
            )
            if usable and exc.status_code >= 500:
                outcome = "stale"
                log.warning(
                    "validation token=%s issuer=%s outcome=stale reason=%r",
                    token.uuid,
                    token.issuer,
                    exc.message,
                )
                assert stale is not None
                return stale.identity
            raise
        finally:
            elapsed = time.monotonic() - started
            self.metrics.validations.labels(token.issuer, outcome).inc()
            self.metrics.validation_seconds.labels(token.issuer).observe(elapsed)
            log.info(
                "validation token=%s issuer=%s outcome=%s duration_ms=%.1f",
                token.uuid,
                token.issuer,
                outcome,
                elapsed * 1000,
            )
        self.cache.put(key, L1Entry(identity, refreshes_at, time.time()))
        return identity

    def touch(self, token_uuid: str, used_at: datetime) -> None:
        """Note a use for L2's last_used_at; the notes go in one write a second later."""
        first = not self._touched
        self._touched[token_uuid] = used_at
        if first:
            self._in_background(self._write_touches())

    async def _write_touches(self) -> None:
        await asyncio.sleep(TOUCH_BATCH_SECONDS)
        touched, self._touched = self._touched, {}
        try:
            await self.store.touch_tokens(touched)
        except Exception:  # bookkeeping only: a database blip must not surface anywhere
            log.warning("could not record last_used_at of %d cached tokens", len(touched))

    def _issuer_slot(self, issuer: str) -> asyncio.Semaphore:
        slot = self._issuer_slots.get(issuer)
        if slot is None:
            slot = self._issuer_slots[issuer] = asyncio.Semaphore(ISSUER_CONCURRENCY)
        return slot

    async def _stale_from_l2(self, cached: CachedToken) -> L1Entry | None:
        user = cached.user or await self.store.get_user(cached.user_uuid)
        if user is None:
            return None
        identity = Identity(
            user, cached.token_uuid, cached.scopes, cached.cluster_id, cached.expires_at
        )
        return L1Entry(identity, cached.refreshes_at, cached.last_used_at.timestamp())

    async def _ask_issuer(self, token: Token, digest: str) -> tuple[Identity, datetime]:
        issuer = token.issuer
        assert issuer is not None and token.uuid is not None
        # The token goes to its issuer as presented. The issuer accepts
        # its own secret and the one salted for us alike, and it issued both.
        outgoing = token
        params = {"remote": self.local_id}
        answer = await self.remote.request(issuer, "GET", TOKEN_PATH, token=outgoing, params=params)
        runtime = self.runtime_owners
        owner_cluster = runtime.owner_cluster(issuer) if runtime is not None else None
        record = judge_token_answer(answer, token, owner_cluster=owner_cluster)
        entry = vouched_entry(record, cluster_id=issuer, digest=digest, refresh=self.refresh)
        if runtime is not None and record["owner_uuid"][:5] != issuer:
            user, saved = await runtime.owner(issuer, record["owner_uuid"]), False
        else:
            user, saved = await self.user_from_issuer(
                issuer, outgoing, record["owner_uuid"], entry=entry
            )
        if not saved:
            await self.store.save_token(replace(entry, user_uuid=user.uuid))
        identity = Identity(user, token.uuid, entry.scopes, issuer, entry.expires_at)
        return identity, entry.refreshes_at

    async def user_from_issuer(
        self, issuer: str, outgoing: Token, owner_uuid: str, *, entry: CachedToken | None = None
    ) -> tuple[UserRecord, bool]:
        """The token's user, and whether ``entry`` (when given) was saved with the mirror
        (the usual case: one transaction for both)."""
        try:
            answer = await self.remote.request(
                issuer, "GET", USER_PATH, token=outgoing, params={"remote": self.local_id}
            )
            failure = user_call_error(issuer, answer.status_code)
            if failure is None and answer.status_code != 200:
                # A 204 or a redirect is no answer to "who is this?", and relaying such
                # a status would tell the client it succeeded.
                raise Unauthorized(f"issuer {issuer} did not answer with a user record")
        except RemoteError as exc:
            failure = exc
        if failure is not None:
            # A failed user call falls back on the mirror we already have.
            mirror = await self.store.get_user(owner_uuid)
            if mirror is None:
                raise failure
            return mirror, False
        remote_user = _parse_remote_user(answer, issuer, owner_uuid)
        if remote_user.uuid == anonymous_user_uuid(issuer):
            local_anonymous = await self.store.get_user(anonymous_user_uuid(self.local_id))
            if local_anonymous is None:
                raise Unauthorized("this cluster has no anonymous user to map the remote one to")
            return local_anonymous, False
        user = await self.store.mirror_user(remote_user, self._policy(issuer), token=entry)
        return user, entry is not None

    def _policy(self, issuer: str) -> MirrorPolicy:
        remote = self.remote.clusters.get(issuer)
        return MirrorPolicy(
            login=issuer == self.config.login_cluster,
            trusted=bool(remote and remote.activate_users) or self.config.new_users_are_active,
            autosetup=self.config.auto_setup_new_users,
        )

    def salted_for_us(self, token: Token) -> str:
        """The token's secret as salted for this cluster (a salted one is taken as is)."""
        return token.secret if token.is_salted else salted_secret(token.secret, self.local_id)

    def secret_digest(self, salted: str) -> str:
        """The L2 digest of a secret salted for this cluster (revocation: a
        notice's proof is exactly that secret, so the receiver can match it)."""
        return hmac.new(self._digest_key, salted.encode(), hashlib.sha256).hexdigest()

    def _in_background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        # Stopped, not only told to stop: a touch write still unwinding after this
        # returns would hand its connection back to a pool disposed in the meantime.
        background = list(self._background)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self._flights.aclose()
        self._background.clear()


def l2_digest_key(cluster_id: str, system_root_token: str) -> bytes:
    """The key of the L2 secret digests: the same in every worker and across restarts."""
    return hashlib.sha256(f"clusterfed-l2\0{cluster_id}\0{system_root_token}".encode()).digest()


def vouched_entry(
    record: dict[str, Any], *, cluster_id: str, digest: str, refresh: timedelta
) -> CachedToken:
    """The cache row for a token ``cluster_id`` has just vouched for (``record`` as
    :func:`judge_token_answer` returns it): asked again after ``refresh``, and never used
    past its expiry. IssuerRejected when the issuer's own record says it has expired."""
    now = datetime.now(UTC)
    expires_at = record["expires_at"]
    if expires_at is not None and expires_at <= now:
        raise IssuerRejected("token has expired at its issuer")
    refreshes_at = now + refresh if expires_at is None else min(now + refresh, expires_at)
    return CachedToken(
        token_uuid=record["uuid"],
        user_uuid=record["owner_uuid"],
        cluster_id=cluster_id,
        secret_digest=digest,
        scopes=record["scopes"],
        expires_at=expires_at,
        refreshes_at=refreshes_at,
        validated_at=now,
        last_used_at=now,
    )


def judge_token_answer(
    answer: RemoteResponse,
    token: Token,
    *,
    issuer: str | None = None,
    owner_cluster: str | None = None,
) -> dict[str, Any]:
    """The status mapping for the token call: the checked record, or the error to answer.

    ``issuer`` is given for a credential that is not a v2 token (login cluster: the
    cluster's answer names the token UUID). ``owner_cluster`` is the one other cluster
    whose users the issuer may vouch for (runtime tokens), checked further by
    :class:`RuntimeOwners`.
    """
    issuer = issuer or token.issuer
    failure = token_call_error(issuer, answer.status_code)
    if failure is not None:
        raise failure
    body = answer.json_object() if answer.status_code == 200 else None
    if body is None:
        raise Unauthorized(f"issuer {issuer} did not answer with a token record")
    uuid, owner_uuid = body.get("uuid"), body.get("owner_uuid")
    if (
        not is_uuid(uuid, type_=TOKEN_TYPE)
        or uuid[:5] != issuer
        or (token.uuid is not None and uuid != token.uuid)
    ):
        raise Unauthorized(f"issuer {issuer} answered for a different or malformed token UUID")
    if not is_uuid(owner_uuid, type_=USER_TYPE) or owner_uuid[:5] not in (issuer, owner_cluster):
        raise Unauthorized(f"issuer {issuer} vouched for a user that is not its own")
    scopes = body.get("scopes", ["all"])
    if scopes is None:
        scopes = ["all"]
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise Unauthorized(f"issuer {issuer} answered with malformed scopes")
    for scope in scopes:
        _storable(scope, "scopes", issuer)
    return {
        "uuid": uuid,
        "owner_uuid": owner_uuid,
        "scopes": tuple(scopes),
        "expires_at": _parse_time(body.get("expires_at"), issuer),
    }


def _parse_remote_user(answer: RemoteResponse, issuer: str, owner_uuid: str) -> RemoteUser:
    body = answer.json_object()
    if body is None:
        raise Unauthorized(f"issuer {issuer} did not answer with a user record")
    uuid = body.get("uuid")
    if not is_uuid(uuid, type_=USER_TYPE) or uuid[:5] != issuer:
        raise Unauthorized(f"issuer {issuer} vouched for a user that is not its own")
    if uuid != owner_uuid:
        raise Unauthorized(f"issuer {issuer} answered with a user that does not own the token")
    return user_from_record(body, uuid, issuer)


def user_from_record(record: dict[str, Any], uuid: str, issuer: str) -> RemoteUser:
    """A peer's user record as the mirror rules read it: names and flags of the right
    type, or missing; text no store can hold makes the record invalid (Unauthorized)."""

    def text(name: str) -> str | None:
        value = record.get(name)
        return _storable(value, name, issuer) if isinstance(value, str) else None

    def flag(name: str) -> bool | None:
        value = record.get(name)
        return value if isinstance(value, bool) else None

    return RemoteUser(
        uuid=uuid,
        email=text("email"),
        username=text("username"),
        first_name=text("first_name"),
        last_name=text("last_name"),
        is_admin=flag("is_admin"),
        is_active=flag("is_active"),
        is_invited=flag("is_invited"),
    )


def _parse_time(value: object, issuer: str) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise Unauthorized(f"issuer {issuer} answered with a malformed expires_at")
    try:
        parsed = datetime.fromisoformat(
            _storable(value, "expires_at", issuer).replace("Z", "+00:00")
        )
        # In UTC, or an offset near datetime's ends (9999-12-31T23:59:59-14:00) overflows
        # in the first comparison or subtraction, on every retry.
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise Unauthorized(
            f"issuer {issuer} answered with a malformed or out-of-range expires_at"
        ) from None


def _storable(value: str, name: str, issuer: str) -> str:
    """A peer's text that every store can hold: NUL and lone surrogates make the answer
    invalid (401), where they would fail at the database on every retry."""
    try:
        return check_text(value)
    except ValueError:
        raise Unauthorized(
            f"issuer {issuer} answered with a {name} holding NUL or a lone surrogate"
        ) from None
