"""What the dashboard shows, made from the reports' own answers: headline
cards, chart specifications and the tables that stand in for the charts.

Everything a person reads is formatted here, once, in Python: the cards,
the captions, the tables (a chart's text alternative), the axis labels and
every tooltip's text. The page's script only hands each chart's
specification (``Chart.spec``, JSON in a ``data-chart`` attribute) to
Chart.js, so the browser never formats a figure and a test of the HTML
reads exactly what a person sees.

The input is ``ReportService.run``'s output for each report (the figures
``GET /api/v1/reports/{name}`` answers with), keyed by report name.

Longer than the house's ~400 lines on purpose: a chart's series, caption
and table are read from the same rows and must say the same thing, so each
chart is one function here, beside the formatting they all share.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from hub import survey_scales as surveys
from knowledge_base.urls import article_url

Report = dict[str, Any]

# Report names, in the order the dashboard runs them.
VOLUME, TIMES, SLA, BOT, AGENTS = "volume", "response-times", "sla", "bot", "agents"
CSAT, NPS, GAPS = "csat", "nps", "gaps"
NAMES = (VOLUME, TIMES, SLA, BOT, AGENTS, CSAT, NPS, GAPS)
GAP_ROWS = 10  # question clusters the dashboard lists, most asked first (the CSV has them all)

NONE = "—"  # a figure with nothing to count yet (no ticket answered, no SLA decided)

REASONS = {
    "customer-request": "Customer asked for a person",
    "urgent-issue": "Urgent issue",
    "complaint": "Complaint",
    "kb-unavailable": "Knowledge base unavailable",
    "bot-error": "Bot error",
    "keyword-rule": "Keyword rule",
    "assistant-unavailable": "Assistant unavailable",
    "agent": "Taken over by an agent",
    "other": "Other",
}


# --- formatting ---------------------------------------------------------------------
def duration_text(seconds: float | None) -> str:
    """``"45 s"``, ``"10 min"``, ``"2 h 10 min"``, ``"3 d 4 h"``."""
    if seconds is None:
        return NONE
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes = round(total / 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        hours, rest = divmod(minutes, 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    hours = round(total / 3600)
    days, rest = divmod(hours, 24)
    return f"{days} d {rest} h" if rest else f"{days} d"


def percent_text(rate: float | None) -> str:
    """A share (0..1) as ``"90%"`` or ``"66.7%"``."""
    if rate is None:
        return NONE
    text = f"{rate * 100:.1f}".rstrip("0").rstrip(".")
    return f"{text}%"


def percent_value(rate: float | None) -> float | None:
    return None if rate is None else round(rate * 100, 1)


def score_text(score: float | None, out_of: int | None) -> str:
    """An average rating, ``"4.25 / 5"``, or a score: ``"-12.5"``."""
    if score is None:
        return NONE
    return f"{score:g} / {out_of}" if out_of is not None else f"{score:g}".replace("-", "\u2212")


def count_text(count: int) -> str:
    return f"{count:,}".replace(",", "\u202f")  # a narrow no-break space between thousands


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count_text(count)} {one if count == 1 else (many or one + 's')}"


@dataclass(frozen=True, slots=True)
class BucketLabel:
    short: str  # on the axis: "14:00", "29 Mar"
    long: str  # in the table and the tooltip: "Sun 29 Mar 2026, 14:00 (+02:00)"


def bucket_label(text: str, bucket: str) -> BucketLabel:
    """The label of a report's bucket: a local hour (ISO date-time with its
    offset), a local date, or a week's Monday."""
    if bucket == "hour":
        moment = datetime.fromisoformat(text)
        offset = moment.strftime("%z")
        return BucketLabel(
            moment.strftime("%H:%M"),
            f"{moment.strftime('%a')} {moment.day} {moment.strftime('%b %Y, %H:%M')} ({offset[:3]}:{offset[3:]})",
        )
    day = date.fromisoformat(text)
    dated = f"{day.day} {day.strftime('%b')}"
    if bucket == "week":
        return BucketLabel(dated, f"Week of Mon {day.day} {day.strftime('%b %Y')}")
    return BucketLabel(dated, f"{day.strftime('%a')} {day.day} {day.strftime('%b %Y')}")


