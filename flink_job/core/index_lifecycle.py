"""Time-partitioned OpenSearch indices: which index a record goes to, and which indices have expired.

Pure: no pyflink, no HTTP. The job names each record's index from the record's own time (so a
revision or a replay lands on the same document), the template loader (``infra/``) puts an alias
and an ISM retention policy per family, and ``python -m stack.retention`` deletes expired indices
where there is no ISM (the local OpenSearch). All of them take the families and defaults from here.

An index is ``<family>-<period>``: ``stock-indicators-2024.03`` holds the bars of March 2024 (UTC),
``stock-bars-5m-2024`` the 5-minute rollups of 2024. Readers use the family's name, an alias of
every index of the family (``GET stock-indicators/_search``); writes go to the concrete index,
because an alias over several indices takes no writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Iterable, Mapping

MONTHLY, YEARLY = "monthly", "yearly"
# The period is the first characters of the record's ISO-8601 UTC time, '-' written as '.':
# "2024-03-08T14:31:00Z" -> "2024.03" (monthly) or "2024" (yearly).
PERIOD_CHARS = {MONTHLY: 7, YEARLY: 4}
_PERIOD = {MONTHLY: re.compile(r"^(\d{4})\.(\d{2})$"), YEARLY: re.compile(r"^(\d{4})$")}


@dataclass(frozen=True)
class Family:
    """One kind of document: its alias (``name``), the field whose time picks the index, how much
    time one index covers, and how many days its documents are kept by default."""
    name: str
    time_field: str
    granularity: str
    retention_days: int

    def period_of(self, iso_time: str) -> str:
        """The index period of a record's time (ISO-8601, UTC): what the job's SQL computes too."""
        return iso_time[:PERIOD_CHARS[self.granularity]].replace("-", ".")

    def index_for(self, iso_time: str) -> str:
        return f"{self.name}-{self.period_of(iso_time)}"

    @property
    def pattern(self) -> str:
        return f"{self.name}-*"


# Monthly for the 1-minute families: ~21 trading days of bars per index keeps a shard far below
# the 10-50 GB OpenSearch recommends even at 1,000 symbols, and retention acts a month at a time.
# Yearly for the rollups: 5 to 15 times fewer documents, kept two years. Monthly for dead letters:
# few documents, and daily indices would mean dozens of near-empty shards.
FAMILIES = (
    Family("stock-indicators", "ts", MONTHLY, 90),
    Family("stock-signals", "ts", MONTHLY, 90),
    Family("stock-dlq", "received_at", MONTHLY, 30),
    Family("stock-bars-5m", "window_start", YEARLY, 730),
    Family("stock-bars-15m", "window_start", YEARLY, 730),
)
BY_NAME = {f.name: f for f in FAMILIES}


class RetentionError(ValueError):
    """A retention setting is malformed; the message names the family and the value."""


def family(name: str) -> Family:
    try:
        return BY_NAME[name]
    except KeyError:
        raise RetentionError(f"unknown index family {name!r} (known: {', '.join(BY_NAME)})") from None


def parse_retention(text: str | None) -> dict[str, int]:
    """Retention days per family: the defaults, overridden by ``"stock-dlq=14,stock-indicators=60"``
    (the ``RETENTION_DAYS`` setting locally and the stack's ``RetentionDays`` parameter on AWS)."""
    days = {f.name: f.retention_days for f in FAMILIES}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        family(name)
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise RetentionError(f"retention of {name} must be a whole number of days >= 1, got {value.strip()!r}")
        days[name] = int(value)
    return days


def period_bounds(fam: Family, period: str) -> tuple[date, date] | None:
    """First day of the period and first day after it; None if ``period`` is not one of ``fam``'s."""
    match = _PERIOD[fam.granularity].match(period)
    if not match:
        return None
    year = int(match.group(1))
    if fam.granularity == YEARLY:
        return date(year, 1, 1), date(year + 1, 1, 1)
    month = int(match.group(2))
    if not 1 <= month <= 12:
        return None
    return date(year, month, 1), date(year + (month == 12), month % 12 + 1, 1)


def family_of_index(index: str) -> tuple[Family, str] | None:
    """(family, period) of a partitioned index name; the longest family name wins, so
    ``stock-bars-15m-2024`` is never read as a ``stock-bars-1...`` index."""
    for fam in sorted(FAMILIES, key=lambda f: -len(f.name)):
        prefix = fam.name + "-"
        if index.startswith(prefix) and period_bounds(fam, index[len(prefix):]):
            return fam, index[len(prefix):]
    return None


def expired(indices: Iterable[str], today: date, retention: Mapping[str, int]) -> list[str]:
    """The indices whose every possible document is older than its family's retention: the day after
    the period ends is at least ``retention`` days before ``today``. An index is therefore deleted
    ``retention`` days after its period ends, so data lives between ``retention`` days and
    ``retention`` days plus one period. Names of no family are never chosen."""
    chosen = []
    for index in indices:
        found = family_of_index(index)
        if found is None:
            continue
        fam, period = found
        _, end = period_bounds(fam, period)
        if (today - end).days >= retention[fam.name]:
            chosen.append(index)
    return sorted(chosen)


def longest_period_days(fam: Family) -> int:
    return 366 if fam.granularity == YEARLY else 31


def ism_policy(fam: Family, retention_days: int) -> dict:
    """The Index State Management policy that deletes ``fam``'s indices on Amazon OpenSearch Service.

    ISM counts an index's age from its creation, which for a live index is about the start of its
    period; adding the longest period makes sure the newest document is ``retention_days`` old
    before the index goes. (An index created late, by a backfill of old bars, is kept that much
    longer: ISM cannot read the period from the name.)"""
    age = retention_days + longest_period_days(fam)
    return {"policy": {
        "description": f"delete {fam.pattern} {retention_days} days after the end of its "
                       f"{fam.granularity} period",
        "default_state": "hot",
        "states": [
            {"name": "hot", "actions": [],
             "transitions": [{"state_name": "delete", "conditions": {"min_index_age": f"{age}d"}}]},
            {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
        ],
        "ism_template": [{"index_patterns": [fam.pattern], "priority": 100}],
    }}


def ism_policy_id(fam: Family) -> str:
    return f"{fam.name}-retention"
