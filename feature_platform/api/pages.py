"""The dataset wizard: server-rendered pages (Jinja2) plus a little plain JavaScript.

Login posts a token once; the server checks it (the same token store and scopes as the API) and keeps it in
an HttpOnly, SameSite=Strict cookie. The pages' script calls the dataset endpoints under ``/ui/api`` (the same
routes as ``/api``, built by ``datasets.build_router``) with that cookie; every state-changing request must
also carry ``X-CSRF-Token``, a value derived from the session token that only the pages show, so a request
forged by another site fails twice (no cookie across sites, no token). The login form carries a nonce that
must match a SameSite=Strict cookie set with the form, so another site cannot log a browser in either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from feature_platform.api.auth import Principal, authorize, token_store
from feature_platform.api.datasets import (
    WRITE,
    Config,
    build_router,
    domain_errors,
    load,
    parse_as_of,
    sandbox,
)
from feature_platform.api.errors import ApiError
from feature_platform.api.tokens import Scope
from feature_platform.contracts.paths import SAFE_ID_PATTERN

SESSION_COOKIE = "fp_session"
LOGIN_NONCE_COOKIE = "fp_login_nonce"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_MODEL = "default"
MAX_LOGIN_BODY = 4096
_HERE = Path(__file__).parent
_STATIC = {"wizard.js": "text/javascript", "wizard.css": "text/css"}
# no inline script or style, nothing from another origin, no framing
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

templates = Jinja2Templates(directory=str(_HERE / "templates"))


def csrf_token(session: str) -> str:
    """The CSRF value for a session: an HMAC of a fixed label under the session token (not the token)."""
    return hmac.new(session.encode(), b"feature_platform wizard csrf", hashlib.sha256).hexdigest()


def _session(request: Request) -> str | None:
    value = request.cookies.get(SESSION_COOKIE)
    return value if value else None


def cookie_scope(scope: Scope) -> Any:
    """Dependency for ``/ui/api``: the session cookie's token must hold ``scope``; unsafe methods also need
    the CSRF header."""

    def dependency(request: Request) -> Principal:
        session = _session(request)
        principal = authorize(token_store(request), session, scope)
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not session or not hmac.compare_digest(sent.encode(), csrf_token(session).encode()):
                raise ApiError(403, f"missing or wrong {CSRF_HEADER} header", field=CSRF_HEADER,
                               expected="the CSRF token of the page that sent the request")
        return principal

    dependency.__name__ = f"cookie_{scope.replace(':', '_')}"
    return dependency


# the same routes for the pages' script; not in the OpenAPI document (API clients use /api with a bearer token)
ui_api_router = build_router(cookie_scope, prefix="/ui/api", tags=("wizard",), include_in_schema=False)
router = APIRouter(include_in_schema=False)


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def _principal(request: Request) -> tuple[str, Principal] | None:
    """The session's token and principal if it may read definitions; None sends the browser to the login."""
    session = _session(request)
    if session is None:
        return None
    try:
        return session, authorize(token_store(request), session, "datasets:read")
    except ApiError:
        return None


def _to_login() -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _context(request: Request, session: str, principal: Principal, model_id: str, **extra: Any) -> dict[str, Any]:
    return {"csrf": csrf_token(session), "principal": principal, "model_id": model_id,
            "can_write": WRITE in principal.scopes, **extra}


def _model(model_id: str) -> str:
    import re

    if not re.fullmatch(SAFE_ID_PATTERN, model_id):
        raise ApiError(422, f"field model_id: expected a value matching {SAFE_ID_PATTERN}; got {model_id!r}",
                       field="model_id", expected=f"a value matching {SAFE_ID_PATTERN}")
    return model_id


# --- login ----------------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    nonce = secrets.token_urlsafe(24)
    response = _page(request, "login.html", {"nonce": nonce, "error": None})
    _set_cookie(request, response, LOGIN_NONCE_COOKIE, nonce, path="/login", max_age=1800)
    return response


