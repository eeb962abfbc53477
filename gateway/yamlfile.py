"""Read YAML files into validated pydantic models, or into problems naming file, line and field.

The YAML nodes that give line numbers are built only when a problem needs one. Labels name a file
relative to a root directory (the policy directory), as problems and revisions name it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from gateway.problems import InvalidFiles, Problem

M = TypeVar("M", bound=BaseModel)

FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Source:
    """One file's text and data; its YAML nodes (for line numbers) are built only when needed."""

    path: Path
    label: str
    text: str
    data: Any
    _node: yaml.Node | None = None

    @property
    def node(self) -> yaml.Node | None:
        if self._node is None:
            self._node = yaml.compose(self.text, Loader=yaml.SafeLoader)
        return self._node


def label_of(root: Path, path: Path) -> str:
    """How problems name `path`: relative to `root` when it is inside it."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def load_file(
    root: Path, path: Path, model: type[M], error: type[InvalidFiles] = InvalidFiles
) -> M:
    """One YAML file validated as `model`; raises `error` with file, line and field."""
    problems: list[Problem] = []
    parsed = parse(read(root, path, problems), model, problems)
    if parsed is None:
        raise error(problems)
    return parsed


def locate(root: Path, label: str, loc: Sequence[str], message: str, severity: str) -> Problem:
    """A problem about an already loaded file, with the line of `loc` looked up again."""
    src = read(root, root / label, [])
    if src is None:
        return Problem(label, None, ".".join(loc) or "-", message, severity)
    return at(src, loc, message, severity)


def read(root: Path, path: Path, problems: list[Problem]) -> Source | None:
    """The file's text and YAML data, or None with the reason added to `problems`."""
    label = label_of(root, path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(Problem(label, None, "-", "file is missing"))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(label, None, "-", f"cannot read: {exc}"))
        return None
    try:
        data = yaml.load(text, Loader=FAST_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problems.append(Problem(label, line, "-", f"invalid YAML: {getattr(exc, 'problem', exc)}"))
        return None
    return Source(path, label, text, data)


def parse(src: Source | None, model: type[M], problems: list[Problem]) -> M | None:
    """The data of `src` validated as `model`, or None with each error added to `problems`."""
    if src is None:
        return None
    data = src.data
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            problems.append(at(src, loc, _message(err)))
        return None


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown field (check its spelling)"
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "string_type" and isinstance(err.get("input"), bool):
        return 'YAML read this as true/false; quote it (for Norway write "NO")'
    return msg


def at(src: Source, loc: Sequence[str], message: str, severity: str = "error") -> Problem:
    """A problem at `loc` (a pydantic error location) of `src`, with its line."""
    return Problem(src.label, line_of(src.node, loc), ".".join(loc) or "-", message, severity)


def line_of(node: yaml.Node | None, loc: Sequence[str]) -> int | None:
    """The line of the deepest YAML node that `loc` (a pydantic error location) reaches."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if str(key.value) == part:
                    child, line = value, key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            child = node.value[int(part)]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
