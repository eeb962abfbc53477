"""The listener: uvicorn on the configured address, over HTTP or HTTPS.

With `tls_cert_file` and `tls_key_file` it serves HTTPS, and reads both files again when either
changes (checked every `tls_reload_interval_s`): a renewed certificate (cert-manager, certbot) is
served to new connections without a restart, and a pair that does not load keeps the one in force.
With `tls_ca_file`, clients must present a certificate signed by that CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from gateway.asgi.connections import guarded_protocol, reserve_descriptors
from gateway.asgi.types import ASGIApp
from gateway.settings import Settings

log = logging.getLogger("gateway.listener")


def serve(app: ASGIApp, settings: Settings, sock: socket.socket | None = None) -> bool:
    """Serve until told to stop; False if the app refused to start (uvicorn has logged why).
    With `sock` (a worker of `serve --workers`), accept on that listening socket."""
    tls = settings.tls_cert_file is not None
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # configure_logging: our JSON lines for uvicorn's logs too
        access_log=False,
        loop="uvloop",
        # httptools with a deadline for request headers and a cap on open connections
        http=guarded_protocol(
            settings.header_timeout_s, reserve_descriptors(settings.max_connections)
        ),
        server_header=False,
        proxy_headers=False,  # nothing reads the client's address; one ASGI layer less
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
        ssl_ca_certs=str(settings.tls_ca_file) if settings.tls_ca_file else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if settings.tls_ca_file else ssl.CERT_NONE,
    )
    server = uvicorn.Server(config)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        try:
            runner.run(_serve(server, settings if tls else None, sock))
        except SystemExit as exc:  # uvicorn's way to say the start-up failed
            if exc.code != STARTUP_FAILURE or server.started:
                raise
            return False
    return True


async def _serve(
    server: uvicorn.Server, settings: Settings | None, sock: socket.socket | None
) -> None:
    watcher = None
    if settings is not None and settings.tls_reload_interval_s > 0:
        watcher = asyncio.create_task(CertificateWatcher(server.config, settings).run())
    try:
        await server.serve(sockets=[sock] if sock is not None else None)
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


class CertificateWatcher:
    def __init__(self, config: uvicorn.Config, settings: Settings) -> None:
        assert settings.tls_cert_file is not None and settings.tls_key_file is not None
        self._config = config
        self._cert = settings.tls_cert_file
        self._key = settings.tls_key_file
        self._interval = settings.tls_reload_interval_s
        self._stamp = self._files_stamp()
        self._failed: tuple[int, ...] | None = None

    def _files_stamp(self) -> tuple[int, ...]:
        try:
            return tuple(
                v for p in (self._cert, self._key) for v in (p.stat().st_mtime_ns, p.stat().st_size)
            )
        except OSError:
            return ()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.check()

    def check(self) -> None:
        stamp = self._files_stamp()
        context = self._config.ssl  # made by uvicorn when the server starts
        if stamp == self._stamp or not stamp or context is None:
            return
        try:
            # the context is the listener's own: new handshakes use the new pair at once
            context.load_cert_chain(self._cert, self._key)
        except (OSError, ssl.SSLError) as exc:
            if stamp != self._failed:  # say it once per change, not every interval
                log.error("the renewed TLS certificate does not load; the old one stays: %s", exc)
                self._failed = stamp
            return
        self._stamp = stamp
        log.info("TLS certificate reloaded from %s", self._cert)
