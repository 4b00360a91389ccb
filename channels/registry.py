"""Channel name -> class. Duplicate or unknown names fail at start-up."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from hub.errors import ConfigError

if TYPE_CHECKING:
    from channels.base import Channel
    from hub.config import Settings

# name -> "module:Class"; imported lazily so an unused channel's SDK is never loaded.
KNOWN_CHANNELS: dict[str, str] = {
    "fake": "channels.fake:FakeChannel",
    "webchat": "channels.webchat:WebchatChannel",
    "slack": "channels.slack:SlackChannel",
    "sms": "channels.sms:SmsChannel",
    "whatsapp": "channels.sms:WhatsappChannel",
    "email": "channels.email:EmailChannel",
}


def register(name: str, target: str) -> None:
    if name in KNOWN_CHANNELS and KNOWN_CHANNELS[name] != target:
        raise ConfigError(f"channel name {name!r} is registered twice")
    KNOWN_CHANNELS[name] = target


def channel_class(name: str) -> type[Channel]:
    try:
        target = KNOWN_CHANNELS[name]
    except KeyError:
        known = ", ".join(sorted(KNOWN_CHANNELS))
        raise ConfigError(f"unknown channel {name!r} (known: {known})") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if cls.name != name:
        raise ConfigError(f"channel class {target} is named {cls.name!r}, registered as {name!r}")
    return cls


def build_channels(settings: Settings) -> dict[str, Channel]:
    names = settings.channel_names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"channels listed twice in HUB_CHANNELS: {', '.join(duplicates)}")
    return {name: channel_class(name).from_settings(settings) for name in names}