# --- what the page shows ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Figure:
    key: str  # data-figure, for scripts and tests
    label: str
    text: str


@dataclass(frozen=True, slots=True)
class Card:
    key: str
    title: str
    figures: list[Figure]
    detail: str
    note: str = ""  # which filters the card's report does not apply


@dataclass(frozen=True, slots=True)
class Table:
    caption: str
    columns: list[str]  # the first column heads the rows
    rows: list[list[str]]
    foot: list[str] | None = None


@dataclass(slots=True)
class Chart:
    key: str  # the element ids: chart-<key>, table-<key>
    title: str
    report: str  # the report it draws (its CSV is the chart's download)
    caption: str
    table: Table
    spec: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True, slots=True)
class GapQuestion:
    question: str  # the most asked phrasing of the cluster
    count: int
    examples: list[str]  # the other phrasings, most asked first


@dataclass(frozen=True, slots=True)
class UnhelpfulArticle:
    article: str  # "collection/article_id", or the id alone in the default collection
    url: str  # the article on the help portal
    unhelpful: int
    helpful: int
    share: str


@dataclass(frozen=True, slots=True)
class Gaps:
    """The content gaps: the unanswered question clusters and the articles voted unhelpful."""

    caption: str
    questions: list[GapQuestion]
    more: int  # clusters not listed here (in the CSV)
    articles: list[UnhelpfulArticle]
    note: str = ""


@dataclass(frozen=True, slots=True)
class Figures:
    cards: list[Card]
    charts: list[Chart]
    agents: Table
    agents_note: str
    gaps: Gaps
    channels: list[str]  # the channels the range holds (for the filter)
    empty: bool  # nothing at all happened in the range


def _dataset(label: str, values: list[Any], texts: list[str]) -> dict[str, Any]:
    return {"label": label, "data": values, "texts": texts}


def _spec(
    kind: str,
    labels: list[BucketLabel] | list[str],
    datasets: list[dict[str, Any]],
    *,
    axis: str,
    stacked: bool = False,
    horizontal: bool = False,
    percent: bool = False,
    integer: bool = False,
) -> dict[str, Any]:
    short: list[str | list[str]] = [label.short if isinstance(label, BucketLabel) else label for label in labels]
    long = [label.long if isinstance(label, BucketLabel) else label for label in labels]
    if horizontal:  # category names beside the bars: lines of a phone's width (Chart.js draws a list as lines)
        short = [textwrap.wrap(str(label), 16) or [""] for label in short]
    return {
        "type": kind,
        "labels": short,
        "titles": long,
        "datasets": datasets,
        "axis": axis,
        "stacked": stacked,
        "horizontal": horizontal,
        "percent": percent,
        "integer": integer,
    }


def _duration_unit(values: list[float | None]) -> tuple[float, str, str]:
    """The unit a chart of durations reads best in: (seconds per unit, axis title, short name)."""
    largest = max((v for v in values if v is not None), default=0.0)
    if largest < 2 * 3600:
        return 60.0, "Minutes", "min"
    if largest < 2 * 86400:
        return 3600.0, "Hours", "h"
    return 86400.0, "Days", "d"


def _labels(report: Report, rows: list[dict[str, Any]]) -> list[BucketLabel]:
    bucket = report["params"]["bucket"]
    return [bucket_label(row["bucket"], bucket) for row in rows]


def _all_series(report: Report, key: str) -> list[dict[str, Any]]:
    """Series rows of the ``key = "all"`` dimension (volume: channels, agents: agents)."""
    return [row for row in report["series"] if row.get(key) == "all"]


