"""Bad input never reaches a 500: error headers stay valid whatever a message echoes, bodies are bounded
(by LOREG_MAX_JSON_BODY, except blob uploads), and every list, string and free-form field of a request
body has a maximum."""

from __future__ import annotations

import hashlib
import http.client
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from registry.config import Settings
from registry.db import migrate
from tests.conftest import LiveServer, TinyBase, start_server
from tests.helpers import push, register_base

HOSTILE = ["\x00", "\x7f", "é", "💥", "\r\nX-Injected: 1", "\x1b[31m\x01\x1f"]
DIGEST = "sha256:" + "0" * 64
PUBLIC_URL = "http://93.184.215.14/hook"  # a public address: refused for no other reason


@pytest.fixture(scope="module")
def small_server() -> Iterator[LiveServer]:
    """A server whose JSON bodies may be at most 64 KiB (blob uploads still up to 1 MiB)."""
    home = Path(tempfile.mkdtemp(prefix="lorareg-limits-"))
    settings = Settings(
        home=home, database_url=f"sqlite:///{home / 'lorareg.db'}", max_json_body=65536, max_blob_size=1024**2
    )
    migrate.upgrade(settings.resolved_database_url)
    for url in start_server(settings):
        with httpx.Client(base_url=url, timeout=30) as http:
            yield LiveServer(url=url, settings=settings, http=http)


def assert_header_carries(response: httpx.Response, echoed: str) -> None:
    """The error's header is printable ASCII that unescapes to the JSON message, which echoes ``echoed``."""
    assert 400 <= response.status_code < 500, response.text
    header = response.headers["X-Error-Message"]
    assert header.isascii() and header.isprintable(), header
    message = response.json()["error"]["message"]
    assert echoed in message
    assert header.encode().decode("unicode_escape") == message.strip(" ")


@pytest.mark.parametrize("text", HOSTILE, ids=ascii)
def test_a_message_echoing_any_character_keeps_valid_headers(server: LiveServer, text: str) -> None:
    key = f"w{text}"
    manifest = {"weights": {key: {"dtype": key}}, "files": {}, "content_digest": DIGEST}

    response = server.http.post("/api/v1/bases", json={"name": "base", "manifest": manifest})

    assert response.status_code == 422
    assert_header_carries(response, key)


@pytest.mark.parametrize("text", HOSTILE, ids=ascii)
def test_hostile_url_segments_and_fields_get_4xx(server: LiveServer, text: str) -> None:
    for method, path in [
        ("GET", f"/api/v1/repos/acme/{quote(text)}"),
        ("HEAD", f"/hf/acme/{quote(text)}/resolve/main/f"),
    ]:
        response = server.http.request(method, path)
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["X-Error-Message"].isprintable()
    tag = server.http.put(f"/api/v1/repos/acme/x/tags/{quote(text)}", json={"target": text})
    assert 400 <= tag.status_code < 500 and tag.headers["X-Error-Message"].isprintable()
    hook = server.http.post("/api/v1/webhooks", json={"url": PUBLIC_URL, "events": [text]})
    assert hook.status_code in (400, 422)
    assert_header_carries(hook, text if text != "\x00" else "NUL")


def opened(server: LiveServer, path: str, **headers: str) -> http.client.HTTPConnection:
    """A POST to ``path`` whose headers are sent and whose body is not (the test sends what it wants)."""
    connection = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=30)
    connection.putrequest("POST", path)
    for name, value in {"Content-Type": "application/json", **headers}.items():
        connection.putheader(name, value)
    connection.endheaders()
    return connection


def refusal(connection: http.client.HTTPConnection) -> dict[str, Any]:
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 413, body
    assert response.headers["X-Error-Code"] == body["error"]["code"] == "too_large"
    return body["error"]


def test_oversize_json_body_is_refused_by_its_length_before_it_is_sent(server: LiveServer) -> None:
    limit = server.settings.max_json_body
    assert limit == 8 * 1024**2  # the default

    error = refusal(opened(server, "/api/v1/repos", **{"Content-Length": str(limit + 1)}))

    assert f"{limit + 1} bytes exceeds the limit of {limit} bytes" in error["message"]
    assert "LOREG_MAX_JSON_BODY" in error["message"]


def test_oversize_streamed_body_is_refused_as_it_arrives(small_server: LiveServer) -> None:
    connection = opened(small_server, "/api/v1/repos", **{"Transfer-Encoding": "chunked"})
    for chunk in [b'{"namespace": "acme", "name": "', *[b"x" * 8192] * 8]:  # just past 64 KiB, unfinished
        connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    error = refusal(connection)

    assert "at least" in error["message"] and "limit of 65536 bytes" in error["message"]
    assert small_server.http.get("/api/v1/repos").json() == []


def test_bodies_under_the_limit_and_blob_uploads_pass(small_server: LiveServer) -> None:
    created = small_server.http.post("/api/v1/repos", json={"namespace": "acme", "name": "ok"})
    assert created.status_code == 201, created.text
    blob = b"b" * (small_server.settings.max_json_body * 4)  # over max_json_body, under max_blob_size
    digest = hashlib.sha256(blob).hexdigest()
    uploaded = small_server.http.put(f"/api/v1/blobs/sha256:{digest}", content=blob)
    assert uploaded.status_code == 201, uploaded.text


def _push(**fields: Any) -> tuple[str, str, Any]:
    return "POST", "/api/v1/repos/acme/bounded/versions", {"files": [], **fields}


def _base(**manifest: Any) -> tuple[str, str, Any]:
    fields = {"weights": {}, "files": {}, "content_digest": DIGEST, **manifest}
    return "POST", "/api/v1/bases", {"name": "b", "manifest": fields}


