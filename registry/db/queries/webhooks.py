"""Queries on webhooks and their deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from registry.db.models import Webhook, WebhookDelivery


def webhooks_for(session: Session, event: str, namespace: str | None) -> list[Webhook]:
    """The webhooks that want ``event`` in ``namespace`` (or everywhere)."""
    hooks = session.scalars(
        select(Webhook).where(or_(Webhook.namespace.is_(None), Webhook.namespace == namespace))
    ).all()
    return [hook for hook in hooks if event in hook.events]


def list_webhooks(session: Session) -> Sequence[Webhook]:
    return session.scalars(select(Webhook).order_by(Webhook.id)).all()


def get_webhook(session: Session, webhook_id: int) -> Webhook | None:
    return session.get(Webhook, webhook_id)


def due_deliveries(session: Session, now: datetime, limit: int) -> Sequence[WebhookDelivery]:
    return session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.id)
        .limit(limit)
    ).all()


def deliveries_of(session: Session, webhook_id: int, limit: int) -> Sequence[WebhookDelivery]:
    return session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    ).all()


def get_delivery(session: Session, delivery_id: int, *, lock: bool = False) -> WebhookDelivery | None:
    query = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()