# --- cards --------------------------------------------------------------------------
def cards(reports: dict[str, Report], notes: dict[str, str]) -> list[Card]:
    volume = reports[VOLUME]["totals"][0]
    times = reports[TIMES]["totals"][0]
    sla = reports[SLA]["totals"][0]
    bot = reports[BOT]["totals"][0]
    csat = reports[CSAT]["totals"][0]
    nps = reports[NPS]["totals"][0]
    gaps = reports[GAPS]["totals"][0]
    decided = {target: sla[f"{target}_met"] + sla[f"{target}_breached"] for target in ("first_response", "resolution")}
    breaches = sla["first_response_breached"] + sla["resolution_breached"]
    pending = sla["first_response_pending"] + sla["resolution_pending"]
    return [
        Card(
            "conversations",
            "Conversations",
            [Figure("conversations", "New", count_text(volume["new_conversations"]))],
            f"{plural(volume['inbound'], 'customer message')}, {plural(volume['outbound'], 'reply', 'replies')}",
            notes[VOLUME],
        ),
        Card(
            "first-response",
            "First response",
            [
                Figure("first_response_median", "Median", duration_text(times["first_response_median_s"])),
                Figure("first_response_p90", "90th percentile", duration_text(times["first_response_p90_s"])),
            ],
            f"{count_text(times['first_response_count'])} of {plural(times['tickets'], 'ticket')} answered",
            notes[TIMES],
        ),
        Card(
            "resolution",
            "Resolution",
            [
                Figure("resolution_median", "Median", duration_text(times["resolution_median_s"])),
                Figure("resolution_p90", "90th percentile", duration_text(times["resolution_p90_s"])),
            ],
            f"{count_text(times['resolution_count'])} of {plural(times['tickets'], 'ticket')} resolved",
            notes[TIMES],
        ),
        Card(
            "sla",
            "SLA attainment",
            [
                Figure("sla_first_response", "First response", percent_text(sla["first_response_attainment"])),
                Figure("sla_resolution", "Resolution", percent_text(sla["resolution_attainment"])),
            ],
            f"{plural(decided['first_response'] + decided['resolution'], 'target')} decided: "
            f"{plural(breaches, 'breach', 'breaches')}, {count_text(pending)} pending",
            notes[SLA],
        ),
        Card(
            "bot",
            "Bot",
            [
                Figure("containment", "Containment", percent_text(bot["containment_rate"])),
                Figure("automated_resolution", "Automated resolution", percent_text(bot["automated_resolution_rate"])),
            ],
            f"of {plural(bot['bot_handled'], 'conversation')} the bot handled",
            notes[BOT],
        ),
        Card(
            "handoffs",
            "Handoff rate",
            [Figure("handoff_rate", "Handed to people", percent_text(bot["handoff_rate"]))],
            f"{count_text(bot['handed_off'])} of {plural(bot['conversations'], 'conversation')}",
            notes[BOT],
        ),
        Card(
            "csat",
            "Customer satisfaction",
            [
                Figure("csat_average", "Average rating", score_text(csat["average"], 5)),
                Figure("csat_response_rate", "Response rate", percent_text(csat["response_rate"])),
            ],
            f"{count_text(csat['answered'])} of {plural(csat['sent'], 'survey')} answered",
            notes[CSAT],
        ),
        Card(
            "nps",
            "Net Promoter Score",
            [
                Figure("nps", "Promoters minus detractors", score_text(nps["nps"], None)),
                Figure("nps_response_rate", "Response rate", percent_text(nps["response_rate"])),
            ],
            f"{plural(nps['promoters'], 'promoter')}, {plural(nps['detractors'], 'detractor')} "
            f"of {plural(nps['answered'], 'answer')}",
            notes[NPS],
        ),
        Card(
            "gaps",
            "Content gaps",
            [Figure("gaps_unanswered", "Questions without a good answer", count_text(gaps["no_good_answer"]))],
            f"of {plural(gaps['asked'], 'question')} asked; {plural(gaps['clusters'] or 0, 'topic')}",
            notes[GAPS],
        ),
    ]


