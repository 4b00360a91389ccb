"""docker-compose.yml stays valid (tests never need a Docker engine)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_file_is_valid(tmp_path: Path) -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing: `make test` installs it")
        pytest.skip("docker-compose is not installed (make test installs it)")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    command = [tool, "--env-file", str(empty), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"]
    secrets = {"HUB_RASA_TOKEN": "test-token", "HUB_WEBCHAT_SECRETS": "test-secret"}
    base_env = {k: v for k, v in os.environ.items() if k not in secrets}
    result = subprocess.run(command, capture_output=True, text=True, env={**base_env, **secrets})
    assert result.returncode == 0, result.stderr
    # Without its secrets the stack refuses to start, naming what is missing.
    refused = subprocess.run(command, capture_output=True, text=True, env=base_env)
    assert refused.returncode != 0 and "set HUB_RASA_TOKEN in .env" in refused.stderr


def test_compose_services_use_the_hub_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"hub", "postgres", "redis", "chroma", "rasa", "actions"} <= set(services)
    env = services["hub"]["environment"]
    assert env["HUB_DATABASE_URL"].startswith("postgresql+asyncpg://")
    from hub.config import Settings

    fields = {f"HUB_{name.upper()}" for name in Settings.model_fields}
    for key in env:
        assert key in fields, f"{key} is not a hub setting"
    assert env["HUB_RASA_URL"] == "http://rasa:5005" and env["HUB_CHROMA_URL"] == "http://chroma:8000"
    # The action server reaches the hub's search API; Rasa reaches the action server.
    assert services["actions"]["environment"]["HUB_URL"] == "http://hub:8080"
    assert services["rasa"]["environment"]["ACTION_ENDPOINT_URL"] == "http://actions:5055/webhook"
