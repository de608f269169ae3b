"""How ``clusterfed serve`` runs uvicorn: bounded request heads.

- The request line and headers together are capped at ``MAX_HEAD_BYTES`` (64 KiB), so a
  client cannot make the server hold a header of any size before anything checks it.
  uvicorn's httptools protocol (chosen by default when httptools is installed, as
  ``uvicorn[standard]`` does) has no such limit: it read a 100 MB header whole (and
  slowly). h11 has one, ``h11_max_incomplete_event_size``, so ``serve`` pins h11. A head
  over the cap is answered 400 and the connection closed.
"""

from __future__ import annotations

from typing import Any

MAX_HEAD_BYTES = 64 * 1024


def uvicorn_options() -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` that every ``serve`` passes."""
    return {"http": "h11", "h11_max_incomplete_event_size": MAX_HEAD_BYTES}
