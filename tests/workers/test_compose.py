"""compose.yaml passes Debian's ``docker-compose config`` (no engine needed) and every command exists here.
tests/compose/test_stack.py brings the stack up for real."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from api.cli import app
from workers.celery_app import QUEUE_FAMILIES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose (Debian package) is needed to validate compose.yaml"
    result = subprocess.run([exe, "-f", str(REPO / "compose.yaml"), "config"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "RAY_AUTH_TOKEN": "test-token"}, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _commands(service: dict) -> list[list[str]]:
    """Each shell-level command of a service (``sh -c "a && exec b"`` gives [a, b])."""
    command = service.get("command", [])
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part.strip().removeprefix("exec ")) for part in command[2].split("&&")]
    return [command]


def test_services_queues_and_volumes(compose: dict) -> None:
    services = compose["services"]
    workers = {f"worker-{family}" for family in QUEUE_FAMILIES}
    assert {"redis", "api", "ray-head", "ray-worker"} | workers <= set(services)
    redis = services["redis"]["command"]
    assert "--appendonly" in redis and redis[redis.index("--dir") + 1] in _volume_targets(services["redis"])
    assert {s["image"] for s in services.values()} == {"mediaforge:latest"}, "one image for every service"
    for name, service in services.items():
        for target in service.get("depends_on", {}):
            assert target in services, f"{name} depends on undefined {target}"
        if name == "redis":
            continue
        env = service["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"] == "test-token", name
        assert env["MEDIAFORGE_REDIS_URL"].startswith("redis://redis:"), name
        assert "/data/artifacts" in _volume_targets(service), name
        assert service["shm_size"], name
    for name in ("redis", "api", "ray-head"):
        assert services[name]["healthcheck"]["test"], name
    queues = sorted(c[c.index("--queues") + 1] for s in workers for c in _commands(services[s]) if "--queues" in c)
    assert queues == sorted(QUEUE_FAMILIES)


def _volume_targets(service: dict) -> list[str]:
    """Short (``src:dst[:mode]``) and long (``{target: ...}``) volume syntax."""
    return [v.split(":")[1] if isinstance(v, str) else v["target"] for v in service.get("volumes", [])]


def test_every_command_exists_in_the_package(compose: dict) -> None:
    scripts = {ep.name for ep in entry_points(group="console_scripts")}
    runner = CliRunner()
    checked = 0
    for name, service in compose["services"].items():
        if name == "redis":
            continue  # redis-server, from the image's Debian base
        for command in _commands(service):
            assert command[0] in scripts, f"{name}: {command[0]} is not a console script of this environment"
            if command[0] == "mediaforge":
                result = runner.invoke(app, [*command[1:], "--help"])
                assert result.exit_code == 0, f"{name}: {shlex.join(command)}: {result.output}"
                checked += 1
    assert checked >= 2 + len(QUEUE_FAMILIES) - 1