# --- charts -------------------------------------------------------------------------
def volume_chart(report: Report, note: str) -> Chart:
    channels = [row["channel"] for row in report["totals"][1:]]
    per_bucket: dict[str, dict[str, int]] = {}
    for row in report["series"]:
        per_bucket.setdefault(row["bucket"], {})[row["channel"]] = row["new_conversations"]
    rows = _all_series(report, "channel")
    labels = _labels(report, rows)
    names = channels or ["all"]
    datasets = []
    for channel in names:
        values = [per_bucket[row["bucket"]].get(channel, 0) for row in rows]
        datasets.append(
            _dataset("All channels" if channel == "all" else channel, values, [count_text(v) for v in values])
        )
    totals = {row["channel"]: row["new_conversations"] for row in report["totals"]}
    parts = ", ".join(f"{channel} {count_text(totals[channel])}" for channel in channels if totals[channel])
    caption = f"{plural(totals['all'], 'new conversation')} in this range" + (f": {parts}." if parts else ".")
    table = Table(
        "New conversations by channel",
        ["Period", *channels, "Total"],
        [
            [
                label.long,
                *(count_text(per_bucket[row["bucket"]].get(c, 0)) for c in channels),
                count_text(row["new_conversations"]),  # the "all" row: every channel
            ]
            for label, row in zip(labels, rows, strict=True)
        ],
        ["Total", *(count_text(totals[c]) for c in channels), count_text(totals["all"])],
    )
    return Chart(
        "volume",
        "New conversations by channel",
        VOLUME,
        caption,
        table,
        _spec("bar", labels, datasets, axis="Conversations", stacked=True, integer=True),
        note,
    )


def time_chart(report: Report, target: str, note: str) -> Chart:
    """First response (``target="first_response"``) or resolution time: median and p90 per bucket."""
    rows = report["series"]
    labels = _labels(report, rows)
    median = [row[f"{target}_median_s"] for row in rows]
    p90 = [row[f"{target}_p90_s"] for row in rows]
    unit, axis, short = _duration_unit(median + p90)
    datasets = [
        _dataset(name, [None if v is None else round(v / unit, 2) for v in values], [duration_text(v) for v in values])
        for name, values in (("Median", median), ("90th percentile", p90))
    ]
    totals = report["totals"][0]
    title = "First response time" if target == "first_response" else "Resolution time"
    done = "answered" if target == "first_response" else "resolved"
    count = totals[f"{target}_count"]
    caption = (
        f"Median {duration_text(totals[f'{target}_median_s'])}, 90th percentile "
        f"{duration_text(totals[f'{target}_p90_s'])}, over {plural(count, 'ticket')} {done} "
        f"({'business hours' if report['params'].get('business_hours') else 'calendar time'})."
        if count
        else f"No ticket opened in this range was {done}."
    )
    table = Table(
        f"{title} per period ({short} on the chart)",
        ["Period", "Tickets", done.capitalize(), "Median", "90th percentile"],
        [
            [
                label.long,
                count_text(row["tickets"]),
                count_text(row[f"{target}_count"]),
                duration_text(row[f"{target}_median_s"]),
                duration_text(row[f"{target}_p90_s"]),
            ]
            for label, row in zip(labels, rows, strict=True)
        ],
        [
            "Whole range",
            count_text(totals["tickets"]),
            count_text(count),
            duration_text(totals[f"{target}_median_s"]),
            duration_text(totals[f"{target}_p90_s"]),
        ],
    )
    key = "first-response" if target == "first_response" else "resolution"
    return Chart(key, title, TIMES, caption, table, _spec("line", labels, datasets, axis=axis), note)


def sla_chart(report: Report, note: str) -> Chart:
    rows = report["series"]
    labels = _labels(report, rows)
    datasets = [
        _dataset(
            name,
            [percent_value(row[f"{target}_attainment"]) for row in rows],
            [percent_text(row[f"{target}_attainment"]) for row in rows],
        )
        for name, target in (("First response", "first_response"), ("Resolution", "resolution"))
    ]
    totals = report["totals"][0]

    def decided(target: str) -> str:
        met, breached = totals[f"{target}_met"], totals[f"{target}_breached"]
        if not met + breached:
            return "none decided yet"
        return f"{percent_text(totals[f'{target}_attainment'])} ({count_text(met)} of {count_text(met + breached)})"

    caption = (
        f"Targets met: first response {decided('first_response')}, resolution {decided('resolution')}."
        if totals["with_sla"]
        else "No ticket with an SLA target opened in this range."
    )
    columns = ["Period", "Tickets"]
    for name in ("First response", "Resolution"):
        columns += [f"{name} met", f"{name} breached", f"{name} pending", f"{name} attainment"]

    def cells(row: dict[str, Any]) -> list[str]:
        out = [count_text(row["tickets"])]
        for target in ("first_response", "resolution"):
            out += [count_text(row[f"{target}_{state}"]) for state in ("met", "breached", "pending")]
            out.append(percent_text(row[f"{target}_attainment"]))
        return out

    table = Table(
        "SLA targets met per period",
        columns,
        [[label.long, *cells(row)] for label, row in zip(labels, rows, strict=True)],
        ["Whole range", *cells(totals)],
    )
    return Chart(
        "sla",
        "SLA attainment",
        SLA,
        caption,
        table,
        _spec("line", labels, datasets, axis="Per cent", percent=True),
        note,
    )


