"""Plain ASGI middleware: safe for streaming and for contextvars."""
