"""The admin page: cached identities, purge buttons, remote clusters (server-rendered).

A browser cannot set an Authorization header, so the login form takes the credential
(the ManagementToken or an admin's token) once and the page keeps a session in an
HttpOnly, SameSite=Strict cookie scoped to this page's path (Secure over https): a signed,
expiring session that never holds the credential and whose admin is re-checked on every
request (a revoked token ends it at once); see ``admin_session``. Every POST carries a
CSRF token bound to the session (before login, to a random nonce in its own cookie), so a
value an attacker plants in a cookie is worth nothing. Login attempts are throttled per
client address (``login_throttle``: 429 with Retry-After). A request with an
Authorization header is judged by that header, as the API does.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clusterfed.errors import FederationError, Forbidden, Unauthorized
from clusterfed.service import Federation

from . import token_cache
from .auth import Admin, admin_for_credential, admin_for_session, require_admin
from .deps import FederationDep, SessionDep
from .login_throttle import LoginThrottle
from .outbox import outbox_summary
from .schemas import CLUSTER_ID_PATTERN, USER_UUID_PATTERN
from .session import AdminSession, csrf_matches, csrf_token, new_session, read_session
from .token_cache import InvalidPurge, State

log = logging.getLogger("clusterfed.admin")

PAGE = "/federation/admin"
SESSION_COOKIE = CREDENTIAL_COOKIE = "clusterfed_admin"  # a session, never a credential
CSRF_COOKIE = "clusterfed_csrf"  # the login form's nonce, its CSRF token's binding
NONCE_CHARS = 43
PAGE_SIZE = 200
MAX_FORM_BYTES = 16_384

router = APIRouter(prefix=PAGE, include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")


class PageFilters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    cluster_id: str | None = Field(default=None, pattern=CLUSTER_ID_PATTERN)
    user_uuid: str | None = Field(default=None, pattern=USER_UUID_PATTERN)
    state: State | None = None
    offset: int = Field(default=0, ge=0, le=2**31 - 1)


def _login_nonce(request: Request) -> str:
    existing = request.cookies.get(CSRF_COOKIE, "")
    return existing if len(existing) == NONCE_CHARS else secrets.token_urlsafe(32)


def _set_cookie(
    request: Request, response: Response, name: str, value: str, *, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PAGE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _delete_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path=PAGE, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def _render(
    request: Request,
    config: Any,
    template: str,
    context: dict[str, Any],
    *,
    session: AdminSession | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    nonce = None if session else _login_nonce(request)
    csrf = csrf_token(config, session.sid) if session else csrf_token(config, f"login\0{nonce}")
    response = templates.TemplateResponse(
        request, template, {"page": PAGE, "csrf": csrf, **context}, status_code=status_code
    )
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    if nonce is not None:
        _set_cookie(request, response, CSRF_COOKIE, nonce)
    return response


def _login_page(
    request: Request,
    config: Any,
    error: FederationError,
    *,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    # A first visit (no credential, no session) is not an error: just the form. The link
    # back to the page is for a signed-in admin whose action failed (a stale form, say).
    first_visit = (
        isinstance(error, Unauthorized)
        and not request.headers.get("authorization")
        and SESSION_COOKIE not in request.cookies
        and request.method == "GET"
    )
    signed_in = SESSION_COOKIE in request.cookies and not isinstance(error, Unauthorized)
    response = _render(
        request,
        config,
        "admin_login.html",
        {"error": None if first_visit else error.message, "signed_in": signed_in},
        status_code=error.status_code,
        headers=headers,
    )
    if isinstance(error, Unauthorized) and SESSION_COOKIE in request.cookies:
        _delete_cookie(request, response, SESSION_COOKIE)  # it no longer works
    return response


async def _authorize(
    request: Request, session: Any, federation: Federation
) -> tuple[Admin, AdminSession | None]:
    """The admin, and the page session it came from (None: the Authorization header)."""
    if request.headers.get("authorization"):
        return await require_admin(request, federation), None
    cookie = request.cookies.get(SESSION_COOKIE)
    admin_session = read_session(federation.config, cookie) if cookie else None
    if admin_session is None:
        raise Unauthorized("log in with the ManagementToken or an admin's token")
    admin = await admin_for_session(
        admin_session, request=request, session=session, federation=federation
    )
    return admin, admin_session


async def _authorized_form(
    request: Request, session: Any, federation: Federation
) -> tuple[Admin, dict[str, str]]:
    """The admin and the posted form of a page action; a form posted with the page's
    session must carry that session's CSRF token (the Authorization header needs none)."""
    admin, admin_session = await _authorize(request, session, federation)
    form = await _form(request)
    if admin_session is not None:
        _check_csrf(federation.config, admin_session.sid, form)
    return admin, form


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


