"""Templates (Jinja2, autoescaped) and the headers every console page carries."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.responses import HTMLResponse

from gateway.console import charts
from gateway.console.places import named, place
from gateway.policy.rule_names import describe

HERE = Path(__file__).parent
HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def when(value: Any) -> str:
    """A stored time (`2026-11-30T14:03:07.123456Z`) as `2026-11-30 14:03:07 UTC`."""
    if value is None or value == "":
        return "—"
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.UTC).isoformat()
    text = str(value)
    return f"{text[:10]} {text[11:19]} UTC" if len(text) >= 19 else text


def number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


class Pages:
    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["rule"] = describe
        self.env.filters["when"] = when
        self.env.filters["number"] = number
        self.env.filters["place"] = place
        self.env.globals["named"] = named
        self.env.globals["rule_rows"] = lambda counts, n=None: [
            (f"{describe(rule)} [{rule}]", count) for rule, count in counts.most_common(n)
        ]
        self.env.globals["bars"] = lambda rows, title: Markup(charts.bars(rows, title))  # noqa: S704
        self.env.globals["columns"] = lambda data, title, unit: Markup(  # noqa: S704
            charts.columns(data, title, unit)
        )

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        page = self.env.get_template(name).render(**context)
        return HTMLResponse(page, status, headers=HEADERS)