def bot_chart(report: Report, note: str) -> Chart:
    rows = report["series"]
    labels = _labels(report, rows)
    lines = (
        ("Containment", "containment_rate"),
        ("Automated resolution", "automated_resolution_rate"),
        ("Handoff rate", "handoff_rate"),
    )
    datasets = [
        _dataset(name, [percent_value(row[key]) for row in rows], [percent_text(row[key]) for row in rows])
        for name, key in lines
    ]
    totals = report["totals"][0]
    caption = (
        f"The bot handled {plural(totals['bot_handled'], 'conversation')} and contained "
        f"{percent_text(totals['containment_rate'])} of them without a person; "
        f"{percent_text(totals['automated_resolution_rate'])} were resolved by a knowledge-base answer. "
        f"{percent_text(totals['handoff_rate'])} of all new conversations were handed to people."
        if totals["conversations"]
        else "No conversation started in this range."
    )

    def cells(row: dict[str, Any]) -> list[str]:
        counts = ("conversations", "bot_handled", "contained", "automated_resolutions", "handed_off")
        return [count_text(row[name]) for name in counts] + [percent_text(row[key]) for _, key in lines]

    table = Table(
        "The bot's containment, automated resolutions and handoffs per period",
        [
            "Period",
            "Conversations",
            "Bot-handled",
            "Contained",
            "Resolved by an answer",
            "Handed off",
            "Containment",
            "Automated resolution",
            "Handoff rate",
        ],
        [[label.long, *cells(row)] for label, row in zip(labels, rows, strict=True)],
        ["Whole range", *cells(totals)],
    )
    return Chart(
        "bot",
        "Bot containment",
        BOT,
        caption,
        table,
        _spec("line", labels, datasets, axis="Per cent", percent=True),
        note,
    )


def reasons_chart(report: Report, note: str) -> Chart:
    reasons = report["groups"].get("reason", [])
    names = [REASONS.get(row["reason"], row["reason"]) for row in reasons]
    counts = [row["handoffs"] for row in reasons]
    total = sum(counts)
    caption = (
        f"{plural(total, 'handoff')}; the most frequent reason: {names[0]} ({count_text(counts[0])})."
        if reasons
        else "No handoff in this range."
    )
    table = Table(
        "Handoffs by reason",
        ["Reason", "Handoffs", "Share"],
        [[name, count_text(row["handoffs"]), percent_text(row["share"])] for name, row in zip(names, reasons)],
        ["Total", count_text(total), percent_text(1.0) if total else NONE],
    )
    datasets = [_dataset("Handoffs", counts, [count_text(c) for c in counts])]
    return Chart(
        "reasons",
        "Handoffs by reason",
        BOT,
        caption,
        table,
        _spec("bar", names, datasets, axis="Handoffs", horizontal=True, integer=True),
        note,
    )


SURVEY_TITLES = {CSAT: "Customer satisfaction", NPS: "Net Promoter Score"}


def survey_headline(report: Report) -> str:
    """What a survey chart's caption opens with: CSAT's average rating, NPS's score."""
    totals = report["totals"][0]
    if report["report"] == CSAT:
        return f"Average rating {score_text(totals['average'], 5)}"
    return f"NPS {score_text(totals['nps'], None)} (promoters 9-10 minus detractors 0-6)"


