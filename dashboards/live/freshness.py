"""How fresh a symbol's data is, as the live dashboard labels it: pure, from OpenSearch's answer only.

The dashboard reads nothing but OpenSearch, so the label comes from the symbol's newest enriched bar:
its ``ts`` and its ``source``, and the clock.

- ``replay``: the newest bar came from the shipped sample data (``source`` ``replay``). Old by
  design, so it is never called stale.
- ``live``: the newest bar ended at most ``LIVE_MINUTES`` ago (a realtime feed: a bar is fetched
  within a minute or two of its end).
- ``delayed``: at most ``DELAYED_MINUTES`` ago: Alpha Vantage's delayed entitlement is 15 minutes
  behind.
- ``stale``: older, labelled with the New York time of the newest bar's end ("stale since 10:42"),
  and ``market_closed`` when now is outside the weekday session window (04:00-20:00 New York), where
  no new bar is expected. Exchange holidays are the fetcher's business (it makes no call then); here
  a holiday shows as stale, which is what the chart shows too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
BAR_MINUTES = 1
LIVE_MINUTES = 3
DELAYED_MINUTES = 20
REPLAY_SOURCES = frozenset({"replay"})
SESSION_HOURS = (4, 20)  # extended session, New York time


@dataclass(frozen=True)
class Freshness:
    state: str  # live | delayed | stale | replay | none
    label: str
    age_s: int | None = None  # now - the newest bar's end
    market_closed: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def market_closed(now: datetime) -> bool:
    """True outside the weekday extended session (no bar is expected then)."""
    local = now.astimezone(NEW_YORK)
    return local.weekday() >= 5 or not SESSION_HOURS[0] <= local.hour < SESSION_HOURS[1]


def parse_utc(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(timezone.utc)


def freshness(last_ts: str | None, source: str | None, now: datetime) -> Freshness:
    """The label of a symbol whose newest bar started at ``last_ts`` (contract ``...Z``)."""
    if not last_ts:
        return Freshness("none", "no data")
    if source in REPLAY_SOURCES:
        return Freshness("replay", "replay of sample data")
    end = parse_utc(last_ts) + timedelta(minutes=BAR_MINUTES)
    age_s = max(0, int((now - end).total_seconds()))
    if age_s <= LIVE_MINUTES * 60:
        return Freshness("live", "live", age_s)
    if age_s <= DELAYED_MINUTES * 60:
        return Freshness("delayed", "delayed 15 min", age_s)
    local_end = end.astimezone(NEW_YORK)
    since = local_end.strftime("%H:%M") if local_end.date() == now.astimezone(NEW_YORK).date() \
        else local_end.strftime("%Y-%m-%d %H:%M")
    closed = market_closed(now)
    return Freshness("stale", f"stale since {since} ET" + (" (market closed)" if closed else ""), age_s, closed)
