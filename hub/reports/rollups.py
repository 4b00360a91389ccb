"""Quarter-hour rollups: counts kept as rows are written, read instead of the rows.

A year of a busy hub is a million messages; a report over it should not
read them all. ``report_volume_quarters`` holds the volume report's counts
per UTC quarter-hour (``epoch // 900``) and channel. Triggers (migration
0019) add to it in the transaction of every insert into ``messages`` and
``conversations``, so the counts commit with their rows whatever wrote
them (ingest, the console, the bot bridge, a bulk load) and a report's
snapshot sees both or neither. Nothing is ever subtracted: an erasure moves
what it deletes to ``report_erased_*`` (``hub.reports.erased``), which the
volume report counts as well, and a merge changes no channel or time.

Why quarter-hours: every UTC offset in use today, and every daylight-saving
change, is a whole number of quarter-hours (India +05:30, Nepal +05:45,
Chatham +12:45, Lord Howe's half-hour DST), so every local hour, day and
ISO week in any zone is a run of whole quarter-hours, and a quarter-hour
lies in one bucket: the bucket of its first second (``sql.epoch_bucket_key``).
A range whose zone has an offset or a change off the quarter-hour grid
(local mean times, before 1972 in a few zones) is counted from the rows.

``split`` cuts a range into its whole quarter-hours (read from the rollup)
and the edges before and after them (read from the rows), so a range from
09:07 to 17:52 is still exact.

The bot report has two more tables kept by triggers: its facts per
conversation (``report_bot_conversations``: the bot replied, an agent did,
the bot answered from the knowledge base, a ticket was opened), so it reads
one row per conversation instead of joining its messages, and each bot
reply's decision and turn (``report_bot_turns``), read out of ``meta`` once.

Migration 0020 adds the agents report's replies and notes per quarter-hour
and agent (``report_agent_quarters``, read as the volume counts are), and
each ticket's first agent reply and its author (``tickets.first_reply_id``,
``first_responder_id``: the response-times report's responder), kept by
triggers on inserts into ``messages`` and ``tickets`` and deletes from
``messages``. The agents' counts, like the volume's, are never subtracted:
an erased agent's reply stays counted, as the report counts it from
``report_erased_messages``; the hub never deletes a user (whose messages'
``author_id`` the foreign key would clear). And each bot reply's ``since``
in ``report_bot_turns`` (the time of the reply before it of the same
decision and turn), so the bot report counts turns instead of COUNT
DISTINCT: a turn's first reply in a range is the one whose ``since`` is
NULL or before the range.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hub.reports.params import Bucketing

QUARTER = timedelta(minutes=15)
QUARTER_SECONDS = 900
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Split:
    """``quarters``: the whole quarter-hours ``[first, last)`` (epoch // 900)
    to read from a rollup, or None; ``edges``: the ``[start, end)`` ranges
    around them to read from the rows."""

    quarters: tuple[int, int] | None
    edges: list[tuple[datetime, datetime]]


def on_quarter_grid(bucketing: Bucketing) -> bool:
    """Whether every bucket of the range is a run of whole quarter-hours."""
    return all(offset % QUARTER_SECONDS == 0 for _, offset in bucketing.pieces) and all(
        begins % QUARTER_SECONDS == 0 for begins, _ in bucketing.transitions
    )


def split(bucketing: Bucketing) -> Split:
    start, end = bucketing.params.start, bucketing.params.end
    if not on_quarter_grid(bucketing):
        return Split(None, [(start, end)])
    first = -((_EPOCH - start) // QUARTER)  # the first quarter-hour starting at or after ``start``
    last = (end - _EPOCH) // QUARTER  # the first quarter-hour not wholly before ``end``
    if first >= last:
        return Split(None, [(start, end)])
    edges = []
    if start < quarter_start(first):
        edges.append((start, quarter_start(first)))
    if quarter_start(last) < end:
        edges.append((quarter_start(last), end))
    return Split((first, last), edges)


def quarter_start(quarter: int) -> datetime:
    return _EPOCH + quarter * QUARTER
