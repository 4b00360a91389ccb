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
    assert {"balancer", "hub-1", "hub-2", "postgres", "redis", "chroma", "rasa-1", "rasa-2", "actions"} <= set(services)
    from hub.config import Settings

    fields = {f"HUB_{name.upper()}" for name in Settings.model_fields}
    balancer_ip = services["balancer"]["networks"]["default"]["ipv4_address"]
    for name, rasa in (("hub-1", "rasa-1"), ("hub-2", "rasa-2")):
        env = services[name]["environment"]
        assert env["HUB_DATABASE_URL"].startswith("postgresql+asyncpg://") and env["HUB_REDIS_URL"]
        for key in env:
            assert key in fields, f"{key} is not a hub setting"
        assert env["HUB_RASA_URL"] == f"http://{rasa}:5005" and env["HUB_CHROMA_URL"] == "http://chroma:8000"
        # Only the balancer is trusted to name the client.
        assert env["HUB_TRUSTED_PROXIES"] == balancer_ip
        assert "readyz" in " ".join(services[name]["healthcheck"]["test"])
    # Two Rasas share trackers and locks through Redis (tests/bot/test_rasa_redis_stores.py reads that file with Rasa).
    for name in ("rasa-1", "rasa-2"):
        assert "bot/rasa/endpoints.redis.yml" in services[name]["command"][-1]
        assert services[name]["environment"]["ACTION_ENDPOINT_URL"] == "http://actions:5055/webhook"
    # The action server reaches the hub's search API through the balancer.
    assert services["actions"]["environment"]["HUB_URL"] == "http://balancer:8080"


def test_the_balancer_config_is_valid_and_checks_readyz() -> None:
    """HAProxy itself checks docker/haproxy.cfg (both hubs in rotation, health-checked on /readyz)."""
    tool = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("haproxy is missing: `make test` installs it")
        pytest.skip("haproxy is not installed (make test installs it)")
    config = ROOT / "docker" / "haproxy.cfg"
    result = subprocess.run([tool, "-c", "-f", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = config.read_text()
    assert "option httpchk GET /readyz" in text and "option forwardfor" in text and "timeout tunnel" in text
    assert "server hub-1 hub-1:8080 check" in text and "server hub-2 hub-2:8080 check" in text
