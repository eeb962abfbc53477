"""The policy package stays apart: the pure engine and compiler import nothing that reads files,
and policy and auth do not import each other (what needs both, the reloader or `policy check`,
sits outside them)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.harness import ROOT

PURE = ("gateway.policy.engine", "gateway.policy.compile")
READERS = ("gateway.policy.load", "gateway.yamlfile", "yaml")


def imports_of(package: Path) -> set[str]:
    return set().union(*(imports_of_file(path) for path in package.rglob("*.py")))


def test_the_engine_and_the_compiler_import_nothing_that_reads_files() -> None:
    code = (
        f"import sys; import {', '.join(PURE)}; "
        f"print(' '.join(m for m in {READERS!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.split() == []


def test_policy_and_auth_do_not_import_each_other() -> None:
    policy = imports_of(ROOT / "gateway" / "policy")
    auth = imports_of(ROOT / "gateway" / "auth")
    assert sorted(m for m in policy if m.startswith("gateway.auth")) == []
    assert sorted(m for m in auth if m.startswith("gateway.policy")) == []


REQUEST_PATH = ("gateway.proxy", "gateway.relay", "gateway.api", "gateway.app")


def test_nothing_below_the_request_path_imports_it() -> None:
    """The exchange, the policy, the audit log and the metrics are imported by the request path,
    never the other way round: the circle between the proxy and the audit log stays broken."""
    below = {
        "gateway/exchange.py": imports_of_file(ROOT / "gateway" / "exchange.py"),
        "gateway/policy": imports_of(ROOT / "gateway" / "policy"),
        "gateway/audit": imports_of(ROOT / "gateway" / "audit"),
        "gateway/observability": imports_of(ROOT / "gateway" / "observability"),
    }
    upward = {
        where: sorted(m for m in modules if m.startswith(REQUEST_PATH))
        for where, modules in below.items()
    }
    assert upward == {where: [] for where in below}
    assert not imports_of(ROOT / "gateway" / "policy") & {"gateway.exchange"}


def imports_of_file(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found
