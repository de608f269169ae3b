"""The admin page: cached identities, purge buttons, remote clusters (server-rendered).

A browser cannot set an Authorization header, so the login form takes the credential
(the ManagementToken or an admin's token) once and keeps it in an HttpOnly,
SameSite=Strict cookie scoped to this page's path; the credential is re-checked on
every request (a revoked token stops working at once) and never rendered back. Every
POST carries a CSRF token that must match a second cookie (double submit): SameSite
already keeps other sites' forms out, the token also covers old browsers and login.
A request with an Authorization header is judged by that header, as the API does.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.federation.errors import FederationError, Forbidden, Unauthorized

from ..admin_auth import Admin, admin_for_credential, require_admin
from ..deps import ConfigDep, SessionDep
from ..services import token_cache
from ..services.revocation import outbox_summary
from ..services.token_cache import InvalidPurge, State
from ..token_cache_schemas import CLUSTER_ID_PATTERN, USER_UUID_PATTERN

log = logging.getLogger("clusterfed.admin")

PAGE = "/federation/admin"
CREDENTIAL_COOKIE = "clusterfed_admin"
CSRF_COOKIE = "clusterfed_csrf"
PAGE_SIZE = 200
MAX_FORM_BYTES = 16_384

router = APIRouter(prefix=PAGE, include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")


class PageFilters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    cluster_id: str | None = Field(default=None, pattern=CLUSTER_ID_PATTERN)
    user_uuid: str | None = Field(default=None, pattern=USER_UUID_PATTERN)
    state: State | None = None
    offset: int = Field(default=0, ge=0, le=2**31 - 1)


def _csrf_token(request: Request) -> str:
    existing = request.cookies.get(CSRF_COOKIE, "")
    return existing if len(existing) == 43 else secrets.token_urlsafe(32)


def _set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=PAGE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _render(
    request: Request, template: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    csrf = _csrf_token(request)
    response = templates.TemplateResponse(
        request, template, {"page": PAGE, "csrf": csrf, **context}, status_code=status_code
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    _set_cookie(request, response, CSRF_COOKIE, csrf)
    return response


def _login_page(request: Request, error: FederationError) -> HTMLResponse:
    response = _render(
        request, "admin_login.html", {"error": error.message}, status_code=error.status_code
    )
    if isinstance(error, Unauthorized) and CREDENTIAL_COOKIE in request.cookies:
        response.delete_cookie(CREDENTIAL_COOKIE, path=PAGE)  # it no longer works
    return response


async def _authorize(request: Request, session: Any, config: Any) -> tuple[Admin, bool]:
    """The admin, and whether the credential came from the cookie (then CSRF applies)."""
    if request.headers.get("authorization"):
        return await require_admin(request, session, config), False
    credential = request.cookies.get(CREDENTIAL_COOKIE)
    if not credential:
        raise Unauthorized("log in with the ManagementToken or an admin's token")
    admin = await admin_for_credential(credential, request=request, session=session, config=config)
    return admin, True


async def _form(request: Request) -> dict[str, str]:
    # Read in chunks and stop at the cap: the login form needs no credential, so reading
    # the whole body first would let anyone make us buffer whatever they send.
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FederationError("form too large", status_code=413)
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise FederationError("malformed form", status_code=400) from None
    return dict(pairs)


def _check_csrf(request: Request, form: dict[str, str]) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not (cookie and secrets.compare_digest(cookie, form.get("csrf", ""))):
        raise Forbidden("the form has expired; reload the page and try again")


@router.get("", response_class=HTMLResponse)
async def admin_page(request: Request, session: SessionDep, config: ConfigDep) -> Response:
    try:
        admin, _ = await _authorize(request, session, config)
    except FederationError as exc:
        return _login_page(request, exc)
    try:
        # The filter form submits its empty fields too: empty means "any".
        given = {k: v for k, v in request.query_params.items() if v != ""}
        filters = PageFilters.model_validate(given)
        error, status = None, 200
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e.get("loc"))
        filters, error, status = PageFilters(), f"ignored invalid filters: {fields}", 422
    entries, available = await token_cache.list_entries(
        session,
        cluster_id=filters.cluster_id,
        user_uuid=filters.user_uuid,
        state=filters.state,
        limit=PAGE_SIZE,
        offset=filters.offset,
    )
    counts = await token_cache.count_by_cluster(session)
    outbox = await outbox_summary(session)
    purged = request.query_params.get("purged", "")
    context = {
        "admin": admin,
        "cluster_id": config.cluster_id,
        "entries": entries,
        "available": available,
        "filters": filters,
        "states": token_cache.STATES,
        "page_size": PAGE_SIZE,
        "remotes": request.app.state.federation.remote_status(),
        "counts": counts,
        "outbox": outbox,
        "error": error,
        "purged": int(purged) if purged.isdigit() and len(purged) < 10 else None,
    }
    return _render(request, "admin.html", context, status_code=status)


@router.post("/login")
async def login(request: Request, session: SessionDep, config: ConfigDep) -> Response:
    try:
        form = await _form(request)
        credential = form.get("credential", "").strip()
        if not credential:
            raise Unauthorized("log in with the ManagementToken or an admin's token")
        _check_csrf(request, form)
        admin = await admin_for_credential(
            credential, request=request, session=session, config=config
        )
    except FederationError as exc:
        return _login_page(request, exc)
    log.info("admin page login by=%s", admin.label)
    response = RedirectResponse(PAGE, status_code=303)
    _set_cookie(request, response, CREDENTIAL_COOKIE, credential)
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep, config: ConfigDep) -> Response:
    try:
        await _authorize(request, session, config)
        _check_csrf(request, await _form(request))
    except FederationError as exc:
        return _login_page(request, exc)
    response = RedirectResponse(PAGE, status_code=303)
    response.delete_cookie(CREDENTIAL_COOKIE, path=PAGE)
    return response


@router.post("/purge")
async def purge(request: Request, session: SessionDep, config: ConfigDep) -> Response:
    try:
        admin, from_cookie = await _authorize(request, session, config)
        form = await _form(request)
        if from_cookie:
            _check_csrf(request, form)
        kind, value = form.get("kind", ""), form.get("value") or None
        try:
            token_cache.check_purge_target(kind, value)
        except InvalidPurge as exc:
            raise FederationError(str(exc), status_code=422) from None
        purged = await token_cache.purge(
            session,
            kind=kind,  # type: ignore[arg-type]  # checked just above
            value=value,
            federation=request.app.state.federation,
        )
    except FederationError as exc:
        return _login_page(request, exc)
    log.info("token cache purge kind=%s value=%s purged=%d by=%s", kind, value, purged, admin.label)
    return RedirectResponse(f"{PAGE}?purged={purged}", status_code=303)
