"""Blocks that other clusters hold, read and written for a client of ours.

A manifest routed from cluster ``X`` carries ``<md5>+<size>+R<X>-<sig>@<exp>`` locators:
``X``'s own signatures, good only at ``X``. Given one, :meth:`RemoteBlocks.open` asks
``X`` for ``<md5>+<size>+A<sig>@<exp>`` with the caller's credential salted for ``X``, at
one of the block servers ``X`` lists in ``keep_services/accessible`` (remembered for
``SERVICES_TTL``), and hands back a :class:`RemoteBlock` whose bytes are streamed, never
held whole: each chunk is passed on once the next has arrived, and the last one only once
the md5 and the size are right, so a lying remote never yields a complete block.
:meth:`RemoteBlocks.put` sends a block of ours to ``X`` and returns ``X``'s signed locator.

Only clusters in ``RemoteClusters`` are ever contacted. Errors are ``FederationError``\\ s
carrying the status for the client, as a block server answers them:

    400  not a remote locator, no size, a credential that cannot be sent to ``X``
    401  no credential
    403  ``X`` refused the credential or the signature
    404  ``X`` has no such block
    502  ``X`` is down, answered garbage, or sent bytes that are not the block
    504  ``X`` was silent for ``RemoteTimeout``

Blocks travel through one ``aiohttp`` session per TLS-verification mode (the client the
validation calls use too, ``outbound/aiohttp_gets.py``): its answers are taken as the
socket delivered them (``readchunk``: no copy or re-chunking of ours), reading pauses
once ``READ_BUFFER`` bytes wait unread, and its ``sock_read`` timeout is exactly
"silence for ``RemoteTimeout``" (it stops counting while reading is paused for a slow
client). A block's md5 is computed by a thread of its own as the bytes pass
(:class:`_Hasher`), at most ``HASH_BACKLOG`` bytes behind.
aiohttp's exceptions are turned into the statuses above here, at one boundary. Every call
to a block server counts in ``X``'s circuit breaker, as the federation's other calls to
``X`` do: an open circuit is a 502 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import queue
import re
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from yarl import URL

from clusterfed.config import ClusterConfig
from clusterfed.errors import BadGateway, FederationError, GatewayTimeout, Unauthorized
from clusterfed.flights import Flights
from clusterfed.outbound.circuit import CircuitBreaker
from clusterfed.outbound.remote import RemoteClient
from clusterfed.outbound.statuses import remote_block_error
from clusterfed.tokens import CannotResalt, MalformedToken, Token, salt

from .locators import Locator, MalformedLocator, parse_locator

log = logging.getLogger("clusterfed.keep.remote")

SERVICES_PATH = "/arvados/v1/keep_services/accessible"
SERVICES_TTL = 300.0  # how long a cluster's list of block servers is used before asking again
RELIST_AFTER = 10.0  # a failed read asks for the list again if it is at least this old
MAX_SERVICES = 32  # of one cluster's list; the rest are ignored
MAX_TRIES = 3  # block servers tried for one block, in rendezvous order
MAX_BLOCK_SIZE = 64 * 1024 * 1024
MAX_LOCATOR_ANSWER = 4096  # a PUT's answer is one signed locator
# Bytes of one answer received but not yet passed on: past twice this, reading pauses.
READ_BUFFER = 1024 * 1024
HASH_BACKLOG = 4 * 1024 * 1024  # bytes received but not yet hashed before reading waits
MAX_CONNECTIONS = 100  # to all block servers, per TLS-verification mode
USER_AGENT = "clusterfed-keep"
Failed = Callable[[str], None]  # counts a failure (its reason) in a circuit breaker
_HOST_RE = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


class BadRequest(FederationError):
    status_code = 400


class BlockChecksumError(BadGateway):
    """The bytes ``X`` sent are not the block the locator names."""


@dataclass(frozen=True, slots=True)
class KeepService:
    uuid: str
    root: str  # ``https://host:port/``
    read_only: bool


class RemoteBlock:
    """One block being read from another cluster: its size, then its bytes, checked.

    ``chunks()`` may be iterated once; it raises ``BlockChecksumError`` (before the last
    chunk) when the bytes are not the block, ``GatewayTimeout`` when ``X`` falls silent,
    ``BadGateway`` when the connection breaks. Close it with ``aclose()`` in every case.
    """

    def __init__(
        self, cluster_id: str, locator: Locator, response: aiohttp.ClientResponse, failed: Failed
    ) -> None:
        assert locator.size is not None
        self.cluster_id = cluster_id
        self.md5 = locator.md5
        self.size: int = locator.size
        self._response = response
        self._failed = failed

    async def chunks(self) -> AsyncIterator[bytes]:
        hasher = _Hasher()
        received = 0
        held = b""
        content = self._response.content
        try:
            while True:
                chunk, end_of_http_chunk = await content.readchunk()
                if not chunk:
                    if end_of_http_chunk:  # a chunked answer's chunk boundary
                        continue
                    break  # the whole answer
                received += len(chunk)
                if received > self.size:
                    raise BlockChecksumError(
                        f"cluster {self.cluster_id} sent more than the {self.size} bytes "
                        f"of block {self.md5}"
                    )
                await hasher.feed(chunk)
                if held:
                    yield held
                held = chunk
            md5 = await hasher.hexdigest()
        except TimeoutError:  # aiohttp's SocketTimeoutError: silence for RemoteTimeout
            self._failed("silent midway")
            raise GatewayTimeout(
                f"cluster {self.cluster_id} fell silent while sending block {self.md5}"
            ) from None
        except aiohttp.ClientError as exc:
            self._failed(type(exc).__name__)
            raise BadGateway(
                f"cluster {self.cluster_id} broke off sending block {self.md5}: "
                f"{type(exc).__name__}"
            ) from None
        finally:
            hasher.stop()
        if received != self.size or md5 != self.md5:
            log.warning(
                "cluster %s sent %d bytes that are not block %s+%d",
                self.cluster_id,
                received,
                self.md5,
                self.size,
            )
            raise BlockChecksumError(
                f"cluster {self.cluster_id} sent bytes that are not block {self.md5}"
            )
        if held:
            yield held

    async def aclose(self) -> None:
        # A connection whose answer was read to its end is back in the pool already;
        # one with bytes left unread (a client that hung up, a lie) is closed.
        self._response.close()


class _Hasher:
    """The md5 of a stream, computed by a thread of its own while the loop passes the
    bytes on (hashlib releases the GIL).

    The loop hands each chunk over without waiting for it to be hashed, and waits only
    while more than ``HASH_BACKLOG`` bytes are not hashed yet (which bounds the memory
    they hold); the thread tells the loop only then, and at the end. A worker-thread call
    per chunk made both sides wake each other for every chunk: a 64 MiB block cost the
    home 1,600 to 2,400 context switches and about 15% more CPU than this (270 to 290).
    """

    def __init__(self) -> None:
        self._digest = hashlib.md5()
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._fed = 0  # written by the loop only
        self._hashed = 0  # written by the thread only
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self._thread: threading.Thread | None = None

    async def feed(self, chunk: bytes) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="clusterfed-md5", daemon=True)
            self._thread.start()
        self._fed += len(chunk)
        self._chunks.put(chunk)
        while self._fed - self._hashed > HASH_BACKLOG:
            waiter = self._waiter = self._loop.create_future()
            # Checked again now that the thread can see the waiter: it may have caught up
            # in between, and would not wake a waiter it did not see.
            if self._fed - self._hashed <= HASH_BACKLOG:
                break
            await waiter

    async def hexdigest(self) -> str:
        if self._thread is not None:
            self._chunks.put(None)
            await self._finished
        return self._digest.hexdigest()

    def stop(self) -> None:
        """Lets the thread end (the stream is complete, or was abandoned)."""
        self._chunks.put(None)

    def _run(self) -> None:
        try:
            while (chunk := self._chunks.get()) is not None:
                self._digest.update(chunk)
                self._hashed += len(chunk)
                waiter = self._waiter
                if (
                    waiter is not None
                    and not waiter.done()
                    and self._fed - self._hashed <= HASH_BACKLOG // 2
                ):
                    self._wake(waiter)
        finally:
            self._wake(self._finished)

    def _wake(self, future: asyncio.Future[None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(_set_done, future)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RemoteBlocks:
    def __init__(self, config: ClusterConfig, remote: RemoteClient) -> None:
        self.local_id = config.cluster_id
        self.clusters = dict(config.remote_clusters)
        self.timeout = config.federation.remote_timeout
        self._remote = remote
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._services: dict[str, tuple[float, tuple[KeepService, ...]]] = {}
        # Lookups of a cluster's block servers under way, per (cluster, credential).
        self._flights: Flights[tuple[str, str], tuple[KeepService, ...]] = Flights()

    def _session(self, insecure: bool) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop; one per TLS-verification mode.
        session = self._sessions.get(insecure)
        if session is None or session.closed:
            session = self._sessions[insecure] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=MAX_CONNECTIONS,
                    limit_per_host=0,
                    # httpx's context, as for every other call: SSL_CERT_FILE and
                    # SSL_CERT_DIR apply alike.
                    ssl=httpx.create_ssl_context(verify=not insecure),
                ),
                headers={"Accept-Encoding": "identity", "User-Agent": USER_AGENT},
                # Every timeout is one of silence: connecting, or waiting for the next
                # bytes of an answer. How long a whole block takes is not bounded here.
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.timeout, sock_read=self.timeout
                ),
                read_bufsize=READ_BUFFER,
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=("Content-Type",),
            )
        return session

    async def aclose(self) -> None:
        await self._flights.aclose()
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    # -- reading ---------------------------------------------------------------------

    async def open(
        self, locator: str | Locator, credential: Token | None, *, method: str = "GET"
    ) -> RemoteBlock:
        """The block a ``+R<X>-`` locator names, from ``X`` (``method``: GET or HEAD).

        Everything up to ``X``'s answer (its block servers included) takes at most
        ``RemoteTimeout``; the bytes then come as fast as ``X`` sends them.
        """
        parsed, cluster_id, wanted = self._remote_locator(locator)
        token = self._salted(credential, cluster_id)
        try:
            async with asyncio.timeout(self.timeout):
                return await self._open(cluster_id, parsed, wanted, token, method)
        except TimeoutError:
            self._remote.circuits[cluster_id].record_failure("timeout")
            raise GatewayTimeout(
                f"cluster {cluster_id} did not answer for block {parsed.md5} "
                f"within {self.timeout:g}s"
            ) from None

    def _remote_locator(self, locator: str | Locator) -> tuple[Locator, str, str]:
        try:
            parsed = locator if isinstance(locator, Locator) else parse_locator(locator)
        except MalformedLocator as exc:
            raise BadRequest(f"malformed locator: {exc}") from None
        remote = parsed.remote_signature
        if remote is None:
            raise BadRequest("the locator names no cluster to read the block from (+R<X>-)")
        if parsed.size is None or parsed.size > MAX_BLOCK_SIZE:
            raise BadRequest("a remote block's locator must carry its size, at most 64 MiB")
        if remote.cluster_id not in self.clusters:
            raise BadRequest(f"cluster {remote.cluster_id} is not a remote of this cluster")
        wanted = f"{parsed.base}+{remote.as_local().hint}"
        return parsed, remote.cluster_id, wanted

    def _salted(self, credential: Token | None, cluster_id: str) -> Token:
        if credential is None:
            raise Unauthorized("reading a block of another cluster needs a credential")
        try:
            return salt(credential, cluster_id)
        except MalformedToken:
            raise BadRequest(
                f"the block is on cluster {cluster_id}, and a v1 token cannot be sent to "
                "another cluster; use a v2 token"
            ) from None
        except CannotResalt:
            raise BadRequest(
                f"the block is on cluster {cluster_id}, and the token presented is already "
                "salted; present the unsalted token"
            ) from None

    async def _open(
        self, cluster_id: str, parsed: Locator, wanted: str, token: Token, method: str
    ) -> RemoteBlock:
        services = await self.services(cluster_id, token)
        session = self._session(self.clusters[cluster_id].insecure)
        headers = {"Authorization": f"Bearer {token.encode()}"}
        failures: list[FederationError] = []
        for service in _rendezvous(parsed.md5, services)[:MAX_TRIES]:
            with self._call(cluster_id) as call:
                try:
                    response = await session.request(
                        method,
                        URL(service.root + wanted, encoded=True),
                        headers=headers,
                        allow_redirects=False,
                    )
                except (TimeoutError, aiohttp.ClientError) as exc:
                    failures.append(call.failed(exc))
                    continue
                call.answered()
            error = remote_block_error(cluster_id, response.status)
            if error is None:
                error = _length_error(cluster_id, parsed, response)
            if error is None:
                return RemoteBlock(cluster_id, parsed, response, self._circuit_failure(cluster_id))
            response.close()
            failures.append(error)
        self._relist(cluster_id)  # perhaps its list has changed
        raise _worst(failures, cluster_id, parsed.md5)

    # -- block servers ---------------------------------------------------------------

    async def services(self, cluster_id: str, token: Token) -> tuple[KeepService, ...]:
        """``cluster_id``'s block servers, from its ``keep_services/accessible``, looked up
        for the caller whose salted credential ``token`` is."""
        cached = self._services.get(cluster_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        # What is shared between callers, and what is not. Arvados serves this list to
        # anyone, with or without a credential (its API server skips authentication for
        # ``accessible``; its own tests list it for no token), and the same list to all:
        # hosts, ports and flags, nothing of the caller. So the parsed list, once had, is
        # used for every caller until SERVICES_TTL. The lookup itself is one caller's,
        # made with that caller's own credential (as Arvados's keepstore sends one when it
        # reads from another cluster, so a peer that does ask for one answers too), and
        # concurrent first lookups are joined only by callers presenting the same
        # credential: no call goes to another cluster with one caller's credential on
        # another's behalf, where the remote would log and judge the wrong user, and a
        # credential it refuses would fail someone else's read.
        key = (cluster_id, token.encode())
        return await self._flights.join(key, lambda: self._discover(cluster_id, token))

    def forget(self, cluster_id: str) -> None:
        self._services.pop(cluster_id, None)

    def _relist(self, cluster_id: str) -> None:
        """After a failed read: the list is asked for again, unless it is younger than
        ``RELIST_AFTER``. Asking again each time would cost every failed read a call to
        ``cluster_id``, and its answer would close the circuit breaker that the failing
        block server is opening."""
        cached = self._services.get(cluster_id)
        if cached is not None and cached[0] - SERVICES_TTL + RELIST_AFTER <= time.monotonic():
            self.forget(cluster_id)

    async def _discover(self, cluster_id: str, token: Token) -> tuple[KeepService, ...]:
        response = await self._remote.request(cluster_id, "GET", SERVICES_PATH, token=token)
        error = remote_block_error(cluster_id, response.status_code)
        if error is not None:
            raise error
        body = response.json_object()
        services = _parse_services(body, self.clusters[cluster_id].scheme)
        if not services:
            raise BadGateway(f"cluster {cluster_id} lists no block server it can be read from")
        self._services[cluster_id] = (time.monotonic() + SERVICES_TTL, services)
        return services

    # -- writing ---------------------------------------------------------------------

    async def put(
        self,
        cluster_id: str,
        md5: str,
        size: int,
        body: Callable[[], AsyncIterable[bytes]],
        credential: Token | None,
    ) -> str:
        """Stores a block at ``cluster_id``; returns the locator it signed for the salted
        credential. ``body()`` gives the block's bytes (called again for another try)."""
        if cluster_id not in self.clusters:
            raise BadRequest(f"cluster {cluster_id} is not a remote of this cluster")
        token = self._salted(credential, cluster_id)
        services = [s for s in await self.services(cluster_id, token) if not s.read_only]
        session = self._session(self.clusters[cluster_id].insecure)
        headers = {
            "Authorization": f"Bearer {token.encode()}",
            "Content-Length": str(size),  # so the body is sent as it is, not chunked
            "X-Keep-Desired-Replicas": "1",
        }
        failures: list[FederationError] = []
        for service in _rendezvous(md5, tuple(services))[:MAX_TRIES]:
            with self._call(cluster_id) as call:
                try:
                    async with asyncio.timeout(self._put_budget(size)):
                        async with session.put(
                            URL(service.root + md5, encoded=True),
                            data=body(),
                            headers=headers,
                            allow_redirects=False,
                        ) as response:
                            status = response.status
                            content = await _read_at_most(response, MAX_LOCATOR_ANSWER)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    failures.append(call.failed(exc))
                    continue
                call.answered()
            error = remote_block_error(cluster_id, status)
            if error is None:
                signed = _signed_answer(content, md5, size)
                if signed is not None:
                    return signed
                error = BadGateway(f"cluster {cluster_id} answered a PUT without a locator")
            failures.append(error)
        self._relist(cluster_id)
        raise _worst(failures, cluster_id, md5)

    # -- the circuit breaker ---------------------------------------------------------

    @contextlib.contextmanager
    def _call(self, cluster_id: str) -> Iterator[_Call]:
        """One request to a block server of ``cluster_id``, counted in its circuit
        breaker (the one the federation's other calls to it share): refused at once while
        the circuit is open."""
        circuit = self._remote.circuits[cluster_id]
        trial = circuit.allow()
        if trial is None:
            raise BadGateway(f"remote cluster {cluster_id} is unreachable (circuit open)")
        try:
            yield _Call(cluster_id, circuit)
        finally:
            if trial:
                circuit.end_trial()  # a no-op once a verdict was recorded

    def _circuit_failure(self, cluster_id: str) -> Failed:
        return self._remote.circuits[cluster_id].record_failure

    def _put_budget(self, size: int) -> float:
        # Silence is bounded by the client's timeouts; this bounds a remote that reads
        # the body at a trickle: RemoteTimeout plus a second per MiB.
        return self.timeout + size / (1024 * 1024)