def rating_chart(report: Report, note: str, scale: surveys.Scale) -> Chart:
    """The distribution of a survey's answers over the range (CSAT 1-5, NPS 0-10): one bar per answer."""
    key, title, ratings, summary = scale.kind, SURVEY_TITLES[scale.kind], scale.labels(), survey_headline(report)
    totals = report["totals"][0]
    counts = [totals[f"rating_{rating}"] for rating, _ in ratings]
    answered, sent = totals["answered"], totals["sent"]
    names = [label for _, label in ratings]
    caption = (
        f"{summary} from {plural(answered, 'answer')}; {count_text(answered)} of {plural(sent, 'survey')} "
        f"answered ({percent_text(totals['response_rate'])})."
        if answered
        else f"No survey answered in this range ({plural(sent, 'survey')} sent)."
    )
    table = Table(
        f"{title}: answers by rating",
        ["Rating", "Answers", "Share"],
        [[name, count_text(count), percent_text(rate_of(count, answered))] for name, count in zip(names, counts)],
        ["All answers", count_text(answered), percent_text(1.0) if answered else NONE],
    )
    datasets = [_dataset("Answers", counts, [count_text(c) for c in counts])]
    return Chart(
        key, title, report["report"], caption, table, _spec("bar", names, datasets, axis="Answers", integer=True), note
    )


def rate_of(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def gaps_view(report: Report, note: str) -> Gaps:
    totals = report["totals"][0]
    clusters = report["groups"].get("clusters", [])
    questions = [
        GapQuestion(row["question"], row["count"], [text for text in row["examples"] if text != row["question"]])
        for row in clusters[:GAP_ROWS]
    ]
    articles = [
        UnhelpfulArticle(
            row["article_id"] if row["collection"] == "default" else f"{row['collection']}/{row['article_id']}",
            article_url(row["collection"], row["article_id"]),
            row["unhelpful"],
            row["helpful"],
            percent_text(row["unhelpful_share"]),
        )
        for row in report["groups"].get("unhelpful", [])
    ]
    caption = (
        f"{plural(totals['no_good_answer'], 'question')} of {count_text(totals['asked'])} asked found no good "
        f"answer, in {plural(len(clusters), 'topic')}"
        + (f"; the most asked: “{clusters[0]['question']}” ({count_text(clusters[0]['count'])})." if clusters else ".")
        if totals["asked"]
        else "No question was asked of the help centre or the bot in this range."
    )
    return Gaps(caption, questions, max(0, len(clusters) - GAP_ROWS), articles, note)


def agents_table(report: Report) -> Table:
    overall, *agents = report["totals"]
    figures = ("replies", "notes", "claims", "resolves")

    def name(row: dict[str, Any]) -> str:
        return row["agent_name"] or f"User #{row['agent']}"

    return Table(
        "Agent activity in this range",
        ["Agent", "Replies", "Notes", "Claims", "Resolves"],
        [[name(row), *(count_text(row[f]) for f in figures)] for row in agents],
        ["All agents", *(count_text(overall[f]) for f in figures)] if agents else None,
    )


def figures(reports: dict[str, Report], notes: dict[str, str]) -> Figures:
    """Cards, charts and the agents' table of one range. ``notes``: per report,
    which of the chosen filters it does not apply (empty when all apply)."""
    volume = reports[VOLUME]
    charts = [
        volume_chart(volume, notes[VOLUME]),
        time_chart(reports[TIMES], "first_response", notes[TIMES]),
        time_chart(reports[TIMES], "resolution", notes[TIMES]),
        sla_chart(reports[SLA], notes[SLA]),
        bot_chart(reports[BOT], notes[BOT]),
        reasons_chart(reports[BOT], notes[BOT]),
        rating_chart(reports[CSAT], notes[CSAT], surveys.CSAT),
        rating_chart(reports[NPS], notes[NPS], surveys.NPS),
    ]
    agents = reports[AGENTS]
    empty = (
        not volume["totals"][0]["new_conversations"]
        and not volume["totals"][0]["inbound"]
        and not reports[TIMES]["totals"][0]["tickets"]
        and not agents["totals"][0]["replies"]
    )
    return Figures(
        cards=cards(reports, notes),
        charts=charts,
        agents=agents_table(agents),
        agents_note=notes[AGENTS],
        gaps=gaps_view(reports[GAPS], notes[GAPS]),
        channels=[row["channel"] for row in volume["totals"][1:]],
        empty=empty,
    )
