from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response, status

from registry.api.deps import Caller, ReadSession, RegistryDep, WriteSession
from registry.api.pagination import Id
from registry.api.schemas import TokenCreatedOut, TokenIn, TokenOut, WhoAmIOut, token_created_out, token_out
from registry.services import tokens

router = APIRouter(tags=["tokens"])


@router.post("/tokens", status_code=status.HTTP_201_CREATED, name="token.create")
def create_token(body: TokenIn, session: WriteSession, principal: Caller) -> TokenCreatedOut:
    """Create a token (admin; an admin limited to namespaces creates tokens within them, no wider than
    itself); the secret is in this response only."""
    expires_in = timedelta(seconds=body.expires_in) if body.expires_in else None
    token, secret = tokens.create_token(
        session,
        principal,
        name=body.name,
        scope=body.scope,
        namespaces=body.namespaces,
        expires_in=expires_in,
    )
    return token_created_out(token, secret)


@router.get("/tokens")
def list_tokens(session: ReadSession, principal: Caller) -> list[TokenOut]:
    """The tokens the caller administers: all of them, or those within its namespaces."""
    return [token_out(t) for t in tokens.list_tokens(session, principal)]


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, name="token.revoke")
def revoke_token(token_id: Id, session: WriteSession, principal: Caller) -> Response:
    tokens.revoke_token(session, token_id, principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/whoami")
def whoami(principal: Caller, registry: RegistryDep) -> WhoAmIOut:
    """Who the presented token is (with ``LOREG_AUTH=off``: ``anonymous``, an admin); 401 without one."""
    principal.require("read")
    return WhoAmIOut(
        name=principal.name,
        scope=principal.scope,
        namespaces=list(principal.namespaces) if principal.namespaces else None,
        auth=registry.settings.auth,
        expires_at=principal.expires_at,
    )
