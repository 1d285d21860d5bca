"""Sending webhook deliveries: a thread in the API process that drains the outbox."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta

import httpx

from registry.db import queries
from registry.db.models import utcnow
from registry.runtime import Runtime
from registry.services import webhooks

logger = logging.getLogger("lorareg.webhooks")
POLL_SECONDS = 0.5
BATCH = 20
LEASE_SECONDS = 60  # a claimed delivery is retried by another replica only after this


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
                hook = webhooks.get_webhook(session, claimed.webhook_id)
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
            response = self.http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return response.status_code, None if response.is_success else response.text[:500]