class _Call:
    def __init__(self, cluster_id: str, circuit: CircuitBreaker) -> None:
        self.cluster_id = cluster_id
        self.circuit = circuit

    def answered(self) -> None:
        """The block server answered (any status): it is reachable."""
        self.circuit.record_success()

    def failed(self, exc: BaseException) -> FederationError:
        """No answer: the error for the client, after the failure was counted."""
        if isinstance(exc, TimeoutError):  # aiohttp's connect and read timeouts too
            self.circuit.record_failure("timeout")
            return GatewayTimeout(f"cluster {self.cluster_id}'s block server timed out")
        reason = type(exc).__name__
        self.circuit.record_failure(reason)
        return BadGateway(f"cluster {self.cluster_id}'s block server: {reason}")


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The answer's body, or its first ``limit`` + 1 bytes when it is longer."""
    body = bytearray()
    while len(body) <= limit:
        chunk = await response.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body.extend(chunk)
    return bytes(body)


def _length_error(
    cluster_id: str, locator: Locator, response: aiohttp.ClientResponse
) -> FederationError | None:
    """A remote that announces another size is refused before any byte is passed on."""
    declared = response.headers.get("content-length")
    if declared is not None and declared != str(locator.size):
        return BadGateway(
            f"cluster {cluster_id} offered {declared} bytes for block {locator.md5}+{locator.size}"
        )
    return None


