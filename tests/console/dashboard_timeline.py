"""A small timeline for the dashboard's tests, written with the report tests'
generator (``tests/hub/report_timeline.py``), whose figures are known by
construction and listed in ``EXPECTED`` with their arithmetic.

Every time is local to ``day`` (a date) in the generator's zone; the six
conversations span ``day - 1`` to ``day + 1``. Beside them: four CSAT
surveys, the knowledge base's search log and votes on its articles (for the
CSAT and content-gaps figures; the other reports do not read them).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.storage.schema import kb_search_log, kb_votes, messages
from tests.hub.report_timeline import Records, TimelineWriter

# What the dashboard's cards must read for the whole timeline.
EXPECTED = {
    "conversations": "6",
    # First responses 10, 30 and 20 min: median 20, p90 20 + 0.8 * 10 = 28 min.
    "first_response_median": "20 min",
    "first_response_p90": "28 min",
    # Resolutions 60, 90 and 60 min: median 60, p90 60 + 0.8 * 30 = 84 min.
    "resolution_median": "1 h",
    "resolution_p90": "1 h 24 min",
    # First response: t1 met, t2 breached (answered after 15 min); resolution: both met; t5 has no SLA.
    "sla_first_response": "50%",
    "sla_resolution": "100%",
    # The bot handled c1, c3, c4, c5; it contained c3 and c4; it resolved c3 with an answer.
    "containment": "50%",
    "automated_resolution": "25%",
    # Three of six conversations handed to people (c1, c2, c5).
    "handoff_rate": "50%",
    # Surveys after t1, t2 and t5 rated 5, 2 and 4; c3's not answered: (5 + 2 + 4) / 3, 3 of 4 answered.
    "csat_average": "3.67 / 5",
    "csat_response_rate": "75%",
    # NPS asked after two of those answers: 10 (a promoter) and 3 (a detractor); (1 - 1) / 2.
    "nps": "0",
    "nps_response_rate": "100%",
    # Of five questions, the bot answered one; three asks about PayPal and a portal search found nothing.
    "gaps_unanswered": "4",
}


def _last_message(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.max(messages.c.id))).scalar_one())


def write(conn: Connection, records: Records, day: date, ids: dict[str, Any]) -> None:
    w = TimelineWriter(conn, records)

    def at(clock: str, days: int = 0) -> str:
        return f"{(day + timedelta(days=days)).isoformat()} {clock}"

    vera, walt = w.agent("Vera", team="support"), w.agent("Walt", team="billing")
    ids.update(vera=vera, walt=walt)

    # c1: the bot answers, then hands off; Vera answers in 10 min and resolves in 60.
    c1 = w.conversation(w.contact("Carla"), "webchat", at("09:00"), "where is my order")
    w.bot(c1, at("09:01"), "answer", _last_message(conn))
    again = w.customer(c1, at("09:05"), "a person please")
    w.bot(c1, at("09:06"), "handoff", again)
    t1 = w.handoff(
        c1,
        at("09:06"),
        source="bot",
        reason="customer-request",
        first_response_due=timedelta(minutes=30),
        resolution_due=timedelta(hours=4),
    )
    w.claim(t1, vera, at("09:07"))
    w.reply(c1, vera, at("09:16"))
    w.note(c1, vera, at("09:20"))
    w.resolve(t1, vera, at("10:06"))

    # c2: an e-mail a keyword rule hands to billing; Walt answers after 30 min (due in 15), resolves in 90 (due in 120).
    c2 = w.conversation(w.contact("Dan"), "email", at("10:00"), "refund please")
    t2 = w.handoff(
        c2,
        at("10:00"),
        source="rule",
        reason="matched 'refund' rule",
        team="billing",
        priority="high",
        first_response_due=timedelta(minutes=15),
        resolution_due=timedelta(hours=2),
    )
    w.claim(t2, walt, at("10:01"))
    w.reply(c2, walt, at("10:30"))
    w.resolve(t2, walt, at("11:30"))

    # c3: the bot answers from the knowledge base and nobody else is needed.
    c3 = w.conversation(w.contact("Eve"), "webchat", at("11:00"), "opening hours?")
    w.bot(c3, at("11:01"), "answer", _last_message(conn))

    # c4: the bot only asks back; contained, not resolved by an answer.
    c4 = w.conversation(w.contact("Finn"), "webchat", at("12:00"), "hmm")
    w.bot(c4, at("12:01"), "clarify", _last_message(conn))

    # c5: past midnight, an urgent SMS the bot hands off (no SLA policy): 20 min, then 60.
    c5 = w.conversation(w.contact("Gus"), "sms", at("00:30", 1), "my account was hacked")
    w.bot(c5, at("00:31", 1), "handoff", _last_message(conn))
    t5 = w.handoff(c5, at("00:31", 1), source="bot", reason="urgent-issue", priority="urgent")
    w.claim(t5, vera, at("00:32", 1))
    w.reply(c5, vera, at("00:51", 1))
    w.resolve(t5, vera, at("01:31", 1))

    # c6: half past midnight the day before, a customer nobody answered yet.
    c6 = w.conversation(w.contact("Hal"), "webchat", at("00:30", -1), "hello?")
    ids.update(c1=c1, c2=c2, c3=c3, c4=c4, c5=c5, c6=c6, t1=t1, t2=t2, t5=t5)

    # CSAT: a survey at each resolve (and c3's, never answered), rated 5, 2 and 4.
    # NPS (no ticket): asked after c1's and c2's answers, answered 10 and 3.
    for conversation, ticket, channel, sent, rating, kind in (
        (c1, t1, "webchat", at("10:06"), 5, "csat"),
        (c2, t2, "email", at("11:30"), 2, "csat"),
        (c5, t5, "sms", at("01:31", 1), 4, "csat"),
        (c3, None, "webchat", at("11:30"), None, "csat"),
        (c1, None, "webchat", at("10:11"), 10, "nps"),
        (c2, None, "email", at("11:35"), 3, "nps"),
    ):
        w.survey(conversation, ticket, channel, sent, rating, kind=kind, answered_after=timedelta(minutes=5))

    # Content gaps: the same PayPal question three times the bot could not answer,
    # a portal search that found nothing, and one the bot answered.
    searches = [
        ("bot", "can i pay with paypal", "clarified", at("09:10")),
        ("bot", "can i pay with paypal", "clarified", at("11:10")),
        ("bot", "can i pay with paypal", "handed_off", at("12:10")),
        ("portal", "gift wrapping", "no_results", at("12:20")),
        ("bot", "opening hours", "answered", at("11:01")),
    ]
    conn.execute(
        sa.insert(kb_search_log),
        [
            {
                "created_at": w.at(when),
                "source": source,
                "collection": "default",
                "query": query,
                "confidence": 0.9 if outcome == "answered" else 0.2,
                "outcome": outcome,
            }
            for source, query, outcome, when in searches
        ],
    )
    # The returns article: two "no" votes and one "yes".
    conn.execute(
        sa.insert(kb_votes),
        [
            {
                "collection": "default",
                "article_id": "returns",
                "voter_key": f"voter-{n}",
                "helpful": n == 2,
                "created_at": w.at(at("13:00")),
            }
            for n in range(3)
        ],
    )
