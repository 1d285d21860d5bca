"""Sending webhook deliveries: a thread in the API process that drains the outbox.

Each attempt checks the URL's host again (:mod:`registry.webhooks.targets`), and logs at most
:data:`MAX_LOGGED` characters of a failed answer: a receiver cannot fill the delivery log.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta

import httpx

from registry.db import queries
from registry.db.models import utcnow
from registry.errors import InvalidInput
from registry.runtime import Runtime
from registry.services import webhooks
from registry.webhooks.targets import check_target

logger = logging.getLogger("lorareg.webhooks")
POLL_SECONDS = 0.5
BATCH = 20
LEASE_SECONDS = 60  # a claimed delivery is retried by another replica only after this
MAX_LOGGED = 2048  # characters of a failed attempt's answer or error kept in the delivery log
TRUNCATED = " … (truncated)"


class Dispatcher:
    """Sends due deliveries, signed, and records each attempt. Several API replicas may run one each:
    each claims a delivery (a short lease) before sending it, outside any transaction."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="lorareg-webhooks", daemon=True)
        self.http = httpx.Client(timeout=10.0)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=15)
        self.http.close()

    def _loop(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            try:
                self.send_due()
            except Exception:  # the dispatcher must outlive a bad round
                logger.exception("webhook dispatch failed")

    def send_due(self) -> int:
        """Send every due delivery once; return how many were attempted."""
        settings = self.runtime.settings
        with self.runtime.db.transaction(write=False) as session:
            due = [d.id for d in queries.due_deliveries(session, utcnow(), BATCH)]
        for delivery_id in due:
            with self.runtime.db.transaction() as session:
                claimed = webhooks.claim_delivery(
                    session, delivery_id, lease=timedelta(seconds=LEASE_SECONDS)
                )
                if claimed is None:
                    continue  # another replica has it
                hook = queries.get_webhook(session, claimed.webhook_id)
                if hook is None:
                    continue  # deleted meanwhile
                url, secret, event = hook.url, hook.secret, claimed.event
                body = json.dumps(claimed.payload, sort_keys=True).encode()
            status, error = self._send(url, secret, event, delivery_id, body)
            with self.runtime.db.transaction() as session:
                webhooks.record_attempt(
                    session,
                    delivery_id,
                    status=status,
                    error=error,
                    max_attempts=settings.webhook_attempts,
                    backoff=settings.webhook_backoff,
                )
        return len(due)

    def _send(
        self, url: str, secret: str, event: str, delivery_id: int, body: bytes
    ) -> tuple[int | None, str | None]:
        headers = {
            "Content-Type": "application/json",
            "X-Lorareg-Event": event,
            "X-Lorareg-Delivery": str(delivery_id),
            "X-Lorareg-Signature": webhooks.signature(secret, body),
        }
        try:
            check_target(url, allow_private=self.runtime.settings.webhook_allow_private)
            with self.http.stream("POST", url, content=body, headers=headers) as response:
                if response.is_success:
                    return response.status_code, None
                return response.status_code, _logged(_head(response), response.encoding)
        except InvalidInput as exc:
            return None, _logged(exc.message.encode())
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return None, _logged(f"{type(exc).__name__}: {exc}".encode())


def _head(response: httpx.Response) -> bytes:
    """The first bytes of the answer's body, enough to log (the rest is never read)."""
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) > 4 * MAX_LOGGED:  # a character is at most 4 bytes of UTF-8
            break
    return data


def _logged(data: bytes, encoding: str | None = None) -> str:
    """``data`` as text for the log: at most MAX_LOGGED characters, none NUL (PostgreSQL refuses it)."""
    text = data.decode(encoding or "utf-8", errors="replace").replace("\x00", "\\x00")
    if len(text) > MAX_LOGGED:
        text = text[: MAX_LOGGED - len(TRUNCATED)] + TRUNCATED
    return text
