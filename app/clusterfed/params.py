"""Request parameters as Arvados software sends them: the one place that reads them.

Arvados clients put parameters in three places, and every endpoint and the router must
read them the same way:

- the query string, each value JSON-encoded where it is not a plain string
  (``filters=[...]``, ``select=[...]``, ``limit=100``, ``cluster_id=``);
- an ``application/x-www-form-urlencoded`` body with the same encoding: an Arvados
  controller sends every create and update this way (``sdk/go/arvados/client.go``
  ``RequestAndDecodeContext``: ``cluster_id=&collection={"name":...}``);
- a JSON body, the object's attributes under the resource's singular name, possibly
  beside other parameters at the top level (``{"collection": {...}, "cluster_id": ""}``).

A ``POST`` with ``X-Http-Method-Override: GET`` (or ``_method=GET``) is a GET whose
parameters are in the body: controllers send GETs with 1000 bytes of parameters this
way, googleapiclient (under the Python SDK) any GET whose URL passes 2048 characters.

:func:`canonical_request` turns all of these into one shape, the one the endpoints and
the router read: parameters in the query string, attributes as a JSON body. It is pure;
``wire.ArvadosRequests`` applies it to each request. The other helpers answer the
questions the router asks of any request: its query, and whether it must be served here
(``Via: ... arvados-controller``, ``forwarded_for``, ``bypass_federation``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import Scope

from .errors import FederationError
from .jsonbody import loads_client_json

API_PREFIX = "/arvados/v1/"
FORM_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
OVERRIDE_HEADER = b"x-http-method-override"
OVERRIDE_PARAM = "_method"
OVERRIDABLE = frozenset({"GET", "HEAD"})
# An Arvados client sends the parameters of any method but GET/HEAD as a form body.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What Arvados controllers send with every request they forward (lib/controller/
# federation/conn.go), and what clusterfed used to send alone: either means "a peer
# forwarded this; serve it here or nowhere".
VIA_HEADER = b"via"
CONTROLLER_VIA = "arvados-controller"
LEGACY_HOP_HEADER = b"x-clusterfed-via"
# Parameters whose empty value means "not given": Arvados's ListOptions and CreateOptions
# always carry cluster_id, and count is "" unless set.
EMPTY_MEANS_ABSENT = frozenset({"cluster_id", "count"})
TRUE_WORDS = frozenset({"true", "1", "yes", "t"})

QueryItems = list[tuple[str, str]]


class BadRequest(FederationError):
    status_code = 400


@dataclass(frozen=True, slots=True)
class Canonical:
    """A request in the one shape the endpoints read."""

    method: str
    query: QueryItems
    body: bytes  # JSON (or empty), unless the request's body was left as it came
    content_type: str | None  # None: the body and its headers are the original ones


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def query_items(scope: Scope) -> QueryItems:
    return parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)


def is_true(value: str | None) -> bool:
    """An Arvados boolean parameter: ``true`` (or JSON ``true``) and the like; else false."""
    return value is not None and value.strip().lower() in TRUE_WORDS


def forwarded_by_peer(scope: Scope) -> bool:
    via = header(scope, VIA_HEADER)
    return (via is not None and CONTROLLER_VIA in via) or (
        header(scope, LEGACY_HOP_HEADER) is not None
    )


def serve_locally(scope: Scope, query: QueryItems | None = None) -> bool:
    """Must this request be answered by this cluster alone, never forwarded or fanned out?

    Yes when a peer forwarded it (``Via``), or when it says ``forwarded_for`` (Arvados's
    mark on the calls a fan-out makes) or ``bypass_federation``.
    """
    if forwarded_by_peer(scope):
        return True
    params = dict(query if query is not None else query_items(scope))
    return bool(params.get("forwarded_for")) or is_true(params.get("bypass_federation"))


def resource_key(path: str) -> str | None:
    """The key Arvados wraps a resource's attributes in: ``collection`` for collections."""
    if not path.startswith(API_PREFIX):
        return None
    plural = path[len(API_PREFIX) :].split("/", 1)[0]
    return plural.removesuffix("s") or None


