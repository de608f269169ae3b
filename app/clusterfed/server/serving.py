"""How ``clusterfed serve`` runs uvicorn: bounded request heads, an access log without secrets.

- The request line and headers together are capped at ``MAX_HEAD_BYTES`` (64 KiB), so a
  client cannot make the server hold a header of any size before anything checks it.
  uvicorn's httptools protocol (chosen by default when httptools is installed, as
  ``uvicorn[standard]`` does) has no such limit: it read a 100 MB header whole (and
  slowly). h11 has one, ``h11_max_incomplete_event_size``, so ``serve`` pins h11. A head
  over the cap is answered 400 and the connection closed.
- What start-up allocated is frozen out of the cyclic garbage collector's view
  (``freeze_startup_objects``), so a full collection walks only what requests left behind.
- On shutdown an idle keep-alive connection is dropped at once (``IdleClosingH11``):
  closing TLS politely waits for the client's close_notify, which an idle client never
  sends, and uvicorn waited for every such connection (24 s and more) before exiting.
  Requests in flight still finish.
- Query parameters that carry credentials (``api_token``, ``reader_tokens``) are
  redacted from uvicorn's access log line, in every worker process: the filter is part of
  the logging config each worker applies, not something set up in the parent only.
"""

from __future__ import annotations

import copy
import gc
import logging
from typing import Any
from urllib.parse import unquote_plus

from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEAD_BYTES = 64 * 1024
SECRET_PARAMS = frozenset({"api_token", "reader_tokens"})
REDACTED = "[REDACTED]"
PATH_ARG = 2  # uvicorn's access record: (client, method, path?query, http version, status)


def uvicorn_options() -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` that every ``serve`` passes."""
    return {
        "http": IdleClosingH11,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "log_config": log_config(),
    }


class IdleClosingH11(H11Protocol):
    """uvicorn's h11 protocol, except that shutdown aborts a connection with nothing in
    flight instead of closing it gracefully (see the module docstring)."""

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.transport.abort()
        else:
            super().shutdown()


def freeze_startup_objects() -> None:
    """Collect once, then freeze everything alive (modules, the app, its routes, models and
    schemas): the collector never walks it again. A worker's full collections otherwise
    walked all of it each time, pausing every request in flight for up to 80 ms.

    For the process that serves, once the app is built: a process that builds many apps
    (a test suite) would keep the garbage of each one forever."""
    gc.collect()
    gc.freeze()


def log_config() -> dict[str, Any]:
    """uvicorn's own logging config, with :class:`RedactSecrets` on the access logger."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": f"{__name__}.RedactSecrets"}
    config["loggers"]["uvicorn.access"]["filters"] = ["redact_secrets"]
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