def _check_csrf(config: Any, binding: str, form: dict[str, str]) -> None:
    if not csrf_matches(config, binding, form.get("csrf", "")):
        raise Forbidden("the form has expired; reload the page and try again")


def _throttle(request: Request, federation: Federation) -> LoginThrottle:
    state = request.app.state
    if getattr(state, "admin_login_throttle", None) is None:
        state.admin_login_throttle = LoginThrottle(budget=federation.budget)
    return state.admin_login_throttle


@router.get("", response_class=HTMLResponse)
async def admin_page(request: Request, session: SessionDep, federation: FederationDep) -> Response:
    config = federation.config
    try:
        admin, admin_session = await _authorize(request, session, federation)
    except FederationError as exc:
        return _login_page(request, config, exc)
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
        "remotes": federation.remote_status(),
        "counts": counts,
        "outbox": outbox,
        "error": error,
        "purged": int(purged) if purged.isdigit() and len(purged) < 10 else None,
    }
    return _render(
        request, config, "admin.html", context, session=admin_session, status_code=status
    )


@router.post("/login")
async def login(request: Request, session: SessionDep, federation: FederationDep) -> Response:
    config = federation.config
    client = request.client.host if request.client else "unknown"
    try:
        wait = await _throttle(request, federation).acquire(client)
        if wait:
            error = FederationError("too many login attempts; try again shortly", status_code=429)
            return _login_page(request, config, error, headers={"Retry-After": str(wait)})
        form = await _form(request)
        credential = form.get("credential", "").strip()
        if not credential:
            raise Unauthorized("log in with the ManagementToken or an admin's token")
        _check_csrf(config, f"login\0{request.cookies.get(CSRF_COOKIE, '')}", form)
        admin = await admin_for_credential(credential, request=request, federation=federation)
    except FederationError as exc:
        if exc.status_code in (401, 403):
            log.info("admin page login refused client=%s status=%d", client, exc.status_code)
        return _login_page(request, config, exc)
    log.info("admin page login by=%s", admin.label)
    now = time.time()
    admin_session, cookie = new_session(
        config,
        kind=admin.kind,
        user_uuid=admin.user_uuid,
        token_uuid=admin.token_uuid,
        not_after=admin.expires_at.timestamp() if admin.expires_at else None,
        now=now,
    )
    response = RedirectResponse(PAGE, status_code=303)
    max_age = max(1, admin_session.expires_at - int(now))
    _set_cookie(request, response, SESSION_COOKIE, cookie, max_age=max_age)
    _delete_cookie(request, response, CSRF_COOKIE)  # the login nonce has served
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep, federation: FederationDep) -> Response:
    config = federation.config
    try:
        await _authorized_form(request, session, federation)
    except FederationError as exc:
        return _login_page(request, config, exc)
    response = RedirectResponse(PAGE, status_code=303)
    _delete_cookie(request, response, SESSION_COOKIE)
    return response


@router.post("/purge")
async def purge(request: Request, session: SessionDep, federation: FederationDep) -> Response:
    config = federation.config
    try:
        admin, form = await _authorized_form(request, session, federation)
        kind, value = form.get("kind", ""), form.get("value") or None
        try:
            token_cache.check_purge_target(kind, value)
        except InvalidPurge as exc:
            raise FederationError(str(exc), status_code=422) from None
        purged = await token_cache.purge(
            session,
            kind=kind,  # type: ignore[arg-type]  # checked just above
            value=value,
            federation=federation,
        )
    except FederationError as exc:
        return _login_page(request, config, exc)
    log.info("token cache purge kind=%s value=%s purged=%d by=%s", kind, value, purged, admin.label)
    return RedirectResponse(f"{PAGE}?purged={purged}", status_code=303)
