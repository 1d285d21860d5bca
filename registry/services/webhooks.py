"""Webhooks: registration, and events written as deliveries in the transaction that caused them.

A delivery is an outbox row: it commits (or rolls back) with the push, tag move, yank or job that
produced it, and :mod:`registry.webhooks` sends it afterwards, signed ``X-Lorareg-Signature:
sha256=<HMAC-SHA256(secret, body)>``, retrying with exponential back-off.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.models import Webhook, WebhookDelivery, as_utc, utcnow
from registry.errors import InvalidInput, NotFound
from registry.principal import Principal
from registry.refs import validate_name
from registry.services import audit
from registry.webhooks.targets import check_target

EVENTS = (
    "version.pushed",
    "tag.moved",
    "version.yanked",
    "version.unyanked",
    "job.finished",
    "deployment.changed",
)


def create_webhook(
    session: Session,
    principal: Principal,
    *,
    url: str,
    events: Sequence[str] | None = None,
    namespace: str | None = None,
    allow_private: bool = False,
) -> Webhook:
    """Register ``url`` for ``events`` (all by default), optionally only in ``namespace``: an admin of
    that namespace may; a webhook of every namespace is an unrestricted admin's."""
    if namespace is None:
        principal.require_unrestricted("admin", "a webhook without --namespace")
    else:
        principal.require("admin", namespace)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidInput(f"webhook URL {url!r} must be an absolute http(s) URL")
    check_target(url, allow_private=allow_private)
    chosen = list(events or EVENTS)
    unknown = sorted(set(chosen) - set(EVENTS))
    if unknown:
        raise InvalidInput(f"unknown webhook events {', '.join(unknown)}; use {', '.join(EVENTS)}")
    hook = Webhook(
        url=url,
        secret=secrets.token_hex(32),
        events=chosen,
        namespace=validate_name(namespace, "namespace") if namespace else None,
    )
    session.add(hook)
    session.flush()
    audit.record(
        session,
        principal,
        "webhook.create",
        target=f"webhook {hook.id} ({url})",
        namespace=hook.namespace,
        detail={"events": chosen},
    )
    return hook


def get_webhook(session: Session, webhook_id: int, principal: Principal) -> Webhook:
    """A webhook ``principal`` administers (one of its namespaces; all of them when unrestricted)."""
    principal.require("admin")
    hook = queries.get_webhook(session, webhook_id)
    if hook is None or not _administers(principal, hook):
        raise NotFound(f"no webhook {webhook_id}; `GET /api/v1/webhooks` lists yours")
    return hook


def list_webhooks(session: Session, principal: Principal) -> list[Webhook]:
    principal.require("admin")
    return [hook for hook in queries.list_webhooks(session) if _administers(principal, hook)]


def deliveries(
    session: Session, webhook_id: int, principal: Principal, *, limit: int
) -> Sequence[WebhookDelivery]:
    """The delivery log of a webhook, newest first."""
    return queries.deliveries_of(session, get_webhook(session, webhook_id, principal).id, limit)


def delete_webhook(session: Session, webhook_id: int, principal: Principal) -> None:
    hook = get_webhook(session, webhook_id, principal)
    audit.record(
        session,
        principal,
        "webhook.delete",
        target=f"webhook {hook.id} ({hook.url})",
        namespace=hook.namespace,
    )
    session.delete(hook)
    session.flush()


def _administers(principal: Principal, hook: Webhook) -> bool:
    return principal.unrestricted or (hook.namespace is not None and principal.in_namespace(hook.namespace))


def emit(session: Session, event: str, payload: dict[str, Any], *, namespace: str | None) -> None:
    """Queue ``event`` for every webhook that wants it (sent after the transaction commits)."""
    for hook in queries.webhooks_for(session, event, namespace):
        session.add(
            WebhookDelivery(
                webhook_id=hook.id,
                event=event,
                payload={"event": event, **payload},
                status="pending",
                attempts=0,
                next_attempt_at=utcnow(),
            )
        )
    session.flush()


def signature(secret: str, body: bytes) -> str:
    """The ``X-Lorareg-Signature`` header value of ``body``; receivers compare it in constant time."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def claim_delivery(session: Session, delivery_id: int, *, lease: timedelta) -> WebhookDelivery | None:
    """Take a due delivery for sending (pushing its next attempt ``lease`` away); None if not due."""
    delivery = queries.get_delivery(session, delivery_id, lock=True)
    now = utcnow()
    if delivery is None or delivery.status != "pending" or as_utc(delivery.next_attempt_at) > now:
        return None
    delivery.next_attempt_at = now + lease
    session.flush()
    return delivery


def record_attempt(
    session: Session,
    delivery_id: int,
    *,
    status: int | None,
    error: str | None,
    max_attempts: int,
    backoff: float,
) -> None:
    """Log one attempt: delivered on a 2xx, else retried after ``backoff · 2^(attempts-1)`` seconds until
    ``max_attempts``, then failed."""
    delivery = queries.get_delivery(session, delivery_id, lock=True)
    if delivery is None:  # its webhook was deleted meanwhile
        return
    delivery.attempts += 1
    delivery.last_status, delivery.last_error = status, error
    if status is not None and 200 <= status < 300:
        delivery.status, delivery.delivered_at = "delivered", utcnow()
    elif delivery.attempts >= max_attempts:
        delivery.status = "failed"
    else:
        delivery.next_attempt_at = utcnow() + timedelta(seconds=backoff * 2 ** (delivery.attempts - 1))
    session.flush()