def decode_form(body: bytes) -> QueryItems:
    """The fields of a form body; :class:`BadRequest` for one that is not a form."""
    try:
        text = body.decode("ascii")
        return parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        reason = "it is not ASCII" if isinstance(exc, UnicodeDecodeError) else exc
        raise BadRequest(f"malformed form body: {reason}") from None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _param_text(value: Any) -> str | None:
    """A JSON body's top-level parameter in the query's encoding (None: leave it out)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _attributes(key: str, text: str) -> Any:
    try:
        value = loads_client_json(text)
    except ValueError as exc:
        raise BadRequest(f"{key}: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{key} must be a JSON object")
    return value


def _clean(query: QueryItems) -> QueryItems:
    return [
        (key, value)
        for key, value in query
        if key != OVERRIDE_PARAM and not (key in EMPTY_MEANS_ABSENT and value == "")
    ]


def override_of(method: str, override: str | None, query: QueryItems) -> str | None:
    """The method a POST asks to be treated as, if any (GET or HEAD only: else 400)."""
    if method != "POST":
        return None
    asked = override or dict(query).get(OVERRIDE_PARAM)
    if not asked:
        return None
    if asked.strip().upper() not in OVERRIDABLE:
        raise BadRequest(
            f"method override {asked[:20]!r} is not allowed: only GET and HEAD may be sent "
            "as POST with X-Http-Method-Override"
        )
    return asked.strip().upper()


def needs_body(scope: Scope) -> bool:
    """Whether :func:`canonical_request` must see this request's body."""
    return scope["method"] in BODY_METHODS and scope["path"].startswith(API_PREFIX)


def canonical_request(
    *,
    method: str,
    path: str,
    query: QueryItems,
    content_type: str | None,
    override: str | None,
    body: bytes,
) -> Canonical | None:
    """The request in canonical shape, or None when it already is in it.

    Raises :class:`BadRequest` for a form body that is not one, an override to anything
    but GET/HEAD, or a JSON-encoded attribute object that does not parse.
    """
    media = _media_type(content_type)
    form = decode_form(body) if media == FORM_TYPE and body else []
    target = override_of(method, override, query + form)
    if target is not None:
        # A GET in a POST: its parameters are the query's and the form's, and it has no body.
        return Canonical(target, _clean(query + form), b"", JSON_TYPE)
    cleaned = _clean(query)
    key = resource_key(path)
    if media == FORM_TYPE:
        # The attributes are one JSON-encoded field named after the resource.
        wrapped = [value for name, value in form if name == key]
        others = [(name, value) for name, value in form if name != key]
        document = json.dumps({key: _attributes(key, wrapped[-1])}).encode() if wrapped else b""
        return Canonical(method, cleaned + _clean(others), document, JSON_TYPE)
    if key is not None and body and media in ("", JSON_TYPE):
        moved = _top_level_params(body, key)
        if moved is not None:
            attributes, params = moved
            return Canonical(method, cleaned + _clean(params), attributes, JSON_TYPE)
    if cleaned != query:
        return Canonical(method, cleaned, body, None)
    return None


def _top_level_params(body: bytes, key: str) -> tuple[bytes, QueryItems] | None:
    """A JSON body's parameters beside the wrapped attributes, moved out of the body.

    None when there are none (the body is then left exactly as it came): a bare body,
    one holding only ``{key: {...}}``, or one that is not JSON, which the endpoint refuses
    in its own words.
    """
    try:
        document = loads_client_json(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get(key), dict):
        return None
    if len(document) == 1:
        return None
    params = [
        (name, text)
        for name, value in document.items()
        if name != key and (text := _param_text(value)) is not None
    ]
    return json.dumps({key: document[key]}).encode(), params


def encode_query(query: QueryItems) -> bytes:
    return urlencode(query).encode("latin-1")
