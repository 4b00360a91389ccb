"""The widget's "agents online" follows the duty roster when set to auto."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_settings, start_hub


@pytest.mark.asyncio
async def test_agents_online_follows_the_duty_roster(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        sqlite_url, tmp_path, channels="webchat,fake", webchat_secrets="duty-test-secret", webchat_agents_online="auto"
    )
    hub = await start_hub(settings)
    try:
        webchat = hub.channel("webchat")
        assert await webchat.agents_are_online() is False
        await hub.api("POST", "/api/v1/agents/me/duty", role="agent", json={"on_duty": True})
        assert await webchat.agents_are_online() is True
        await hub.api("POST", "/api/v1/agents/me/duty", role="agent", json={"on_duty": False})
        assert await webchat.agents_are_online() is False
    finally:
        await hub.client.close()
