from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from registry.api.deps import Admin, ReadSession, WriteSession
from registry.api.schemas import DeliveryOut, WebhookIn, WebhookOut, delivery_out, webhook_out
from registry.db import queries
from registry.services import webhooks

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create(body: WebhookIn, session: WriteSession, _: Admin) -> WebhookOut:
    """Register a URL for events; deliveries are signed with the secret returned here, once."""
    hook = webhooks.create_webhook(session, url=body.url, events=body.events, namespace=body.namespace)
    return webhook_out(hook, with_secret=True)


@router.get("")
def list_webhooks(session: ReadSession, _: Admin) -> list[WebhookOut]:
    return [webhook_out(h) for h in queries.list_webhooks(session)]


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete(webhook_id: int, session: WriteSession, _: Admin) -> Response:
    webhooks.delete_webhook(session, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries")
def deliveries(
    webhook_id: int, session: ReadSession, _: Admin, limit: int = Query(100, ge=1, le=1000)
) -> list[DeliveryOut]:
    """The delivery log, newest first: status, attempts, the last answer."""
    webhooks.get_webhook(session, webhook_id)
    return [delivery_out(d) for d in queries.deliveries_of(session, webhook_id, limit)]
