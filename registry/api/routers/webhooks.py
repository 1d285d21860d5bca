from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from registry.api.deps import Caller, ReadSession, RegistryDep, WriteSession
from registry.api.pagination import Id
from registry.api.schemas import DeliveryOut, WebhookIn, WebhookOut, delivery_out, webhook_out
from registry.services import webhooks

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post("", status_code=status.HTTP_201_CREATED, name="webhook.create")
def create(body: WebhookIn, session: WriteSession, principal: Caller, registry: RegistryDep) -> WebhookOut:
    """Register a URL for events (an admin of ``namespace``; without one, an unrestricted admin);
    deliveries are signed with the secret returned here, once."""
    hook = webhooks.create_webhook(
        session,
        principal,
        url=body.url,
        events=body.events,
        namespace=body.namespace,
        allow_private=registry.settings.webhook_allow_private,
    )
    return webhook_out(hook, with_secret=True)


@router.get("")
def list_webhooks(session: ReadSession, principal: Caller) -> list[WebhookOut]:
    """The webhooks the caller administers."""
    return [webhook_out(h) for h in webhooks.list_webhooks(session, principal)]


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, name="webhook.delete")
def delete(webhook_id: Id, session: WriteSession, principal: Caller) -> Response:
    webhooks.delete_webhook(session, webhook_id, principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries")
def deliveries(
    webhook_id: Id, session: ReadSession, principal: Caller, limit: int = Query(100, ge=1, le=1000)
) -> list[DeliveryOut]:
    """The delivery log, newest first: status, attempts, the last answer."""
    return [delivery_out(d) for d in webhooks.deliveries(session, webhook_id, principal, limit=limit)]
