"""The console's parts, built once by `create_app`, and its mount under `/console`."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from gateway.audit.writer import AuditWriter
from gateway.components import Components
from gateway.console.render import HERE, Pages
from gateway.console.session import COOKIE, Session, Sessions

PREFIX = "/console"


@dataclass
class Console:
    parts: Components
    sessions: Sessions
    pages: Pages

    def writer(self) -> AuditWriter | None:
        return self.parts.audit.writer

    def session(self, request: Request) -> Session | Response:
        """The signed-in session, or the way to the sign-in page (saying why, when it ended)."""
        found = self.sessions.read(request.cookies.get(COOKIE), time.time())
        if isinstance(found, Session):
            return found
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":  # a form sent after the session ended: start over
            target = PREFIX
        location = f"{PREFIX}/sign-in?next={quote(target, safe='')}"
        if found is not None:
            location += f"&ended={found}"
        response = RedirectResponse(location, 303, headers={"cache-control": "no-store"})
        if found is not None:
            response.delete_cookie(COOKIE, path=PREFIX)
        return response


def console_of(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def mount_console(app: FastAPI, parts: Components) -> None:
    from gateway.console import routes, sign_in

    settings = parts.settings
    secret = (
        settings.console_session_secret.get_secret_value().encode()
        if settings.console_session_secret is not None
        else secrets.token_bytes(32)
    )
    app.state.console = Console(
        parts, Sessions(secret, settings.console_session_s, parts.keys), Pages()
    )
    app.include_router(sign_in.router)
    app.include_router(routes.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")

    async def home() -> Response:
        return RedirectResponse(PREFIX, 303)

    app.add_api_route("/", home, methods=["GET"], include_in_schema=False)
