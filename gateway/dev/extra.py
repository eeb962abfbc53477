"""The `demo` extra: the simulated backends need aiohttp, the tour the OpenAI SDK. A production
install leaves both out, and the commands that need them say so in one line."""

from __future__ import annotations

import importlib.util

DEMO_EXTRA = "pip install 'sovereign-gateway[demo]'"


def missing_demo_extra(command: str, *modules: str) -> str | None:
    """The line to print if any of `modules` is not installed, else None."""
    absent = [name for name in modules if importlib.util.find_spec(name) is None]
    if not absent:
        return None
    return f"error: {command} needs the `demo` extra ({', '.join(absent)}): {DEMO_EXTRA}"
