"""A problem found in a file an admin writes (policy, keys, policy tests): where, and what.

Pure types, shared by the loaders of every such file and by what reports their problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity}: {self.field}: {self.message}"


class InvalidFiles(Exception):
    """Files that do not validate; `problems` says where and why (file, line, field)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
