"""``params.canonical_request``: every shape Arvados software sends, in the one shape read.

Pure function tests; the same shapes on real servers are in test_arvados_wire.py.
"""

from __future__ import annotations

import json

import pytest
from clusterfed.params import BadRequest, Canonical, canonical_request

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
PATH = "/arvados/v1/collections"


def canonical(
    body: bytes = b"",
    *,
    method: str = "POST",
    query: list[tuple[str, str]] | None = None,
    content_type: str | None = FORM,
    override: str | None = None,
    path: str = PATH,
) -> Canonical | None:
    return canonical_request(
        method=method,
        path=path,
        query=query or [],
        content_type=content_type,
        override=override,
        body=body,
    )


def test_a_controllers_create_becomes_query_and_json_body() -> None:
    # client.go RequestAndDecodeContext: POST, CreateOptions as a form body.
    result = canonical(b"cluster_id=&collection=%7B%22name%22%3A%22x%22%7D&ensure_unique_name=true")
    wrapped = b'{"collection": {"name": "x"}}'
    assert result == Canonical("POST", [("ensure_unique_name", "true")], wrapped, JSON)


def test_an_override_is_a_get_with_the_forms_parameters() -> None:
    # googleapiclient HttpRequest.execute: the query moved into the body of a POST.
    result = canonical(b"filters=%5B%5D&limit=5", override="GET", query=[("alt", "json")])
    query = [("alt", "json"), ("filters", "[]"), ("limit", "5")]
    assert result == Canonical("GET", query, b"", JSON)
    assert canonical(b"_method=GET&count=none") == Canonical("GET", [("count", "none")], b"", JSON)


def test_json_bodies_with_parameters_beside_the_attributes() -> None:
    # lib/controller/router/request.go loadRequestParams: top-level keys are parameters.
    body = json.dumps({"collection": {"name": "x"}, "cluster_id": "", "ensure_unique_name": True})
    result = canonical(body.encode(), content_type="application/json")
    assert result is not None
    assert result.query == [("ensure_unique_name", "true")]
    assert json.loads(result.body) == {"collection": {"name": "x"}}


@pytest.mark.parametrize(
    "body",
    [b'{"collection": {"name": "x"}}', b'{"name": "bare", "cluster_id": "c97qk"}', b"{oops"],
)
def test_bodies_already_in_shape_are_left_as_they_came(body: bytes) -> None:
    assert canonical(body, content_type="application/json") is None


def test_an_empty_cluster_id_in_the_query_is_no_cluster_id() -> None:
    result = canonical(method="GET", query=[("cluster_id", ""), ("limit", "1")], content_type=None)
    assert result == Canonical("GET", [("limit", "1")], b"", None)
    assert canonical(method="GET", query=[("limit", "1")], content_type=None) is None


@pytest.mark.parametrize(
    ("body", "override", "words"),
    [
        (b"a&&b", None, "malformed form body"),
        ("collection=é".encode(), None, "malformed form body"),
        (b"collection=%7B", None, "collection"),
        (b"collection=1", None, "JSON object"),
        (b"", "DELETE", "override"),
        (b"_method=PATCH", None, "override"),
    ],
)
def test_what_cannot_be_read_is_a_400(body: bytes, override: str | None, words: str) -> None:
    with pytest.raises(BadRequest) as raised:
        canonical(body, override=override)
    assert raised.value.status_code == 400 and words in raised.value.message
