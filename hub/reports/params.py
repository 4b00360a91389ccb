"""A report's parameters and its buckets in the reader's time zone.

``from`` and ``to`` (ISO 8601; ``to`` exclusive) name instants: a date
alone (``2026-03-29``) or a time without an offset is read as wall-clock
time in ``tz``. Buckets are *local* hours, days or ISO weeks (Monday first)
in ``tz``: a day in Europe/Berlin is 23 hours on the last Sunday of March
and 25 on the last Sunday of October, and what happens at 00:30 local time
belongs to the local day, whatever its UTC date.

How the database puts a row in its bucket without a time-zone database
(SQLite has none): the zone's UTC offset is constant between transitions,
and a range of a few years holds a handful of them, so the local time of a
row is ``epoch + offset`` where the offset is a ``CASE`` over the
transitions in the range (``Bucketing.key``, built in ``hub.reports.sql``).
The bucket is then integer arithmetic on that local time: ``local // 86400``
is the local date, ``(local // 86400 + 3) // 7`` the ISO week (1970-01-01
was a Thursday). Hours are real hours, not local labels: the hour repeated
when clocks go back is two buckets (``key = (epoch + offset % 3600) //
3600``, so zones half an hour off UTC get their own hour edges too).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.errors import InvalidInput
from hub.models import Priority

MAX_RANGE = timedelta(days=3 * 366)
MAX_BUCKETS = 2000
# Bucket keys are integer divisions of epoch seconds, which must be positive.
EARLIEST = datetime(1971, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1)


class Bucket(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"


FILTERS = ("channel", "team", "agent", "priority")


@dataclass(frozen=True, slots=True)
class ReportParams:
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    zone: ZoneInfo
    bucket: Bucket = Bucket.DAY
    channel: str | None = None
    team: str | None = None
    agent: int | None = None
    priority: str | None = None

    @property
    def filters(self) -> dict[str, Any]:
        given = {name: getattr(self, name) for name in FILTERS}
        return {name: value for name, value in given.items() if value is not None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.start.astimezone(self.zone).isoformat(),
            "to": self.end.astimezone(self.zone).isoformat(),
            "tz": self.zone.key,
            "bucket": self.bucket.value,
            "filters": self.filters,
        }

    @classmethod
    def parse(
        cls,
        *,
        start: str | None,
        end: str | None,
        tz: str | None = None,
        bucket: str | None = None,
        channel: str | None = None,
        team: str | None = None,
        agent: str | int | None = None,
        priority: str | None = None,
    ) -> ReportParams:
        """From text (a query string, the command line); InvalidInput naming
        the parameter that is wrong."""
        zone = parse_zone(tz or "UTC")
        if not start or not end:
            raise InvalidInput("'from' and 'to' are required", details={"field": "from" if not start else "to"})
        begin, finish = parse_instant(start, zone, "from"), parse_instant(end, zone, "to")
        if finish <= begin:
            raise InvalidInput("'to' must be after 'from'", details={"field": "to"})
        if finish - begin > MAX_RANGE:
            raise InvalidInput("the range may span at most three years", details={"field": "to"})
        try:
            size = Bucket(bucket or "day")
        except ValueError:
            raise InvalidInput("bucket must be one of hour, day, week", details={"field": "bucket"}) from None
        if priority is not None:
            try:
                priority = Priority(priority).value
            except ValueError:
                raise InvalidInput(
                    "priority must be one of urgent, high, normal, low", details={"field": "priority"}
                ) from None
        agent_id: int | None = None
        if agent is not None and agent != "":
            text = str(agent)
            if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 2**63:
                raise InvalidInput("agent must be a user id", details={"field": "agent"})
            agent_id = int(text)
        params = cls(
            start=begin,
            end=finish,
            zone=zone,
            bucket=size,
            channel=channel or None,
            team=team or None,
            agent=agent_id,
            priority=priority,
        )
        count = len(Bucketing(params).buckets)
        if count > MAX_BUCKETS:
            raise InvalidInput(
                f"{count} {size.value} buckets is more than {MAX_BUCKETS}; choose a larger bucket or a shorter range",
                details={"field": "bucket"},
            )
        return params


def parse_zone(name: str) -> ZoneInfo:
    try:
        if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, IsADirectoryError, UnicodeError):
        raise InvalidInput("tz must be an IANA time zone name such as Europe/Berlin", details={"field": "tz"}) from None


def parse_instant(text: str, zone: ZoneInfo, field_name: str) -> datetime:
    """An ISO 8601 date or date-time; without an offset, wall-clock time in ``zone``."""
    text = text.strip()
    try:
        if len(text) == 10:
            value = datetime.combine(date.fromisoformat(text), time(0), tzinfo=zone)
        else:
            value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        value = value.astimezone(UTC)
        if not EARLIEST <= value <= LATEST:
            raise ValueError(text)
    except (ValueError, OverflowError):
        raise InvalidInput(
            f"'{field_name}' must be an ISO 8601 date or date-time between 1971 and 2200"
            " (2026-03-29 or 2026-03-29T09:00:00+02:00)",
            details={"field": field_name},
        ) from None
    return value


def utc_offset(zone: ZoneInfo, at: int) -> int:
    """The zone's UTC offset in seconds at epoch second ``at``."""
    offset = datetime.fromtimestamp(at, UTC).astimezone(zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


@dataclass(frozen=True, slots=True)
class BucketInfo:
    key: int
    label: str  # the local date (day, week: its Monday) or the local start of the hour
    start: datetime  # UTC


@dataclass(slots=True)
class Bucketing:
    """The buckets of a range, and how a UTC instant finds its own."""

    params: ReportParams
    # (first epoch second, offset) pieces covering the range, in order.
    pieces: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        start, end = int(self.params.start.timestamp()), int(self.params.end.timestamp())
        zone = self.params.zone
        self.pieces = [(start, utc_offset(zone, start))]
        # Offsets change at most a few times a year: probe every 6 hours, then
        # bisect each change down to the second it happens.
        probe = start
        while probe < end:
            step = min(probe + 6 * 3600, end)
            if utc_offset(zone, step) != self.pieces[-1][1]:
                low, high = probe, step  # offset(low) is the current one, offset(high) differs
                while high - low > 1:
                    middle = (low + high) // 2
                    if utc_offset(zone, middle) == self.pieces[-1][1]:
                        low = middle
                    else:
                        high = middle
                self.pieces.append((high, utc_offset(zone, high)))
                # A second change inside the same 6 hours (none in tzdata) would be found next probe.
                probe = high
                continue
            probe = step

    @property
    def transitions(self) -> list[tuple[int, int]]:
        """``(from_epoch, offset)`` after the first piece: where the offset changes."""
        return self.pieces[1:]

    @property
    def first_offset(self) -> int:
        return self.pieces[0][1]

    def offset_at(self, epoch: int) -> int:
        offset = self.first_offset
        for begins, value in self.transitions:
            if epoch >= begins:
                offset = value
        return offset

    def key_of(self, epoch: int) -> int:
        """The bucket of epoch second ``epoch`` (what the SQL expression computes)."""
        offset = self.offset_at(epoch)
        bucket = self.params.bucket
        if bucket == Bucket.HOUR:
            return (epoch + offset % 3600) // 3600
        days = (epoch + offset) // 86400
        return days if bucket == Bucket.DAY else (days + 3) // 7

    def info(self, key: int) -> BucketInfo:
        bucket, zone = self.params.bucket, self.params.zone
        if bucket == Bucket.HOUR:
            # The hour's first second, found from the first offset in play there.
            guess = key * 3600 - self.first_offset % 3600
            for begins, value in self.transitions:
                if guess >= begins:
                    guess = key * 3600 - value % 3600
            start = datetime.fromtimestamp(guess, UTC)
            return BucketInfo(key, start.astimezone(zone).isoformat(), start)
        day = _EPOCH_DAY + timedelta(days=key if bucket == Bucket.DAY else key * 7 - 3)
        start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        return BucketInfo(key, day.isoformat(), start)

    @property
    def buckets(self) -> list[BucketInfo]:
        """Every bucket the range touches, in order (empty ones too)."""
        first = self.key_of(int(self.params.start.timestamp()))
        last = self.key_of(int(self.params.end.timestamp()) - 1)
        if last - first > MAX_BUCKETS:
            return [self.info(first)] * (last - first + 1)  # only counted by ``parse``
        return [self.info(key) for key in range(first, last + 1)]
