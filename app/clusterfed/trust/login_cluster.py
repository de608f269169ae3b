"""Federations with a login cluster, the trust side (docs/protocol.md#login-cluster).

Every cluster sets ``Login.LoginCluster: L``; L issues every user's tokens and the
others (satellites) defer to it. Two rules live here:

- :class:`LoginCredentials`: on a satellite, a credential that is not a v2 token (a v1
  secret, an OIDC access token) and that this cluster does not know is validated at L
  with the same two calls, as presented. It is cached under the token UUID L
  returns, in the same L1 as v2 tokens (so purges and the negative cache apply), one
  flight per credential. Its L2 digest is an HMAC-SHA256 keyed by the SystemRootToken
  (through the L2 key every digest uses) of the credential salted for this cluster:
  A login cluster's credentials need a digest keyed by the SystemRootToken, revocation one taken
  of the secret salted for this cluster, so that L's revocation notice (whose proof is
  exactly that salted secret) finds the row. This digest is both.
- :class:`RuntimeOwners`: a token issued by cluster S but owned by a user of L (work S
  runs on the user's behalf) is accepted only when the user is already known here, S's
  exported ``/arvados/v1/config`` names the same ``LoginCluster``, and L's own exported
  config lists S in its ``RemoteClusters`` (each fetched once, then cached for
  ``RemoteTokenRefresh``). S's word about itself proves nothing: any peer can claim a
  LoginCluster, and only L can say who is in L's federation. Such a token never makes
  its holder an admin (``identity.admin_here``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from cachetools import TTLCache

from clusterfed.config import ClusterConfig
from clusterfed.errors import FederationError, RemoteError, Unauthorized
from clusterfed.exported import CONFIG_PATH
from clusterfed.flights import Flights
from clusterfed.identity import Identity, UserRecord
from clusterfed.metrics import FederationMetrics
from clusterfed.outbound.remote import RemoteClient
from clusterfed.outbound.statuses import IssuerRejected
from clusterfed.tokens import (
    Token,
    is_cluster_id,
    is_opaque_credential,
    salted_secret,
    secrets_equal,
)

from .cache import L1Entry
from .store import FederationStore
from .validator import (
    TOKEN_PATH,
    TOUCH_INTERVAL_SECONDS,
    TokenValidator,
    judge_token_answer,
    vouched_entry,
)

log = logging.getLogger("clusterfed.login_cluster")

# Peers whose exported config is remembered at once (a federation has a handful).
PEER_CONFIG_CACHE_SIZE = 1000

# The host's answer to "is this credential one of yours?", whatever its state (expired,
# scoped...): a credential the host knows is never sent to the login cluster.
KnowsCredential = Callable[[str], Awaitable[bool]]


class LoginCredentials:
    """Validation at the login cluster of credentials that are not v2 tokens."""

    def __init__(
        self,
        config: ClusterConfig,
        store: FederationStore,
        remote: RemoteClient,
        metrics: FederationMetrics,
        validator: TokenValidator,
        *,
        knows_credential: KnowsCredential | None = None,
    ) -> None:
        self.config = config
        self.local_id = config.cluster_id
        self.login_cluster = config.login_cluster
        self.store = store
        self.remote = remote
        self.metrics = metrics
        self.validator = validator
        self.knows_credential = knows_credential
        self._own = tuple(t for t in (config.management_token, config.system_root_token) if t)
        self._flights: Flights[bytes, Identity] = Flights()
        if self.is_satellite and knows_credential is None:
            log.warning(
                "Login.LoginCluster is %s but the host gave no knows_credential hook: "
                "credentials that are not v2 tokens stay the host's and are never sent there",
                self.login_cluster,
            )

    @property
    def is_satellite(self) -> bool:
        return bool(self.login_cluster) and self.login_cluster != self.local_id

    async def defers(self, credential: str) -> bool:
        """Whether this non-v2 credential is for the login cluster to validate.

        Never one that cannot be a credential at all, never this cluster's own
        ManagementToken or SystemRootToken, never one the host knows.
        """
        if not self.is_satellite or self.knows_credential is None:
            return False
        if not is_opaque_credential(credential):
            return False
        if any(secrets_equal(credential, own) for own in self._own):
            return False
        cache = self.validator.cache
        if cache.get(cache.key(self.login_cluster, credential)) is not None:
            return True  # deferred before: no need to ask the host again
        return not await self.knows_credential(credential)

    async def identify(self, credential: str, *, client: str | None = None) -> Identity:
        login = self.login_cluster
        if login not in self.remote.clusters:
            raise Unauthorized(f"login cluster {login} has no RemoteClusters entry")
        cache = self.validator.cache
        key = cache.key(login, credential)
        now = time.time()
        entry = cache.get(key)
        if entry is not None and entry.fresh(now):
            self.metrics.l1_hit.inc()
            if now - entry.touched_at >= TOUCH_INTERVAL_SECONDS:
                entry.touched_at = now
                self.validator.touch(entry.identity.token_uuid, datetime.fromtimestamp(now, UTC))
            return entry.identity
        self.metrics.l1_miss.inc()
        rejection = cache.rejection(key)
        if rejection is not None:
            raise Unauthorized(rejection)
        return await self._flights.join(key, lambda: self._validate(credential, key, entry, client))

    def digest(self, credential: str) -> str:
        """The L2 digest: of the credential salted for us, under the SystemRootToken-keyed
        L2 key (the same on every worker and across restarts; see the module docstring)."""
        return self.validator.secret_digest(salted_secret(credential, self.local_id))

    async def _validate(
        self, credential: str, key: bytes, stale: L1Entry | None, client: str | None
    ) -> Identity:
        login = self.login_cluster
        cache = self.validator.cache
        now = datetime.now(UTC)
        digest = self.digest(credential)
        cached = await self.store.load_token_by_digest(login, digest)
        if cached is not None:
            user = await self.store.get_user(cached.user_uuid)
            if user is not None:
                identity = Identity(
                    user, cached.token_uuid, cached.scopes, login, cached.expires_at
                )
                if cached.is_fresh(now):
                    self.metrics.l2_hit.inc()
                    cache.put(key, L1Entry(identity, cached.refreshes_at, now.timestamp()))
                    return identity
                if stale is None:
                    stale = L1Entry(identity, cached.refreshes_at, cached.last_used_at.timestamp())
        self.metrics.l2_miss.inc()
        await self.validator.admit_cold(client, login, "-")

        started = time.monotonic()
        outcome = "error"
        token_uuid = "-"  # known once L answers; the credential itself is never logged
        try:
            identity, refreshes_at = await self._ask(credential, digest)
            token_uuid = identity.token_uuid
            outcome = "accepted"
        except IssuerRejected as exc:
            outcome = "rejected"
            cache.reject(key, exc.message)
            raise
        except FederationError as exc:
            outcome = "unreachable" if isinstance(exc, RemoteError) else "invalid"
            usable = stale is not None and stale.usable_stale(
                datetime.now(UTC), self.validator.stale_if_error
            )
            if usable and exc.status_code >= 500:
                assert stale is not None
                outcome = "stale"
                return stale.identity
            raise
        finally:
            elapsed = time.monotonic() - started
            self.metrics.validations.labels(login, outcome).inc()
            self.metrics.validation_seconds.labels(login).observe(elapsed)
            log.info(
                "validation credential=non-v2 token=%s issuer=%s outcome=%s duration_ms=%.1f",
                token_uuid,
                login,
                outcome,
                elapsed * 1000,
            )
        cache.put(key, L1Entry(identity, refreshes_at, time.time()))
        return identity

    async def _ask(self, credential: str, digest: str) -> tuple[Identity, datetime]:
        login = self.login_cluster
        # As presented: L issued it (or knows the identity provider that did).
        outgoing = Token(uuid=None, secret=credential)
        params = {"remote": self.local_id}
        answer = await self.remote.request(login, "GET", TOKEN_PATH, token=outgoing, params=params)
        record = judge_token_answer(answer, outgoing, issuer=login)
        refresh = timedelta(seconds=self.config.remote_token_refresh)
        entry = vouched_entry(record, cluster_id=login, digest=digest, refresh=refresh)
        user, _ = await self.validator.user_from_issuer(login, outgoing, record["owner_uuid"])
        await self.store.save_token(replace(entry, user_uuid=user.uuid))
        identity = Identity(user, entry.token_uuid, entry.scopes, login, entry.expires_at)
        return identity, entry.refreshes_at

    async def aclose(self) -> None:
        await self._flights.aclose()


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """What a peer's exported config says about federation membership."""

    login_cluster: str  # "" for none
    remote_clusters: frozenset[str]  # listed by ID ("*" is not a cluster)


