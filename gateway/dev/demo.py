"""`sovereign-gateway demo`: a scripted tour through the official OpenAI SDK.

It starts the gateway with its bundled simulated backends on a free port (or uses `--base-url`),
shows requests served where policy allows and refused where it does not, and exits non-zero if
anything it shows does not hold.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai

from gateway.dev.ports import free_port

DEMO_KEYS = (
    ("fr-public-body", "sk-sgw-demofrpublic-demo-key-not-a-secret"),
    ("eu-bank", "sk-sgw-demoeubank-demo-key-not-a-secret"),
    ("research-lab", "sk-sgw-demolab0-demo-key-not-a-secret"),
    ("acme-dev", "sk-sgw-demoacme-demo-key-not-a-secret"),
)


def demo_key(tenant: str) -> str:
    return dict(DEMO_KEYS)[tenant]


def wait_ready(
    base: str, timeout_s: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the gateway exited with status {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(base + "/ready", timeout=1) as r:  # noqa: S310
            if r.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"gateway at {base} did not become ready in {timeout_s}s")


@contextlib.contextmanager
def running_gateway(policy_dir: Path) -> Iterator[str]:
    """The gateway and its simulated backends on free ports, its audit log in a temporary
    directory: the demo leaves nothing behind in the directory it was started from."""
    port = free_port()
    state = tempfile.TemporaryDirectory(prefix="sovereign-gateway-demo-")
    env = {
        **os.environ,
        "SGW_AUDIT_STORE": f"sqlite:{Path(state.name) / 'audit.sqlite3'}",
        "SGW_AUDIT_SIGNING_KEY_FILE": str(Path(state.name) / "audit-signing-key.pem"),
    }
    cmd = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--with-simulators",
        "--port",
        str(port),
        "--policy-dir",
        str(policy_dir),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(cmd, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, process=process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        state.cleanup()


class Tour:
    def __init__(self, base: str, out: Callable[[str], None]) -> None:
        self.base = base
        self.out = out
        self.failures = 0

    def client(self, tenant: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.base + "/v1", api_key=demo_key(tenant), max_retries=0, timeout=30
        )

    def check(self, ok: bool, what: str) -> None:
        self.out(("  ok   " if ok else "  FAIL ") + what)
        self.failures += 0 if ok else 1

    def run(self) -> int:
        self.out(f"Sovereign Gateway demo against {self.base}\n")
        self.models()
        self.served_in_france()
        self.streamed()
        self.refused()
        self.data_class()
        self.out(
            "\nall checks passed" if not self.failures else f"\n{self.failures} check(s) failed"
        )
        return 0 if not self.failures else 1

    def models(self) -> None:
        self.out("1. Each tenant sees only the models its policy lets it reach")
        for tenant in ("fr-public-body", "eu-bank"):
            names = [m.id for m in self.client(tenant).models.list()]
            self.out(f"   {tenant}: {', '.join(names)}")
            self.check(bool(names), f"{tenant} has models")
        fr = {m.id for m in self.client("fr-public-body").models.list()}
        self.check("gpt-4o" not in fr, "gpt-4o (US operator) is not listed for fr-public-body")

    def served_in_france(self) -> None:
        self.out("\n2. A French public body asks for mistral-small")
        raw = self.client("fr-public-body").chat.completions.with_raw_response.create(
            model="mistral-small", messages=[{"role": "user", "content": "Bonjour"}], max_tokens=8
        )
        reply = raw.parse()
        h = raw.headers
        self.out(f"   answer: {reply.choices[0].message.content!r}")
        self.out(
            f"   served by {h.get('x-sovereign-deployment')} in {h.get('x-sovereign-country')}"
            f", decision {h.get('x-sovereign-decision-id')}"
        )
        self.check(h.get("x-sovereign-country") == "FR", "inference ran in France")

    def streamed(self) -> None:
        self.out("\n3. An EU bank streams from its default alias")
        stream = self.client("eu-bank").chat.completions.create(
            model="chat-default",
            messages=[{"role": "user", "content": "Hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            usage = chunk.usage or usage
        self.out(f"   streamed: {text!r}; usage: {usage.total_tokens if usage else None} tokens")
        self.check(bool(text) and usage is not None, "stream delivered text and a usage chunk")

    def refused(self) -> None:
        self.out("\n4. The French public body asks for gpt-4o (Azure in Sweden, US-controlled)")
        try:
            self.client("fr-public-body").chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Bonjour"}]
            )
        except openai.PermissionDeniedError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            self.out(f"   refused (403 {body.get('type')}): {body.get('message')}")
            self.check(body.get("type") == "policy_violation", "refused by policy, with reasons")
            return
        self.check(False, "gpt-4o should have been refused")

    def data_class(self) -> None:
        self.out("\n5. The bank marks a request secret: it must stay self-hosted in FR or DE")
        raw = self.client("eu-bank").chat.completions.with_raw_response.create(
            model="mistral-small",
            messages=[{"role": "user", "content": "Q3 positions"}],
            extra_headers={"x-data-classification": "secret"},
            max_tokens=8,
        )
        where = raw.headers.get("x-sovereign-deployment")
        self.out(f"   served by {where} in {raw.headers.get('x-sovereign-country')}")
        self.check(
            where in ("mistral-small@vllm-paris", "mistral-small@vllm-frankfurt"),
            "secret request stayed on self-hosted FR/DE",
        )
        try:
            self.client("eu-bank").chat.completions.create(
                model="mistral-small",
                messages=[{"role": "user", "content": "x"}],
                extra_headers={"x-data-classification": "top-secret-typo"},
            )
        except openai.BadRequestError as exc:
            self.out(f"   unknown class refused: {exc.message}")
            self.check(True, "an unknown data class is refused, never ignored")
            return
        self.check(False, "an unknown data class should be refused")


def run_demo(base_url: str | None, policy_dir: Path) -> int:
    if base_url:
        return Tour(base_url.rstrip("/").removesuffix("/v1"), print).run()
    try:
        with running_gateway(policy_dir) as base:
            return Tour(base, print).run()
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
