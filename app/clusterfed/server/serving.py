"""How ``clusterfed serve`` runs uvicorn: bounded request heads, an access log without secrets.

- The request line and headers together are capped at ``MAX_HEAD_BYTES`` (64 KiB), so a
  client cannot make the server hold a header of any size before anything checks it.
  uvicorn's httptools protocol (chosen by default when httptools is installed, as
  ``uvicorn[standard]`` does) has no such limit: it read a 100 MB header whole (and
  slowly). h11 has one, ``h11_max_incomplete_event_size``, so ``serve`` pins h11. A head
  over the cap is answered 400 and the connection closed.
- What start-up allocated is frozen out of the cyclic garbage collector's view
  (``freeze_startup_objects``), so a full collection walks only what requests left behind.
- On shutdown an idle keep-alive connection is dropped at once (``HeadTimeoutH11Protocol``):
  closing TLS politely waits for the client's close_notify, which an idle client never
  sends, and uvicorn waited for every such connection (24 s and more) before exiting.
  Requests in flight still finish.
- Query parameters that carry credentials (``api_token``, ``reader_tokens``) are
  redacted from uvicorn's access log line, in every worker process: the filter is part of
  the logging config each worker applies, not something set up in the parent only.
- ``--log-level debug`` is safe in production: the level applies to every logger (the
  root one included, in every worker), every handler scrubs credentials from what it
  writes (:class:`ScrubCredentials`), and the loggers that would write secrets at debug
  level stay above it: SQLAlchemy's engine logger (it logs result rows, and a token
  lookup's row holds the secret; bound parameters are hidden anyway, ``hide_parameters``)
  and aiosqlite's (it logs each call with its arguments). ``trace`` is not offered:
  uvicorn's trace logs every ASGI message, headers included.
- A request head not complete within ``HEAD_TIMEOUT_SECONDS`` (10 s) of the connection
  opening, or of the first byte of a following request on it, closes the connection
  (:class:`HeadTimeoutH11Protocol`): neither uvicorn nor h11 bounds it, so a client
  could hold thousands of connections with half a head each. ``--limit-concurrency``
  (default ``DEFAULT_LIMIT_CONCURRENCY`` per worker) bounds open connections and
  requests: past it, uvicorn answers 503.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import os
import re
from typing import Any
from urllib.parse import unquote_plus

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_SECONDS = 10.0
# Tests shorten the head timeout through the environment (worker processes inherit it).
HEAD_TIMEOUT_ENV = "CLUSTERFED_HEAD_TIMEOUT"
DEFAULT_LIMIT_CONCURRENCY = 1000
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
# Loggers that write secrets below these levels, whatever --log-level says.
QUIET_LOGGERS = {"sqlalchemy": "WARNING", "aiosqlite": "INFO", "alembic": "WARNING"}
SECRET_PARAMS = frozenset({"api_token", "reader_tokens"})
REDACTED = "[REDACTED]"
PATH_ARG = 2  # uvicorn's access record: (client, method, path?query, http version, status)


def uvicorn_options(
    *, log_level: str = "info", limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY
) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` that every ``serve`` passes."""
    return {
        # By import path, not the class: a worker process imports it when it loads its
        # config, after it answers its supervisor's health checks. The class itself would
        # be imported while the process is unpickled, before that: under load the
        # supervisor then took the worker for hung and killed it, again and again.
        "http": f"{__name__}:HeadTimeoutH11Protocol",
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "log_config": log_config(log_level),
        "log_level": log_level,
        "limit_concurrency": limit_concurrency,
    }