@router.post("/login", response_model=None)
async def login(request: Request) -> Response:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise ApiError(415, "login: expected a form (application/x-www-form-urlencoded)", field="(body)",
                       expected="application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_LOGIN_BODY:
        raise ApiError(413, "login form too large", field="(body)", expected=f"at most {MAX_LOGIN_BODY} bytes")
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    nonce, cookie_nonce = form.get("nonce", ""), request.cookies.get(LOGIN_NONCE_COOKIE, "")
    if not cookie_nonce or not hmac.compare_digest(nonce.encode(), cookie_nonce.encode()):
        return _login_error(request, 403, "the login form expired or came from another site; log in again")
    token = form.get("token", "").strip()
    try:
        authorize(token_store(request), token, "datasets:read")
    except ApiError as exc:  # "...; send Authorization: Bearer" is advice for API clients, not for this form
        return _login_error(request, exc.status, exc.message.split("; send Authorization")[0])
    response = RedirectResponse(f"/models/{DEFAULT_MODEL}/dataset/", status_code=303)
    _set_cookie(request, response, SESSION_COOKIE, token, path="/", max_age=8 * 3600)
    response.delete_cookie(LOGIN_NONCE_COOKIE, path="/login")
    return response


def _login_error(request: Request, status: int, message: str) -> HTMLResponse:
    nonce = secrets.token_urlsafe(24)
    response = _page(request, "login.html", {"nonce": nonce, "error": message}, status=status)
    _set_cookie(request, response, LOGIN_NONCE_COOKIE, nonce, path="/login", max_age=1800)
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str, *, path: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


@router.post("/logout", response_model=None)
def logout(request: Request) -> Response:
    session = _session(request)
    sent = request.headers.get(CSRF_HEADER, "")
    if session and not hmac.compare_digest(sent.encode(), csrf_token(session).encode()):
        raise ApiError(403, f"missing or wrong {CSRF_HEADER} header", field=CSRF_HEADER,
                       expected="the CSRF token of the page that sent the request")
    return _to_login()


@router.get("/", response_model=None)
def home() -> RedirectResponse:
    return RedirectResponse(f"/models/{DEFAULT_MODEL}/dataset/", status_code=303)


@router.get("/ui/static/{name}", response_model=None)
def static(name: str) -> Response:
    if name not in _STATIC:
        raise ApiError(404, f"no static file {name!r}", field="name", expected=", ".join(_STATIC))
    text = (_HERE / "static" / name).read_text(encoding="utf-8")
    return Response(text, media_type=_STATIC[name], headers={"X-Content-Type-Options": "nosniff"})


# --- pages ----------------------------------------------------------------------------------------------


@router.get("/models/{model_id}/dataset/", response_model=None)
def list_page(request: Request, model_id: str, config: Config) -> Response:
    from feature_platform.datasets.definitions.model import list_entries

    who = _principal(request)
    if who is None:
        return _to_login()
    with domain_errors():
        entries = list_entries(config.directory)
    return _page(request, "list.html", _context(request, *who, _model(model_id), entries=entries))


@router.get("/models/{model_id}/dataset/new", response_model=None)
def wizard_page(request: Request, model_id: str) -> Response:
    who = _principal(request)
    if who is None:
        return _to_login()
    return _page(request, "wizard.html", _context(request, *who, _model(model_id)))


@router.get("/models/{model_id}/dataset/compare", response_model=None)
def compare_page(request: Request, model_id: str, config: Config,
                 names: Annotated[list[str] | None, Query()] = None, as_of: Annotated[str | None, Query()] = None
                 ) -> Response:
    from feature_platform.datasets.definitions.analysis import compare_definitions, require_compare_count

    who = _principal(request)
    if who is None:
        return _to_login()
    names = names or []
    context = _context(request, *who, _model(model_id), names=names, comparison=None, error=None)
    try:
        with domain_errors("names"):
            require_compare_count(names)
        pinned = parse_as_of(as_of or None)  # the form sends an empty as_of when none is picked
        defns = [load(config, n, "names") for n in names]
        with sandbox(config, defns) as conn, domain_errors("names"):
            context["comparison"] = compare_definitions(defns, conn, as_of=pinned)
    except ApiError as exc:
        context["error"] = exc.message
        return _page(request, "compare.html", context, status=exc.status)
    return _page(request, "compare.html", context)


@router.get("/models/{model_id}/dataset/{dataset_id}", response_model=None)
def detail_page(request: Request, model_id: str, dataset_id: str, config: Config) -> Response:
    import yaml

    from feature_platform.datasets.definitions.model import definition_summary
    from feature_platform.datasets.definitions.sql import render_query

    who = _principal(request)
    if who is None:
        return _to_login()
    defn = load(config, dataset_id)
    with domain_errors():
        sql = render_query(defn, dialect="bigquery")
    text = yaml.safe_dump(defn.to_yaml_dict(), sort_keys=False, allow_unicode=True)
    return _page(request, "detail.html", _context(request, *who, _model(model_id), defn=defn, yaml_text=text,
                                                  summary=definition_summary(defn), sql=sql))
