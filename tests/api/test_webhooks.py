"""Webhooks: events delivered to a receiver on loopback, HMAC-signed, retried after a failure, logged."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import LiveServer, TinyBase
from tests.helpers import push, register_base


class Receiver:
    """An HTTP endpoint that fails its first request (500) and records every one."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(500 if len(receiver.requests) == 1 else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [headers["X-Lorareg-Event"] for headers, _ in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.server.shutdown()


def test_events_are_signed_retried_and_logged(
    server: LiveServer, receiver: Receiver, tiny_base: TinyBase, adapter_factory, repo: str
) -> None:
    namespace = repo.split("/")[0]
    hook = server.http.post("/api/v1/webhooks", json={"url": receiver.url, "namespace": namespace}).json()
    assert hook["secret"] and hook["events"] == [
        "version.pushed",
        "tag.moved",
        "version.yanked",
        "version.unyanked",
        "job.finished",
        "deployment.changed",
    ]
    register_base(server.http, tiny_base.path)
    assert push(server.http, repo, adapter_factory(seed=81), base=tiny_base.content_digest).status_code == 201
    server.http.post(f"/api/v1/repos/{repo}/versions/%231/yank", json={"reason": "bad"}).raise_for_status()

    deadline = time.monotonic() + 30
    while {"version.pushed", "tag.moved", "version.yanked"} - set(receiver.events()[1:]):
        assert time.monotonic() < deadline, receiver.events()
        time.sleep(0.2)

    for headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(hook["secret"].encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Lorareg-Signature"], expected)
    payloads = [json.loads(body) for _, body in receiver.requests]
    pushed = next(p for p in payloads if p["event"] == "version.pushed")
    assert pushed["repo"] == repo and pushed["number"] == 1
    moves = [p for p in payloads if p["event"] == "tag.moved"]
    assert {(m["tag"], m["old"] is None) for m in moves} >= {("latest", True)}

    log = server.http.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()
    assert all(d["status"] == "delivered" for d in log)
    first = min(log, key=lambda d: d["id"])
    assert first["attempts"] == 2 and first["last_status"] == 200  # a 500, then delivered on the retry


def test_other_namespaces_and_bad_urls(server: LiveServer, receiver: Receiver, repo: str) -> None:
    refused = server.http.post("/api/v1/webhooks", json={"url": "ftp://example/hook"})
    assert refused.status_code == 400 and "http(s)" in refused.json()["error"]["message"]
    unknown = server.http.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["repo.burned"]})
    assert unknown.status_code == 400 and "repo.burned" in unknown.json()["error"]["message"]
    hook = server.http.post("/api/v1/webhooks", json={"url": receiver.url, "namespace": "nobody-here"}).json()
    assert server.http.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json() == []
    assert server.http.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 204
    assert server.http.get(f"/api/v1/webhooks/{hook['id']}/deliveries").status_code == 404
