"""`sovereign-gateway policy check | explain | test | diff | schema`: the admin's policy tools.

Exit codes, for CI pipelines:
    check    0 valid (warnings printed), 1 invalid, or warnings with --strict
    explain  0 allowed, 1 refused or error (unknown tenant, model, data class)
    test     0 every case passed, 1 a case failed, or a case file does not validate or names
             a deployment, rule or country that does not exist
    diff     0 no tenant gains or loses a deployment, 1 some do, 2 a policy does not validate
    schema   0 written or up to date, 1 stale (with --check)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.policy.compile import CompiledPolicy
from gateway.policy.load import PolicyLoadError, load_policy_dir
from gateway.policy.model import PolicySet


def add_policy_commands(sub: Any) -> None:
    policy = sub.add_parser("policy", help="policy files").add_subparsers(title="policy commands")

    check = policy.add_parser("check", help="validate a policy directory and warn")
    check.add_argument("directory", type=Path)
    check.add_argument("--at", type=_date, help="evaluate attestations on this day (YYYY-MM-DD)")
    check.add_argument("--strict", action="store_true", help="fail on warnings too")
    check.set_defaults(func=_check)

    explain = policy.add_parser("explain", help="why a tenant may or may not use a model")
    explain.add_argument("directory", type=Path)
    explain.add_argument("--tenant", required=True)
    explain.add_argument("--model", required=True, help="a model or an alias")
    explain.add_argument("--data-class")
    explain.add_argument("--at", type=_date)
    explain.add_argument("--json", action="store_true")
    explain.set_defaults(func=_explain)

    test = policy.add_parser("test", help="run the case files in DIR/tests")
    test.add_argument("directory", type=Path)
    test.add_argument("--at", type=_date, help="date for cases that do not give one")
    test.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    test.set_defaults(func=_test)

    diff = policy.add_parser("diff", help="which tenants gain or lose which deployments")
    diff.add_argument("old", type=Path)
    diff.add_argument("new", type=Path)
    diff.add_argument("--at", type=_date)
    diff.add_argument("--json", action="store_true")
    diff.set_defaults(func=_diff)

    schema = policy.add_parser("schema", help="write the JSON Schemas of the policy files")
    schema.add_argument("--out", type=Path, default=Path("policies/schema"))
    schema.add_argument("--check", action="store_true", help="only report stale files")
    schema.set_defaults(func=_schema)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _today(args: argparse.Namespace) -> dt.date:
    at: dt.date | None = args.at
    return at or dt.datetime.now(dt.UTC).date()


def _load(directory: Path) -> PolicySet | None:
    try:
        return load_policy_dir(directory)
    except PolicyLoadError as exc:
        for problem in exc.problems:
            print(f"{directory}/{problem}", file=sys.stderr)
        print(f"{directory}: {len(exc.problems)} problem(s); not valid", file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    from gateway.auth.keys import check_keys_file
    from gateway.policy.lint import lint

    policy = _load(args.directory)
    if policy is None:
        return 1
    compiled = CompiledPolicy(policy, _today(args))
    keys = check_keys_file(args.directory / "keys.yaml", args.directory, compiled.has_tenant)
    warnings = [*policy.warnings, *lint(args.directory, compiled), *keys]
    for warning in warnings:
        print(f"{args.directory}/{warning}", file=sys.stderr)
    errors = [w for w in warnings if w.severity == "error"]
    print(
        f"{'invalid' if errors else 'ok'}: {len(policy.tenants)} tenants, "
        f"{len(policy.catalog.deployments)} deployments, revision {policy.revision}, "
        f"{len(warnings)} warning(s)"
    )
    return 1 if errors or (warnings and args.strict) else 0


def _explain(args: argparse.Namespace) -> int:
    from gateway.policy.explain import explain_route, render_text

    policy = _load(args.directory)
    if policy is None:
        return 1
    compiled = CompiledPolicy(policy, _today(args))
    try:
        doc = explain_route(compiled, args.tenant, args.model, args.data_class)
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps(doc, indent=2, ensure_ascii=False) if args.json else render_text(doc))
    return 0 if doc["eligible"] else 1


def _test(args: argparse.Namespace) -> int:
    from gateway.policy.cases import check_cases, load_cases, run_cases

    policy = _load(args.directory)
    if policy is None:
        return 1
    try:
        files = load_cases(args.directory)
    except PolicyLoadError as exc:
        for problem in exc.problems:
            print(f"{args.directory}/{problem}", file=sys.stderr)
        return 1
    if not files:
        print(f"{args.directory}/tests: no case files", file=sys.stderr)
        return 1
    problems = check_cases(args.directory, policy, files)
    for problem in problems:
        print(f"{args.directory}/{problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in the case files; no case was run", file=sys.stderr)
        return 1
    passed = failed = 0
    for result in run_cases(policy, files, _today(args)):
        if result.passed:
            passed += 1
            if args.verbose:
                print(f"PASS  {result.file}: {result.case.name}")
            continue
        failed += 1
        print(f"FAIL  {result.file}: {result.case.name}")
        for failure in result.failures:
            print(f"      {failure}")
    print(f"{passed} passed, {failed} failed (policy {policy.revision})")
    return 1 if failed else 0


def _diff(args: argparse.Namespace) -> int:
    from gateway.policy.diff import diff

    old, new = _load(args.old), _load(args.new)
    if old is None or new is None:
        return 2
    day = _today(args)
    changes = diff(CompiledPolicy(old, day), CompiledPolicy(new, day))
    if args.json:
        doc = {
            "old_revision": old.revision,
            "new_revision": new.revision,
            "changes": [c.as_json() for c in changes],
        }
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(f"{old.revision} -> {new.revision}: {len(changes)} change(s) in eligibility")
        for change in changes:
            print(f"  {change}")
    return 1 if changes else 0


def _schema(args: argparse.Namespace) -> int:
    from gateway.schemas import stale_schemas, write_schemas

    if args.check:
        stale = stale_schemas(args.out)
        for name in stale:
            print(f"{args.out / name}: stale; run `policy schema` to regenerate", file=sys.stderr)
        return 1 if stale else 0
    for path in write_schemas(args.out):
        print(f"wrote {path}")
    return 0
