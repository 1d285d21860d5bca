"""A reverse proxy in front of a live server that counts what it relays: real HTTP, no mocks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "te", "upgrade"}


@dataclass
class Relayed:
    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int
    authorization: str | None = None  # the request's Authorization header


@dataclass
class CountingProxy:
    """Relays GET and HEAD to ``upstream`` (redirects passed on, not followed); records each request (its
    Range and Authorization headers), its status and the response body bytes sent back."""

    upstream: str
    requests: list[Relayed] = field(default_factory=list)

    def __post_init__(self) -> None:
        proxy = self
        client = httpx.Client(base_url=self.upstream, timeout=30)

        class Handler(BaseHTTPRequestHandler):
            def relay(self) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                with client.stream(self.command, self.path, headers=headers) as response:
                    self.send_response(response.status_code)
                    for key, value in response.headers.multi_items():
                        if key.lower() not in _HOP_BY_HOP:
                            self.send_header(key, value)
                    self.end_headers()
                    sent = 0
                    for chunk in response.iter_raw():
                        self.wfile.write(chunk)
                        sent += len(chunk)
                proxy.requests.append(
                    Relayed(
                        self.command,
                        self.path,
                        self.headers.get("Range"),
                        response.status_code,
                        sent,
                        self.headers.get("Authorization"),
                    )
                )

            do_GET = do_HEAD = relay

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._client = client
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def body_bytes(self) -> int:
        return sum(r.body_bytes for r in self.requests)

    def close(self) -> None:
        """Stop listening: the upstream is unreachable through this proxy from now on."""
        self._server.shutdown()
        self._server.server_close()
        self._client.close()