def _worst(failures: list[FederationError], cluster_id: str, md5: str) -> FederationError:
    """One error for every block server tried: found nowhere is 404 only when each said so."""
    if not failures:
        return BadGateway(f"cluster {cluster_id} lists no block server to try")
    if all(failure.status_code == 404 for failure in failures):
        return failures[0]
    for status in (403, 504):
        for failure in failures:
            if failure.status_code == status:
                return failure
    return next(f for f in failures if f.status_code != 404)


def _rendezvous(md5: str, services: tuple[KeepService, ...]) -> list[KeepService]:
    """Services in the order keep clients probe them for a block (Arvados's rendezvous
    hashing: md5 of the block hash and the last 15 characters of the service UUID)."""
    return sorted(
        services,
        key=lambda s: hashlib.md5((md5 + s.uuid[-15:]).encode()).hexdigest(),
        reverse=True,
    )


def _parse_services(body: Any, scheme: str) -> tuple[KeepService, ...]:
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return ()
    services = []
    for item in items[:MAX_SERVICES]:
        if not isinstance(item, dict):
            continue
        host, port, uuid = item.get("service_host"), item.get("service_port"), item.get("uuid")
        ssl = item.get("service_ssl_flag")
        if not isinstance(host, str) or _HOST_RE.fullmatch(host) is None:
            continue
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            continue
        if not isinstance(uuid, str) or not uuid:
            uuid = f"{host}:{port}"
        use_tls = ssl if isinstance(ssl, bool) else scheme == "https"
        root = f"{'https' if use_tls else 'http'}://{host}:{port}/"
        services.append(KeepService(uuid, root, item.get("read_only") is True))
    return tuple(services)


def _signed_answer(content: bytes, md5: str, size: int) -> str | None:
    if len(content) > MAX_LOCATOR_ANSWER:
        return None
    try:
        parsed = parse_locator(content.decode("ascii").strip())
    except (UnicodeDecodeError, MalformedLocator):
        return None
    if parsed.md5 != md5 or parsed.size != size or parsed.signature is None:
        return None
    return str(parsed)