def head_timeout() -> float:
    """``HEAD_TIMEOUT_SECONDS``, unless the environment shortens it (for tests)."""
    try:
        value = float(os.environ.get(HEAD_TIMEOUT_ENV, HEAD_TIMEOUT_SECONDS))
    except ValueError:
        return HEAD_TIMEOUT_SECONDS
    return value if 0 < value <= HEAD_TIMEOUT_SECONDS else HEAD_TIMEOUT_SECONDS


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is not complete
    within the head timeout of the connection opening (or of the first byte of the next
    request on a kept-alive connection). Between requests uvicorn's keep-alive timeout
    applies as before."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()  # the first bytes of another request
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()  # the head is complete

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(head_timeout(), self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def shutdown(self) -> None:
        """At shutdown, a connection with nothing in flight is dropped at once (see the
        module docstring); one with a request in flight finishes it first."""
        if self.cycle is None or self.cycle.response_complete:
            self._cancel_head_timer()
            self.transport.abort()
        else:
            super().shutdown()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.debug("closing a connection whose request head took too long")
            self.transport.close()


def freeze_startup_objects() -> None:
    """Collect once, then freeze everything alive (modules, the app, its routes, models and
    schemas): the collector never walks it again. A worker's full collections otherwise
    walked all of it each time, pausing every request in flight for up to 80 ms.

    For the process that serves, once the app is built: a process that builds many apps
    (a test suite) would keep the garbage of each one forever."""
    gc.collect()
    gc.freeze()


def log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's own logging config, with :class:`RedactSecrets` on the access logger,
    the root logger at ``level`` (what clusterfed and its libraries log goes there), and
    :class:`ScrubCredentials` on every handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    filters = config.setdefault("filters", {})
    filters["redact_secrets"] = {"()": f"{__name__}.RedactSecrets"}
    filters["scrub_credentials"] = {"()": f"{__name__}.ScrubCredentials"}
    config["loggers"]["uvicorn.access"]["filters"] = ["redact_secrets"]
    config["formatters"]["plain"] = {"format": LOG_FORMAT}
    config["handlers"]["plain"] = {
        "formatter": "plain",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    for handler in config["handlers"].values():
        handler["filters"] = [*handler.get("filters", []), "scrub_credentials"]
    config["root"] = {"handlers": ["plain"], "level": level.upper()}
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        config["loggers"].setdefault(name, {})["level"] = level.upper()
    for name, floor in QUIET_LOGGERS.items():
        config["loggers"][name] = {"level": floor}
    return config


def redact_query(target: str) -> str:
    """``target`` (a path with its query) with the values of credential parameters redacted."""
    path, mark, query = target.partition("?")
    if not mark:
        return target
    parts = []
    for part in query.split("&"):
        key, equals, _ = part.partition("=")
        name = unquote_plus(key).strip().lower().removesuffix("[]")
        parts.append(f"{key}={REDACTED}" if equals and name in SECRET_PARAMS else part)
    return f"{path}?{'&'.join(parts)}"


class RedactSecrets(logging.Filter):
    """Rewrites the request target of uvicorn's access records; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > PATH_ARG and isinstance(args[PATH_ARG], str):
            record.args = (*args[:PATH_ARG], redact_query(args[PATH_ARG]), *args[PATH_ARG + 1 :])
        return True


# What a credential looks like wherever it may end up in a message: a query or form
# parameter that carries one, an Authorization header's value, the secret of a v2 token.
_CREDENTIAL_TEXT = (
    (
        re.compile(r"((?:api_token|reader_tokens)(?:\[\]|%5B%5D)?=)[^&\s\"']+", re.IGNORECASE),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"\b((?:Bearer|OAuth2)\s+)[^\s\"',]+", re.IGNORECASE), rf"\1{REDACTED}"),
    (re.compile(r"(v2/[a-z0-9]{5}-gj3su-[a-z0-9]{15}/)[^\s/\"'&,]+"), rf"\1{REDACTED}"),
)


def scrub_credentials(text: str) -> str:
    for pattern, replacement in _CREDENTIAL_TEXT:
        text = pattern.sub(replacement, text)
    return text


class ScrubCredentials(logging.Filter):
    """On every handler: whatever a record says (a library's message and its arguments,
    an exception's text), credentials in it are replaced before it is written. A second
    line behind each component never putting a secret in a message; never drops a
    record, and keeps its arguments' shape (uvicorn's access formatter unpacks them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = scrub_credentials(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_scrub_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _scrub_arg(arg) for key, arg in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub_credentials(record.exc_text)
        return True


def _scrub_arg(arg: Any) -> Any:
    if arg is None or isinstance(arg, bool | int | float):
        return arg
    text = arg if isinstance(arg, str) else str(arg)
    scrubbed = scrub_credentials(text)
    return arg if scrubbed == text else scrubbed
