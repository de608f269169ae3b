"""FastAPI dependencies for a host's routes (kept apart from :mod:`clusterfed.identity`,
which must not import the web framework)."""

from __future__ import annotations

from starlette.requests import Request

from .identity import Identity, get_identity


async def foreign_identity(request: Request) -> Identity | None:
    """The accepted foreign identity of the request, or None (a local token, no token)."""
    return get_identity(request)