def _deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"k": value}
    return value


FILE = {"path": "a", "digest": DIGEST, "size": 1}
BOUNDED = {
    "push files": (_push(files=[FILE] * 1001), "files: List should have at most 1000 items"),
    "push tags": (_push(tags=["t"] * 65), "tags: List should have at most 64 items"),
    "push parents": (_push(parents=["acme/p#1"] * 65), "parents: List should have at most 64 items"),
    "push tag length": (_push(tags=["t" * 257]), "tags.0: String should have at most 256 characters"),
    "push kind": (_push(kind="k" * 33), "kind: String should have at most 32 characters"),
    "push base": (_push(base="s" * 257), "base: String should have at most 256 characters"),
    "push provenance size": (_push(provenance={"notes": "n" * 65536}), "at most 65536 bytes as JSON"),
    "push provenance depth": (_push(provenance=_deep(40)), "nested more than 32 levels deep"),
    "push NUL": (_push(message="a\x00b"), "body.message contains a NUL character"),
    "file path": (_push(files=[{**FILE, "path": "p" * 1025}]), "at most 1024 characters"),
    "file digest": (_push(files=[{**FILE, "digest": "d" * 129}]), "at most 128 characters"),
    "file size": (_push(files=[{**FILE, "size": 2**63}]), "less than or equal to 9223372036854775807"),
    "blob batch": (
        ("POST", "/api/v1/blobs/batch", {"blobs": [{"digest": DIGEST, "size": 1}] * 1001}),
        "blobs: List should have at most 1000 items",
    ),
    "base files": (
        _base(files={f"f{i}": "x" for i in range(10_001)}),
        "files: Dictionary should have at most 10000 items",
    ),
    "weight shape": (
        _base(weights={"w": {"shape": [1] * 17, "dtype": "F32"}}),
        "shape: List should have at most 16 items",
    ),
    "base stored files": (
        ("POST", "/api/v1/bases", {"name": "b", "manifest": _base()[2]["manifest"], "files": [FILE] * 1001}),
        "files: List should have at most 1000 items",
    ),
    "repo name": (
        ("POST", "/api/v1/repos", {"namespace": "acme", "name": "n" * 257}),
        "name: String should have at most 256 characters",
    ),
    "tag target": (
        ("PUT", "/api/v1/repos/acme/x/tags/t", {"target": "t" * 513}),
        "target: String should have at most 512 characters",
    ),
    "token namespaces": (
        ("POST", "/api/v1/tokens", {"name": "t", "scope": "read", "namespaces": ["n"] * 257}),
        "namespaces: List should have at most 256 items",
    ),
    "token lifetime": (
        ("POST", "/api/v1/tokens", {"name": "t", "scope": "read", "expires_in": 10**12}),
        "expires_in: Input should be less than or equal to",
    ),
    "job inputs": (
        ("POST", "/api/v1/jobs", {"kind": "merge", "inputs": ["acme/x#1"] * 101}),
        "inputs: List should have at most 100 items",
    ),
    "job params": (
        ("POST", "/api/v1/jobs", {"kind": "merge", "inputs": ["a/b#1"], "params": {"x": "y" * 65536}}),
        "at most 65536 bytes as JSON",
    ),
    "resolve ref": (
        ("POST", "/api/v1/resolve", {"refs": ["r" * 513]}),
        "refs.0: String should have at most 512 characters",
    ),
    "webhook events": (
        ("POST", "/api/v1/webhooks", {"url": PUBLIC_URL, "events": ["tag.moved"] * 17}),
        "events: List should have at most 16 items",
    ),
    "webhook namespace": (
        ("POST", "/api/v1/webhooks", {"url": PUBLIC_URL, "namespace": "n" * 257}),
        "namespace: String should have at most 256 characters",
    ),
}


@pytest.mark.parametrize("case", BOUNDED.values(), ids=BOUNDED.keys())
def test_every_input_field_is_bounded(server: LiveServer, case: tuple[tuple[str, str, Any], str]) -> None:
    (method, path, body), says = case

    response = server.http.request(method, path, json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert says in response.json()["error"]["message"]


def test_a_base_manifest_has_at_most_200000_weights(server: LiveServer) -> None:
    method, path, body = _base(weights={f"w{i}": {"shape": [], "dtype": ""} for i in range(200_001)})

    response = server.http.request(method, path, json=body)

    assert response.status_code == 422, response.text
    assert "weights: Dictionary should have at most 200000 items" in response.json()["error"]["message"]


def test_non_finite_numbers_in_free_form_fields_are_refused(server: LiveServer) -> None:
    body = b'{"files": [], "provenance": {"loss": NaN}}'
    response = server.http.post(
        "/api/v1/repos/acme/nan/versions", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert "provenance" in response.json()["error"]["message"]
    assert "not storable as JSON" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/audit",
        "/api/v1/bases/{base}/adapters",
        "/api/v1/repos/{repo}/labels/history",
    ],
)
def test_a_cursor_past_what_a_column_holds_is_a_400(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str, path: str
) -> None:
    register_base(server.http, tiny_base.path)
    assert push(server.http, repo, adapter_factory(), base=tiny_base.content_digest).status_code in (200, 201)
    url = path.format(base=tiny_base.content_digest, repo=repo)
    for cursor in ("2336616259", f"{repo}#2336616259", "0"):
        answer = server.http.get(url, params={"cursor": cursor})
        assert answer.status_code == 400, (cursor, answer.text)
        assert "invalid cursor" in answer.json()["error"]["message"]
