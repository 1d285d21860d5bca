"""Webhooks never call the registry's own network (loopback, link-local, private addresses, or a name
resolving to one, checked again at delivery) unless LOREG_WEBHOOK_ALLOW_PRIVATE=true; what a receiver
answers is logged truncated."""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.config import Settings
from registry.db import migrate
from registry.webhooks import MAX_LOGGED
from tests.conftest import LiveServer, TinyBase, start_server
from tests.helpers import push, register_base

PRIVATE = [
    "http://127.0.0.1/hook",
    "http://127.9.9.9:8080/x",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://[::1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://0.0.0.0/",
    "http://localhost/",
    "http://[::ffff:127.0.0.1]/",
    "http://2130706433/",  # 127.0.0.1 as one number
]
PUBLIC = "93.184.215.14"


@pytest.fixture(scope="module")
def strict_server() -> Iterator[LiveServer]:
    """A server with the default setting: no private webhook targets."""
    home = Path(tempfile.mkdtemp(prefix="lorareg-targets-"))
    settings = Settings(
        home=home, database_url=f"sqlite:///{home / 'lorareg.db'}", webhook_allow_private=False
    )
    assert Settings.model_fields["webhook_allow_private"].default is False  # the default refuses them
    migrate.upgrade(settings.resolved_database_url)
    for url in start_server(settings):
        with httpx.Client(base_url=url, timeout=30) as http:
            yield LiveServer(url=url, settings=settings, http=http)


class Receiver:
    """An HTTP endpoint on loopback answering every POST with ``status`` and ``body``."""

    def __init__(self, status: int = 200, body: bytes = b"") -> None:
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)  # the registry reads only the start of an answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.server.shutdown()


def wait_for_attempt(http: httpx.Client, hook_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        log = http.get(f"/api/v1/webhooks/{hook_id}/deliveries").json()
        if log and log[-1]["attempts"] >= 1:
            return log[-1]
        assert time.monotonic() < deadline, log
        time.sleep(0.2)


@pytest.mark.parametrize("url", PRIVATE)
def test_private_targets_are_refused_by_default(strict_server: LiveServer, url: str) -> None:
    response = strict_server.http.post("/api/v1/webhooks", json={"url": url})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert "private address" in error["message"] and "LOREG_WEBHOOK_ALLOW_PRIVATE=true" in error["message"]
    assert strict_server.http.get("/api/v1/webhooks").json() == []


def test_public_targets_are_accepted_by_default(strict_server: LiveServer) -> None:
    response = strict_server.http.post(
        "/api/v1/webhooks", json={"url": f"https://{PUBLIC}/hook", "namespace": "nobody-here"}
    )
    assert response.status_code == 201, response.text
    assert strict_server.http.delete(f"/api/v1/webhooks/{response.json()['id']}").status_code == 204


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/hook", "http://10.0.0.1/", "http://[::1]/", "http://localhost/"]
)
def test_private_targets_are_accepted_when_allowed(server: LiveServer, url: str) -> None:
    assert server.settings.webhook_allow_private
    response = server.http.post("/api/v1/webhooks", json={"url": url, "namespace": "nobody-here"})
    assert response.status_code == 201, response.text
    assert server.http.delete(f"/api/v1/webhooks/{response.json()['id']}").status_code == 204


def test_a_name_rebound_to_loopback_is_refused_at_delivery(
    strict_server: LiveServer,
    receivers: list[Receiver],
    tiny_base: TinyBase,
    adapter_factory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    answer = {"rebind.example": PUBLIC}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return real(answer.get(host, host), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    namespace = f"t{uuid.uuid4().hex[:8]}"
    url = f"http://rebind.example:{receiver.port}/hook"
    hook = strict_server.http.post("/api/v1/webhooks", json={"url": url, "namespace": namespace})
    assert hook.status_code == 201, hook.text
    answer["rebind.example"] = "127.0.0.1"  # the name now points at the registry's own machine

    register_base(strict_server.http, tiny_base.path)
    pushed = push(strict_server.http, f"{namespace}/a", adapter_factory(), base=tiny_base.content_digest)
    assert pushed.status_code == 201, pushed.text
    attempt = wait_for_attempt(strict_server.http, hook.json()["id"])

    assert attempt["last_status"] is None and "127.0.0.1" in attempt["last_error"]
    assert "LOREG_WEBHOOK_ALLOW_PRIVATE=true" in attempt["last_error"]
    assert receiver.requests == 0


def test_a_huge_error_answer_is_logged_truncated(
    server: LiveServer, receivers: list[Receiver], tiny_base: TinyBase, adapter_factory, repo: str
) -> None:
    receiver = Receiver(status=500, body=b"\x00" + "é".encode() * (1024 * 1024))
    receivers.append(receiver)
    namespace = repo.split("/")[0]
    url = f"http://127.0.0.1:{receiver.port}/hook"
    hook = server.http.post("/api/v1/webhooks", json={"url": url, "namespace": namespace}).json()

    register_base(server.http, tiny_base.path)
    assert push(server.http, repo, adapter_factory(), base=tiny_base.content_digest).status_code == 201
    attempt = wait_for_attempt(server.http, hook["id"])
    server.http.delete(f"/api/v1/webhooks/{hook['id']}")

    assert attempt["last_status"] == 500
    assert len(attempt["last_error"]) == MAX_LOGGED
    assert attempt["last_error"].startswith("\\x00éé") and attempt["last_error"].endswith("(truncated)")
