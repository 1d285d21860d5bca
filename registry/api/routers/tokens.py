from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response, status

from registry.api.deps import Admin, Reader, ReadSession, RegistryDep, WriteSession
from registry.api.schemas import TokenCreatedOut, TokenIn, TokenOut, WhoAmIOut, token_created_out, token_out
from registry.services import tokens

router = APIRouter(tags=["tokens"])


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
def create_token(body: TokenIn, session: WriteSession, _: Admin) -> TokenCreatedOut:
    """Create a token (admin); the secret is in this response only."""
    expires_in = timedelta(seconds=body.expires_in) if body.expires_in else None
    token, secret = tokens.create_token(
        session, name=body.name, scope=body.scope, namespaces=body.namespaces, expires_in=expires_in
    )
    return token_created_out(token, secret)


@router.get("/tokens")
def list_tokens(session: ReadSession, _: Admin) -> list[TokenOut]:
    return [token_out(t) for t in tokens.list_tokens(session)]


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: int, session: WriteSession, _: Admin) -> Response:
    tokens.revoke_token(session, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/whoami")
def whoami(principal: Reader, registry: RegistryDep) -> WhoAmIOut:
    """Who the presented token is (or ``anonymous``)."""
    return WhoAmIOut(
        name=principal.name,
        scope=principal.scope,
        namespaces=list(principal.namespaces) if principal.namespaces else None,
        auth=registry.settings.auth,
    )
