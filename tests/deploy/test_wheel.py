"""The wheel, installed into a fresh virtual environment from the runtime lock (no providers
extra), runs outside the repository: `init` in an empty directory, `serve` from there, a request
through the SDK, `demo`, and a clear error for a catalog that needs the providers extra. Without
the demo extra, the commands that need it say so; the tests that serve simulators install it."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
import yaml

from gateway.dev.demo import demo_key
from tests.harness import ROOT, free_port, wait_http

SOURCES = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "gateway",
    "policies",
    "deploy",
)


@dataclass
class Installed:
    wheel: Path
    bin: Path
    without_demo_extra: dict[str, subprocess.CompletedProcess[str]]

    def run(self, *args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "sovereign-gateway"), *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _run(*cmd: str | Path, cwd: Path | None = None) -> None:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"{cmd}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy: the build leaves nothing in the repository
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    # with the locked setuptools of this environment: no download at build time
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        root / "dist",
        source,
    )
    wheel = next((root / "dist").glob("sovereign_gateway-*.whl"))
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", venv)
    pip = venv / "bin" / "pip"
    _run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--require-hashes",
        "-r",
        ROOT / "requirements" / "pip.txt",
    )
    _run(pip, "install", "--quiet", "--require-hashes", "-r", ROOT / "requirements" / "runtime.txt")
    _run(pip, "install", "--quiet", "--no-deps", wheel)
    installed = Installed(wheel, venv / "bin", {})
    for command in (["demo"], ["serve", "--with-simulators"], ["simulate"]):
        done = installed.run(*command, cwd=root, timeout=60)
        installed.without_demo_extra[" ".join(command)] = done
    _run(
        pip,
        "install",
        "--quiet",
        "--require-hashes",
        "-r",
        ROOT / "requirements" / "runtime-demo.txt",
    )
    return installed


def test_the_wheel_ships_the_repositorys_policies_dashboard_and_alerts(
    installed: Installed,
) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        for path in [
            *(ROOT / "policies").rglob("*"),
            ROOT / "deploy/grafana/sovereign-gateway.json",
            ROOT / "deploy/prometheus/alerts.yaml",
        ]:
            if path.is_file():
                shipped = "gateway/bundled/" + str(path.relative_to(ROOT))
                assert shipped in names, shipped
                assert wheel.read(shipped) == path.read_bytes(), shipped


def test_the_core_install_has_no_litellm(installed: Installed) -> None:
    done = subprocess.run(
        [str(installed.bin / "python"), "-c", "import litellm"], capture_output=True, check=False
    )
    assert done.returncode != 0


def test_the_core_install_names_the_demo_extra_where_it_is_needed(installed: Installed) -> None:
    needs = {"demo": "openai, aiohttp", "serve --with-simulators": "aiohttp", "simulate": "aiohttp"}
    for command, done in installed.without_demo_extra.items():
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.splitlines() == [
            f"error: {command} needs the `demo` extra ({needs[command]}):"
            " pip install 'sovereign-gateway[demo]'"
        ]


@contextlib.contextmanager
def _serving(installed: Installed, directory: Path) -> Iterator[str]:
    port = free_port()
    cmd = [
        str(installed.bin / "sovereign-gateway"),
        "serve",
        "--with-simulators",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with (directory.parent / "serve.log").open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=directory, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/ready", 90.0, proc)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_init_then_serve_outside_the_repository_answers_the_sdk(
    installed: Installed, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = installed.run("init", "gw", cwd=empty)
    assert done.returncode == 0, done.stderr
    directory = empty / "gw"
    with _serving(installed, directory) as base:
        client = openai.OpenAI(
            base_url=base + "/v1", api_key=demo_key("eu-bank"), max_retries=0, timeout=30
        )
        raw = client.chat.completions.with_raw_response.create(
            model="mistral-small", messages=[{"role": "user", "content": "Hello"}], max_tokens=4
        )
        assert raw.parse().choices[0].message.content
        assert raw.headers["x-sovereign-deployment"].startswith("mistral-small@")
    assert (directory / "var" / "audit.sqlite3").is_file()


def test_the_demo_passes_from_an_empty_directory(installed: Installed, tmp_path: Path) -> None:
    done = installed.run("demo", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("all checks passed")
    assert list(tmp_path.iterdir()) == []


def test_a_litellm_backend_without_the_providers_extra_is_refused_naming_it(
    installed: Installed, tmp_path: Path
) -> None:
    assert installed.run("init", "gw", cwd=tmp_path).returncode == 0
    catalog_file = tmp_path / "gw" / "policies" / "catalog.yaml"
    catalog = yaml.safe_load(catalog_file.read_text())
    catalog["backends"]["anthropic-eu"] = {
        "kind": "litellm",
        "provider": "anthropic",
        "base_url": "https://api.anthropic.com",
        "country": "US",
        "operator": {"name": "Anthropic PBC", "jurisdiction": "US"},
    }
    catalog_file.write_text(yaml.safe_dump(catalog, sort_keys=False))
    done = installed.run("serve", "--port", str(free_port()), cwd=tmp_path / "gw")
    assert done.returncode == 2
    assert (
        "backend anthropic-eu is of kind litellm, which needs the `providers` extra" in done.stderr
    )
    assert "pip install 'sovereign-gateway[providers]'" in done.stderr
