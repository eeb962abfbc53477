"""Start-up refusals an operator can fix, reported as their message alone.

Starlette answers a lifespan that fails with the traceback, and uvicorn logs it. A refusal
(`StartupRefused`: the audit log is taken by another process) says all there is to say in its
message, so the ASGI lifespan is passed through `report_refusals`, which sends that instead.
"""

from __future__ import annotations

from gateway.asgi.types import ASGIApp, Message, Receive, Scope, Send


class StartupRefused(Exception):
    """The process must not serve; the message tells the operator why."""


async def report_refusals(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    failed: Message | None = None

    async def held(message: Message) -> None:
        nonlocal failed
        if message["type"] == "lifespan.startup.failed":
            failed = message  # sent once we know what raised
        else:
            await send(message)

    try:
        await app(scope, receive, held)
    except StartupRefused as exc:
        if failed is not None:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
        raise
    except BaseException:
        if failed is not None:
            await send(failed)
        raise
    if failed is not None:
        await send(failed)
