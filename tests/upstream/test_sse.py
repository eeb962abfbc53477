"""The SSE usage filter, fed a stream cut at every possible place: whole events out, in order,
the usage read, and only the usage chunk the gateway asked for (no choices) dropped."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from gateway.upstream.sse import SSEUsageFilter, Usage


def event(obj: object, separator: bytes, spaced: bool) -> bytes:
    data = orjson.dumps(obj)
    if spaced:
        data = data.replace(b'":', b'": ')
    return b"data: " + data + separator


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], list[bool], Usage | None, bytes]:
    separator = draw(st.sampled_from([b"\n\n", b"\r\n\r\n"]))
    newline = separator[: len(separator) // 2]
    spaced = draw(st.booleans())
    events: list[bytes] = []
    usage_only: list[bool] = []
    last: Usage | None = None
    for i in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["delta", "usage_only", "usage_with_choices", "null_usage"]))
        obj: dict[str, object] = {"id": f"c{i}", "choices": [{"delta": {"content": f"t{i}"}}]}
        if kind in ("usage_only", "usage_with_choices"):
            prompt, completion = draw(st.integers(0, 999)), draw(st.integers(0, 999))
            obj["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion}
            last = Usage(prompt, completion)
            if kind == "usage_only":
                obj["choices"] = []
        elif kind == "null_usage":
            obj["usage"] = None
        events.append(event(obj, separator, spaced))
        usage_only.append(kind == "usage_only")
    events.append(b"data: [DONE]" + separator)
    usage_only.append(False)
    del newline
    return events, usage_only, last, separator


@given(streams(), st.data(), st.booleans())
def test_any_cut_gives_the_same_events_and_usage(
    stream: tuple[list[bytes], list[bool], Usage | None, bytes], data: st.DataObject, strip: bool
) -> None:
    events, usage_only, usage, _ = stream
    raw = b"".join(events)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=6)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    sse = SSEUsageFilter(strip)
    out = b"".join(sse.feed(piece) for piece in pieces) + sse.flush()
    expected = b"".join(
        e for e, only in zip(events, usage_only, strict=True) if not (strip and only)
    )
    assert out == expected
    assert sse.usage == usage


def test_a_partial_event_waits_for_its_end() -> None:
    sse = SSEUsageFilter(strip_usage_chunk=True)
    assert sse.feed(b'data: {"choices":[],"usage":{"prompt_tokens":3,') == b""
    assert sse.feed(b'"completion_tokens":4}}\n\ndata: [DONE]\n\n') == b"data: [DONE]\n\n"
    assert sse.usage == Usage(3, 4)
