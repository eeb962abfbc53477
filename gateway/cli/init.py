"""`sovereign-gateway init DIR`: a starting directory to run the gateway from, anywhere.

It holds the example policies (catalog, groups, tenants, keys), their JSON Schemas, policy tests and
a settings file whose relative paths are taken from the directory, so `sovereign-gateway serve`
started in it (or with `--config DIR/sovereign-gateway.yaml` from elsewhere) finds everything.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from gateway.cli.bundled import EXAMPLE_POLICIES, bundled
from gateway.settings import SETTINGS_FILE

SETTINGS_TEMPLATE = """\
# Settings of the Sovereign Gateway. Every key can also be given as an environment variable
# SGW_<KEY> (which wins over this file) or, for some, as a flag of `serve`.
# Relative paths are taken from this file's directory.
host: 127.0.0.1
port: 8080
policy_dir: policies            # catalog, groups, tenants, keys; reloaded when they change
# keys_file: policies/keys.yaml # the default
audit_store: sqlite:var/audit.sqlite3   # a postgresql:// DSN in production
audit_signing_key_file: var/audit-signing-key.pem  # created (mode 0600) when missing
log_format: json
# HTTPS on the listener; both files are read again when they change:
# tls_cert_file: tls/server.crt
# tls_key_file: tls/server.key
# tls_ca_file: tls/clients-ca.crt   # to require client certificates
"""


def add_init_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = sub.add_parser(
        "init",
        help="write a starting directory: example policies, their schemas and tests, settings",
    )
    init.add_argument("directory", type=Path, help="created if missing; must be empty")
    init.set_defaults(func=_init)


def missing_policy_dir(path: Path) -> str | None:
    """The message for a policy directory that is not there, or None if it is."""
    if path.is_dir():
        return None
    return (
        f"error: the policy directory {path} ({path.absolute()}) does not exist.\n"
        "Create a starting one with `sovereign-gateway init DIR` and run from DIR, or name an"
        " existing one with --policy-dir (or policy_dir in the settings file, SGW_POLICY_DIR)."
    )


def _init(args: argparse.Namespace) -> int:
    target: Path = args.directory
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        print(f"error: {target} exists and is not an empty directory", file=sys.stderr)
        return 2
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(bundled(EXAMPLE_POLICIES), target / "policies")
    (target / SETTINGS_FILE).write_text(SETTINGS_TEMPLATE, encoding="utf-8")
    print(f"wrote {target / SETTINGS_FILE} and the example policies in {target / 'policies'}")
    print(
        "Next:\n"
        f"  cd {target}\n"
        "  sovereign-gateway policy check policies && sovereign-gateway policy test policies\n"
        "  sovereign-gateway serve --with-simulators  # the example catalog, simulated backends\n"
        "Point the backends in policies/catalog.yaml at your vLLM servers and providers, and\n"
        "replace the public demo keys in policies/keys.yaml (`sovereign-gateway keys new`)."
    )
    return 0
