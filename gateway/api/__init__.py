"""Thin HTTP routers: they read the request, call the gateway, and frame the answer."""
