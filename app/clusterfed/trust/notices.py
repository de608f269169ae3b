"""``POST /federation/v1/revocations``: an issuer telling us one of its tokens is revoked
(docs/protocol.md#revocation). Mounted for every host: the answer is 202 with the same
body whatever the notice said, and the token leaves the cache (L2 here, L1 in every
worker) only when the proof matches what is cached. Anyone can send one, so notices are
throttled per client address like cold validations (429 with Retry-After; an issuer's
outbox retries)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from clusterfed.service import Federation

from .revocation import NOTICE_PATH
from .throttle import client_address

router = APIRouter(tags=["revocation"])


@router.post(NOTICE_PATH, status_code=202)
async def receive(request: Request) -> JSONResponse:
    federation: Federation = request.app.state.federation
    # Before the body is read: a sender over its budget costs nothing more.
    await federation.admit_notice(client_address(request.scope, federation.trusted_proxies))
    answer = await federation.receive_notice(await request.body())
    return JSONResponse(answer, status_code=202)
