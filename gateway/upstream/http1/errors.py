"""What goes wrong between the gateway and an upstream, at the transport or protocol level."""

from __future__ import annotations


class HTTPClientError(Exception):
    """The exchange with the upstream failed at the transport or protocol level."""


class ConnectFailed(HTTPClientError):
    pass


class ReadTimeout(HTTPClientError):
    pass


class ConnectionBroken(HTTPClientError):
    pass
