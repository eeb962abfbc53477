"""Signing in to the console with an auditor or admin key, and signing out (`session.py`)."""

from __future__ import annotations

import secrets
import time
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from gateway.console.app import PREFIX, Console, console_of
from gateway.console.render import HEADERS
from gateway.console.session import COOKIE, ENDED, READERS, SIGN_IN_COOKIE, Session, check_csrf
from gateway.errors import AuthenticationFailed, PermissionDenied

router = APIRouter(prefix=PREFIX, include_in_schema=False)


async def form_fields(request: Request) -> dict[str, str]:
    body = (await request.body())[:16_384].decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _safe_next(target: str | None) -> str:
    if target and target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    console = console_of(request)
    found = console.sessions.read(request.cookies.get(COOKIE), time.time())
    target = _safe_next(request.query_params.get("next"))
    if isinstance(found, Session):
        return RedirectResponse(target, 303)
    ended = ENDED.get(request.query_params.get("ended", ""))
    return _sign_in(console, request, target, ended)


def _sign_in(
    console: Console, request: Request, target: str, message: str | None, status: int = 200
) -> Response:
    nonce = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(16)
    response = console.pages.render(
        "sign_in.html",
        status,
        target=target,
        message=message,
        failed=status >= 400,
        token=console.sessions.sign_in_token(nonce),
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        nonce,
        max_age=3600,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    console = console_of(request)
    form = await form_fields(request)
    target = _safe_next(form.get("next"))
    nonce = request.cookies.get(SIGN_IN_COOKIE)
    if not console.sessions.check_sign_in_token(nonce, form.get("token")):
        return _sign_in(console, request, target, "The form had expired. Please try again.", 400)
    key = form.get("api_key", "").strip()
    try:
        principal = console.parts.keys.authenticate(f"Bearer {key}", *READERS)
    except AuthenticationFailed:
        return _sign_in(console, request, target, "This API key is not valid.", 401)
    except PermissionDenied:
        return _sign_in(
            console,
            request,
            target,
            "This key cannot open the console: it needs the auditor or admin role. "
            "Tenant keys only call the API.",
            403,
        )
    response = RedirectResponse(target, 303, headers={"cache-control": "no-store"})
    response.set_cookie(
        COOKIE,
        console.sessions.issue(principal, time.time()),
        # a little longer than the session, so that the page can say it expired
        max_age=int(console.sessions.lifetime_s) + 300,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(SIGN_IN_COOKIE, path=PREFIX)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    console = console_of(request)
    session = console.session(request)
    if not isinstance(session, Session):
        return session
    if not check_csrf(session, (await form_fields(request)).get("token")):
        return Response("The form had expired; go back and try again.", 400, headers=HEADERS)
    console.sessions.end(session, time.time())
    response = RedirectResponse(f"{PREFIX}/sign-in?ended=signed_out", 303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response
