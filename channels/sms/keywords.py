"""The keywords Twilio's opt-out management knows, and what each means to the hub.

A keyword counts only as the whole message (trimmed, any case, inner spaces
collapsed): "stop" opts out, "please stop texting me" is a message for the
team. With Advanced Opt-Out, Twilio classifies the message itself and says so
in ``OptOutType``; that word wins.
"""

from __future__ import annotations

from enum import StrEnum


class Keyword(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
OPT_IN_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})
# Twilio's OptOutType values (Advanced Opt-Out).
OPT_OUT_TYPES = {"STOP": Keyword.OPT_OUT, "START": Keyword.OPT_IN, "HELP": Keyword.HELP}


def keyword(body: str, opt_out_type: str | None = None) -> Keyword | None:
    if opt_out_type:
        return OPT_OUT_TYPES.get(opt_out_type.strip().upper())
    word = " ".join(body.split()).upper()
    if word in OPT_OUT_WORDS:
        return Keyword.OPT_OUT
    if word in OPT_IN_WORDS:
        return Keyword.OPT_IN
    if word in HELP_WORDS:
        return Keyword.HELP
    return None
