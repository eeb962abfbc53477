"""Edits of the keys file that keep everything else in it: comments, order, quoting, layout.

An edit splices text at the positions the YAML parser reports for the entry (set a field, add an
entry after it), then reads the result back and checks that the data changed exactly as meant and
nothing else; otherwise it refuses (`KeysEditError`) and the file is left as it was. A layout it
does not handle (a `keys:` list in flow style, say) is refused the same way, never guessed at.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from gateway.auth.keys import read_keys_file


class KeysEditError(Exception):
    """The change cannot be made in place; the message says why and what to do."""


class Stamp(str):
    """A time as the keys file holds it (`2026-12-02T00:58:28Z`), written as a plain scalar."""

    __slots__ = ()


def entry_text(entry: dict[str, Any], *, flow: bool = True, indent: int = 2) -> str:
    """An entry as YAML, indented to sit under `keys:`; each value written by the YAML library,
    so that any label reads back as it was given."""
    pairs = [f"{name}: {scalar_text(value)}" for name, value in entry.items()]
    if flow:
        return " " * indent + "- {" + ", ".join(pairs) + "}\n"
    lines = [("- " if i == 0 else "  ") + pair for i, pair in enumerate(pairs)]
    return "".join(" " * indent + line + "\n" for line in lines)


def scalar_text(value: Any) -> str:
    """One value, safe inside a flow mapping `{...}` as well as on a line of its own."""
    if isinstance(value, Stamp):
        return str(value)
    if isinstance(value, str) and not value.isprintable():
        return json.dumps(value, ensure_ascii=False)  # "a\nb" on one line, valid YAML
    text = yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=1 << 16)
    return text.strip()[1:-1]


def set_fields(text: str, key_id: str, fields: dict[str, Any]) -> str:
    """`text` with `fields` set on the entry of `key_id` (replaced if present, else added)."""
    entry = _entry_node(text, key_id)
    out = text
    # edit from the end of the text backwards, so that earlier positions stay valid
    edits: list[tuple[int, int, str]] = []
    existing = {str(k.value): v for k, v in entry.value}
    added = [(name, value) for name, value in fields.items() if name not in existing]
    for name, value in fields.items():
        if name in existing:
            node = existing[name]
            edits.append((node.start_mark.index, node.end_mark.index, scalar_text(value)))
    if added:
        edits.append(_addition(text, entry, added))
    for start, end, new in sorted(edits, reverse=True):
        out = out[:start] + new + out[end:]
    _check(text, out, key_id, lambda entries, i: entries[i].update(fields))
    return out


def insert_after(text: str, key_id: str, new_entry: dict[str, Any]) -> str:
    """`text` with `new_entry` added right after the entry of `key_id`, in the same style."""
    entry = _entry_node(text, key_id)
    at = _line_after(text, _end_of(entry))
    dash = text.rfind("-", 0, entry.start_mark.index)
    column = dash - (text.rfind("\n", 0, dash) + 1)
    block = entry_text(new_entry, flow=bool(entry.flow_style), indent=column)
    prefix = "" if at == 0 or text[at - 1] == "\n" else "\n"
    out = text[:at] + prefix + block + text[at:]
    _check(text, out, key_id, lambda entries, i: entries.insert(i + 1, new_entry))
    return out


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` (mode 0600) only if the new file is a valid keys file: a
    temporary file beside it, read back, then renamed over it, so a reader (the gateway's
    reload) sees the old file or the new one, never half of one."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temp.chmod(0o600)
        read_keys_file(temp, path.parent)
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def _keys_node(text: str) -> yaml.SequenceNode:
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "keys" and isinstance(value, yaml.SequenceNode):
                if value.flow_style:
                    raise KeysEditError("`keys:` is a flow list ([...]); write one entry a line")
                return value
    raise KeysEditError("the file has no `keys:` list")


def _entry_node(text: str, key_id: str) -> yaml.MappingNode:
    for node in _keys_node(text).value:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == "id" and str(value.value) == key_id:
                    return node
    raise KeysEditError(f"no key with id {key_id} in the keys file")


def _end_of(entry: yaml.MappingNode) -> int:
    """Where the entry's text ends: its `}` in flow style, else the end of its last value."""
    return int(entry.end_mark.index if entry.flow_style else entry.value[-1][1].end_mark.index)


def _line_after(text: str, index: int) -> int:
    """The start of the line after the one holding `index` (a block scalar already ends there)."""
    if index > 0 and text[index - 1] == "\n":
        return index
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline + 1


def _addition(
    text: str, entry: yaml.MappingNode, fields: list[tuple[str, Any]]
) -> tuple[int, int, str]:
    pairs = [f"{name}: {scalar_text(value)}" for name, value in fields]
    if entry.flow_style:
        close = entry.end_mark.index - 1
        before = text[:close].rstrip()
        comma = "" if before.endswith((",", "{")) else ", "
        return close, close, comma + ", ".join(pairs)
    indent = " " * entry.value[0][0].start_mark.column
    at = _line_after(text, _end_of(entry))
    prefix = "" if at == 0 or text[at - 1] == "\n" else "\n"
    return at, at, prefix + "".join(f"{indent}{pair}\n" for pair in pairs)


def _check(before: str, after: str, key_id: str, change: Any) -> None:
    """Refuse unless `after` holds the data of `before` with `change` applied, and nothing else."""
    old = yaml.safe_load(before)
    expected = copy.deepcopy(old)
    entries = expected["keys"]
    index = next(i for i, e in enumerate(entries) if str(e.get("id")) == key_id)
    change(entries, index)
    try:
        got = yaml.safe_load(after)
    except yaml.YAMLError as exc:
        raise KeysEditError(f"the edited file would not parse ({exc})") from exc
    if _plain(got) != _plain(expected):
        raise KeysEditError("the layout of this entry is not one the editor knows")


def _plain(data: Any) -> Any:
    """Data as it reads back: a time written as a Stamp is a datetime."""
    if isinstance(data, Stamp):
        return yaml.safe_load(str(data))
    if isinstance(data, dict):
        return {key: _plain(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_plain(value) for value in data]
    return data