class RuntimeOwners:
    """Tokens issued by one cluster of the federation for a user of the login cluster."""

    def __init__(self, config: ClusterConfig, store: FederationStore, remote: RemoteClient) -> None:
        self.config = config
        self.local_id = config.cluster_id
        self.login_cluster = config.login_cluster
        self.store = store
        self.remote = remote
        # cluster -> its exported membership, believed for RemoteTokenRefresh: a runtime
        # token accepted on it is believed that long too, so membership is never older.
        self._peers: TTLCache[str, PeerConfig] = TTLCache(
            maxsize=PEER_CONFIG_CACHE_SIZE, ttl=max(config.remote_token_refresh, 1e-3)
        )
        self._flights: Flights[str, PeerConfig] = Flights()

    def owner_cluster(self, issuer: str) -> str | None:
        """Whose users ``issuer`` may vouch for besides its own: the login cluster's."""
        login = self.login_cluster
        return login if login and issuer != login else None

    async def owner(self, issuer: str, owner_uuid: str) -> UserRecord:
        """The local record of a runtime token's owner, once ``issuer`` proved membership."""
        login = self.login_cluster
        if owner_uuid[:5] != login:
            raise Unauthorized(f"issuer {issuer} vouched for a user that is not its own")
        # Cheapest first: a user never seen here cannot own a runtime token here.
        user = await self.store.get_user(owner_uuid)
        if user is None:
            raise Unauthorized(
                f"issuer {issuer} vouched for a user of login cluster {login} unknown here"
            )
        named = (await self.peer_config(issuer)).login_cluster
        if named != login:
            raise Unauthorized(
                f"issuer {issuer} vouched for a user of login cluster {login}, but it does "
                f"not defer to {login} (its LoginCluster is {named or 'unset'})"
            )
        if not await self.login_lists(issuer):
            raise Unauthorized(
                f"issuer {issuer} vouched for a user of login cluster {login}, but {login} "
                f"does not list {issuer} among its RemoteClusters"
            )
        return user

    async def login_lists(self, issuer: str) -> bool:
        """Whether the login cluster's own config lists ``issuer`` in its RemoteClusters:
        the login cluster's word, not the issuer's, on who is in its federation."""
        login = self.login_cluster
        if login == self.local_id:
            return issuer in self.config.remote_clusters
        return issuer in (await self.peer_config(login)).remote_clusters

    async def peer_config(self, cluster: str) -> PeerConfig:
        known = self._peers.get(cluster)
        if known is not None:
            return known
        return await self._flights.join(cluster, lambda: self._fetch(cluster))

    async def _fetch(self, cluster: str) -> PeerConfig:
        answer = await self.remote.request(cluster, "GET", CONFIG_PATH, token=None)
        if answer.status_code >= 500:
            raise FederationError(
                f"cluster {cluster} failed ({answer.status_code}) exporting its config",
                status_code=answer.status_code,
            )
        body = answer.json_object() if answer.status_code == 200 else None
        if body is None or body.get("ClusterID") != cluster:
            # Not remembered: a peer that cannot show its config now may later.
            raise Unauthorized(f"cluster {cluster} did not export its config")
        login = body.get("Login")
        named = login.get("LoginCluster") if isinstance(login, dict) else None
        remotes = body.get("RemoteClusters")
        listed = frozenset(
            name
            for name in (remotes if isinstance(remotes, dict) else ())
            if isinstance(name, str) and is_cluster_id(name)
        )
        peer = PeerConfig(named if isinstance(named, str) else "", listed)
        self._peers[cluster] = peer
        return peer

    async def aclose(self) -> None:
        await self._flights.aclose()
