"""When the market can produce bars: the fetcher calls Alpha Vantage only then.

Pure (no I/O): a UTC instant in, a ``Decision`` out. The rules, in New York time:

- no session on Saturdays, Sundays and NYSE holidays (the ``holidays`` package's NYSE calendar,
  which also knows one-off closures such as national days of mourning);
- a session runs 09:30-16:00, or 04:00-20:00 with extended hours (``EXTENDED_HOURS``);
- half days close early, at 13:00 (17:00 with extended hours): the day after Thanksgiving, and
  July 3 and December 24 when they are trading weekdays;
- the fetch window is the session shifted by the entitlement's lag (a delayed bar is served 15
  minutes after it ends), plus a minute's grace after the close so that the last bar, published a
  moment after it ends, is fetched too.

The EventBridge schedule fires on a superset (every minute of the session hours, Monday to Friday,
in New York time); this module decides holidays, half days and the exact bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Mapping
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
REGULAR = (time(9, 30), time(16, 0))
EXTENDED = (time(4, 0), time(20, 0))
EARLY_CLOSE = {False: time(13, 0), True: time(17, 0)}  # keyed by extended hours
GRACE = timedelta(minutes=1)
THANKSGIVING = "Thanksgiving Day"


@dataclass(frozen=True)
class Session:
    """One trading day's session in New York time; ``half_day`` when it closes early."""

    day: date
    open: datetime
    close: datetime
    half_day: bool = False


@dataclass(frozen=True)
class Decision:
    """Whether to fetch now. ``reason`` says why not (empty when open); ``session`` is today's, if any."""

    open: bool
    reason: str
    session: Session | None
    window_start: datetime | None = None  # the fetch window: session shifted by the lag, plus grace
    window_end: datetime | None = None


@lru_cache(maxsize=8)
def _calendar(year: int) -> Mapping[date, str]:
    # Imported on first use, like boto3: the handler's cold import stays short, and a warm
    # container keeps the year's calendar.
    import holidays

    return holidays.financial_holidays("NYSE", years=year)


def holiday_name(day: date) -> str | None:
    """The NYSE holiday on ``day`` (several names joined), or None on a trading weekday or weekend."""
    return _calendar(day.year).get(day)


def _thanksgiving(year: int) -> date:
    calendar = _calendar(year)
    found = [day for day, name in calendar.items() if THANKSGIVING in name]
    if not found:  # the calendar always has it; a changed name must not pass silently
        raise LookupError(f"no {THANKSGIVING!r} in the NYSE calendar of {year}")
    return found[0]


def is_half_day(day: date) -> bool:
    """NYSE early closes: the day after Thanksgiving, July 3 and December 24 (trading weekdays only)."""
    if day.weekday() >= 5 or holiday_name(day):
        return False
    return (day == _thanksgiving(day.year) + timedelta(days=1)
            or (day.month, day.day) in {(7, 3), (12, 24)})


def session_on(day: date, extended_hours: bool) -> Session | None:
    """``day``'s session, or None when the market is closed all day (weekend, holiday)."""
    if day.weekday() >= 5 or holiday_name(day):
        return None
    opens, closes = EXTENDED if extended_hours else REGULAR
    half = is_half_day(day)
    if half:
        closes = EARLY_CLOSE[extended_hours]
    return Session(day, datetime.combine(day, opens, NEW_YORK), datetime.combine(day, closes, NEW_YORK), half)


def decide(now: datetime, extended_hours: bool, lag_s: float) -> Decision:
    """Fetch at ``now`` (timezone-aware)? Open from session open + lag to close + lag + grace.

    Decided on ``now``'s minute: a schedule fires some seconds into its minute, and the window's last
    minute must still count as open.
    """
    local = now.astimezone(NEW_YORK).replace(second=0, microsecond=0)
    day = local.date()
    if day.weekday() >= 5:
        return Decision(False, "weekend", None)
    holiday = holiday_name(day)
    if holiday:
        return Decision(False, f"holiday: {holiday}", None)
    session = session_on(day, extended_hours)
    assert session is not None
    lag = timedelta(seconds=lag_s)
    start, end = session.open + lag, session.close + lag + GRACE
    if local < start:
        return Decision(False, "before open", session, start, end)
    if local > end:
        reason = "half day: closed early" if session.half_day else "after close"
        return Decision(False, reason, session, start, end)
    return Decision(True, "", session, start, end)


def session_open_today(now: datetime, extended_hours: bool) -> datetime | None:
    """Today's (New York) session open, or None on a day without a session."""
    session = session_on(now.astimezone(NEW_YORK).date(), extended_hours)
    return session.open if session else None
