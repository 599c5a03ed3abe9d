"""Bearer tokens on every endpoint: ``Depends(require_scope("ml:train"))`` gives the caller's ``Principal``.

401 (with ``WWW-Authenticate: Bearer``) when the token is missing, malformed, unknown, revoked or expired;
403 when it lacks the scope. The token is read from the ``Authorization`` header only (never a query
string, which access logs record) and is never logged; only the token's name travels further (run tags).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from feature_platform.api.errors import ApiError
from feature_platform.api.tokens import SCOPES, AuthError, Scope, TokenStore

bearer = HTTPBearer(auto_error=False, scheme_name="token",
                    description="a token from `fp api token create --name N --scopes ...`")

_REASONS = {"missing": "no bearer token", "malformed": "the bearer token is malformed",
            "unknown": "the bearer token is not known", "revoked": "the bearer token was revoked",
            "expired": "the bearer token has expired"}


@dataclass(frozen=True)
class Principal:
    """Who is asking: the token's id, name and scopes (never the token)."""

    token_id: str
    name: str
    scopes: tuple[str, ...]


def token_store(request: Request) -> TokenStore:
    store = request.app.state.tokens
    assert isinstance(store, TokenStore)
    return store


def authorize(store: TokenStore, token: str | None, scope: Scope) -> Principal:
    """The principal for ``token`` if it authenticates and holds ``scope``; ``ApiError`` 401/403 otherwise."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r}: expected one of {', '.join(SCOPES)}")
    try:
        record = store.authenticate(token)
    except AuthError as exc:
        error = "" if exc.reason == "missing" else ', error="invalid_token"'
        raise ApiError(401, f"{_REASONS[exc.reason]}; send Authorization: Bearer <token>",
                       field="Authorization", expected=f"a valid bearer token with scope {scope}",
                       headers={"WWW-Authenticate": f'Bearer realm="feature_platform"{error}'}) from None
    if scope not in record.scopes:
        raise ApiError(403, f"token {record.name!r} lacks scope {scope} (it has {', '.join(record.scopes)})",
                       field="Authorization", expected=f"a token with scope {scope}",
                       headers={"WWW-Authenticate": f'Bearer realm="feature_platform", error="insufficient_scope", '
                                                    f'scope="{scope}"'})
    return Principal(token_id=record.id, name=record.name, scopes=record.scopes)


def require_scope(scope: Scope) -> Callable[..., Principal]:
    """A FastAPI dependency: the caller's ``Principal`` when its bearer token holds ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r}: expected one of {', '.join(SCOPES)}")

    def dependency(request: Request,
                   credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Principal:  # noqa: B008
        return authorize(token_store(request), credentials.credentials if credentials else None, scope)

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency
