"""``POST /federation/v1/revocations``: an issuer telling us one of its tokens is revoked
(docs/protocol.md#revocation). Mounted for every host: the answer is 202 with the same
body whatever the notice said, and the token leaves the cache (L2 here, L1 in every
worker) only when the proof matches what is cached."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from clusterfed.service import Federation

from .revocation import NOTICE_PATH

router = APIRouter(tags=["revocation"])


@router.post(NOTICE_PATH, status_code=202)
async def receive(request: Request) -> JSONResponse:
    federation: Federation = request.app.state.federation
    answer = await federation.receive_notice(await request.body())
    return JSONResponse(answer, status_code=202)
