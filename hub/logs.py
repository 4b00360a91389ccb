"""Structured logs: JSON lines (``HUB_LOG_FORMAT=json``) or readable text."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence

from pythonjsonlogger.json import JsonFormatter

# "--auth-token=x", "--token x", "?token=x&...", "password=x": the value goes, the name stays.
_SECRET_OPTION = re.compile(r"(--?[\w-]*(?:token|secret|password|passwd|api-?key)[\w-]*)([= ])(\S+)", re.IGNORECASE)
_SECRET_QUERY = re.compile(r"([?&;][\w-]*(?:token|secret|password|key)[\w-]*=)[^&\s]+", re.IGNORECASE)
REDACTED = "***"


def redact_command(command: Sequence[str] | str) -> str:
    """A command line fit for a log: the values of secret-looking options
    (``--auth-token=...``, ``--token ...``) and URL parameters replaced."""
    line = command if isinstance(command, str) else " ".join(command)
    line = _SECRET_OPTION.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", line)
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}{REDACTED}", line)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level"})
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "chromadb.telemetry", "httpx", "sentence_transformers", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
