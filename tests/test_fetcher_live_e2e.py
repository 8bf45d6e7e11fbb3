"""Live fetching on a simulated clock: the real fetcher against the fake Alpha Vantage API (which
follows the entitlement rule on its own clock) and the local Kinesis and DynamoDB.

The fetcher's clock is the fake server's, so the server and the fetcher agree on "now" while a test
moves it minute by minute through sessions, nights, a weekend and a holiday.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from fetcher_lambda import handler
from fetcher_lambda.alphavantage import to_utc
from fetcher_lambda.cursor import CursorStore
from fetcher_lambda.deadline import Deadline
from fetcher_lambda.pipeline import Clients
from tests.log_lines import events
from tests import fake_alphavantage as fake

NY = ZoneInfo("America/New_York")


def ny(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=NY).astimezone(timezone.utc)


def utc(rows) -> list[str]:
    return [to_utc(row.local_ts, NY) for row in rows]


def session_rows(day: str, start: str = "09:30", end: str = "16:00", price: float = 100.0) -> list:
    """A bar every minute of ``day`` from ``start`` to before ``end`` (New York)."""
    first = datetime.fromisoformat(f"{day} {start}")
    count = int((datetime.fromisoformat(f"{day} {end}") - first) / timedelta(minutes=1))
    return fake.minute_rows(f"{day} {start}", count, price=price)




def emf_lines(text: str) -> list[dict]:
    return [line for line in (json.loads(raw) for raw in text.splitlines() if raw.startswith('{"_aws"'))]


def invoke(settings, clients, server, owner: str | None = None):
    return handler.invoke(settings, clients, Deadline.after(60), owner, clock=server.now)


@pytest.fixture
def clients(fetcher_clients_factory) -> Clients:
    return Clients(*fetcher_clients_factory())


@pytest.fixture
def live_settings(fetcher_settings):
    """The fetcher as deployed: it follows the market hours (on the fake server's clock)."""
    return replace(fetcher_settings, ignore_market_hours=False)


def test_entitlement_decides_whether_today_is_served(fake_alphavantage, live_settings, clients, read_stream,
                                                     capsys):
    """realtime: today's bars up to the clock; delayed: up to 15 minutes ago; historical: none of today."""
    yesterday = session_rows("2026-12-03", "15:30")
    today = session_rows("2026-12-04", "09:30", "12:00")  # stored; the clock uncovers them
    for symbol in ("RT", "DL", "HS"):
        fake_alphavantage.set_series(symbol, yesterday + today)
    fake_alphavantage.set_clock(ny("2026-12-04 10:30:20"))
    expected = {"RT": yesterday + today[:60], "DL": yesterday + today[:45], "HS": yesterday}
    for symbol, entitlement in (("RT", "realtime"), ("DL", "delayed"), ("HS", "historical")):
        summary = invoke(replace(live_settings, symbols=(symbol,), entitlement=entitlement), clients,
                         fake_alphavantage)
        assert summary.symbols_ok == 1 and not summary.market_closed, summary
    sent: dict[str, list[str]] = {}
    for key, record in read_stream(live_settings.stream_name):
        sent.setdefault(key, []).append(record["ts"])
        assert "basis" not in record  # never re-based: v1 records
    assert sent == {symbol: utc(rows) for symbol, rows in expected.items()}
    assert sent["RT"][-1] == "2026-12-04T15:29:00Z" and sent["DL"][-1] == "2026-12-04T15:14:00Z"
    assert [call.get("entitlement") for call in fake_alphavantage.calls()] == ["realtime", "delayed", None]

    # The freshness metrics of those runs, as CloudWatch reads them from the log.
    lines = emf_lines(capsys.readouterr().out)
    ages = {line["Symbol"]: line["DataAgeSeconds"] for line in lines if "Symbol" in line}
    # Now (10:30:20) minus the newest bar's end; historical: counted from the session open (04:00).
    assert ages == {"RT": 20.0, "DL": 920.0, "HS": 6 * 3600 + 30 * 60 + 20.0}
    totals = [line for line in lines if "Symbol" not in line]
    assert [line["MaxDataAgeSeconds"] for line in totals] == [20.0, 920.0, 23420.0]
    for line in lines:
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "StockAnalytics/Fetcher"
        assert line["_aws"]["Timestamp"] == int(ny("2026-12-04 10:30:20").timestamp() * 1000)
        units = {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]}
        if "Symbol" in line:
            assert directive["Dimensions"] == [["Symbol"]] and units == {"DataAgeSeconds": "Seconds"}
        else:
            assert directive["Dimensions"] == [[]]
            assert units == {"EntitlementRefused": "Count", "MaxDataAgeSeconds": "Seconds"}
            assert line["EntitlementRefused"] == 0
        assert all(isinstance(line[name], (int, float)) for name in units)


def test_a_plan_without_the_entitlement_is_refused_once_and_counted(fake_alphavantage, live_settings, clients,
                                                                   read_stream, caplog, capsys):
    caplog.set_level(logging.INFO)
    fake_alphavantage.entitlements = {"delayed"}  # no realtime add-on
    for symbol in ("IBM", "AAPL", "MSFT"):
        fake_alphavantage.set_series(symbol, session_rows("2026-12-04", "09:30", "10:00"))
    fake_alphavantage.set_clock(ny("2026-12-04 10:30"))
    settings = replace(live_settings, symbols=("IBM", "AAPL", "MSFT"), entitlement="realtime")

    summary = invoke(settings, clients, fake_alphavantage)
    assert summary.failed == {"IBM": "entitlement_refused", "AAPL": "entitlement_refused",
                              "MSFT": "entitlement_refused"}
    assert summary.entitlement_refused == 3 and summary.bars_sent == 0
    (warning,) = events(caplog, "entitlement_refused")  # one line for the run, not one per symbol
    assert warning["symbols"] == ["IBM", "AAPL", "MSFT"] and warning["entitlement"] == "realtime"
    assert "AV_ENTITLEMENT" in warning["hint"] and "not entitled" in warning["detail"]
    assert not events(caplog, "symbol_not_data")
    assert read_stream(settings.stream_name) == []  # the notice is never sent as data
    store = CursorStore(clients.dynamodb, settings.cursor_table)
    assert all(store.read(symbol).cursor is None for symbol in settings.symbols)
    totals = [line for line in emf_lines(capsys.readouterr().out) if "Symbol" not in line]
    assert totals[-1]["EntitlementRefused"] == 3
    # The ages keep growing from the open: the stale-data alarm sees a refused plan too.
    assert totals[-1]["MaxDataAgeSeconds"] == (6 * 60 + 30) * 60

    delayed = invoke(replace(settings, entitlement="delayed"), clients, fake_alphavantage)
    assert delayed.symbols_ok == 3 and delayed.bars_sent == 3 * 30  # the plan's own: all of 09:30 to 10:00


# Thanksgiving week 2026 in New York: Monday 23 to Sunday 29; Thursday 26 a holiday, Friday 27 a half day.
WEEK_START = ny("2026-11-23 00:00")
TRADING = {"2026-11-23": "16:00", "2026-11-24": "16:00", "2026-11-25": "16:00", "2026-11-27": "13:00"}


def test_a_week_calls_only_while_the_market_is_open(fake_alphavantage, live_settings, clients, read_stream,
                                                    caplog, capsys):
    caplog.set_level(logging.INFO)
    settings = replace(live_settings, extended_hours=False, entitlement="delayed")
    # A thinly traded symbol (a bar every 5 minutes) keeps the puts few; the calls are what counts here.
    rows = [row for day, close in TRADING.items() for row in session_rows(day, "09:30", close)[::5]]
    fake_alphavantage.set_series("IBM", rows)
    # Every closed minute of the week is a real invocation. While open, every 20th minute and the
    # window's last one: each compact call reaches 100 bars back, so none is lost in between.
    minutes = 7 * 24 * 60
    closed_runs = open_minutes = open_runs = 0
    for minute in range(minutes):
        now = WEEK_START + timedelta(minutes=minute)
        fake_alphavantage.set_clock(now)
        local = now.astimezone(NY)
        close = TRADING.get(local.strftime("%Y-%m-%d"))
        window_open = close is not None and "09:45" <= local.strftime("%H:%M") <= \
            (datetime.strptime(close, "%H:%M") + timedelta(minutes=16)).strftime("%H:%M")
        if window_open:
            open_minutes += 1
            last = local.strftime("%H:%M") == (datetime.strptime(close, "%H:%M") + timedelta(minutes=16)).strftime(
                "%H:%M")
            if open_minutes % 20 and not last:
                continue
            open_runs += 1
        else:
            closed_runs += 1
        summary = invoke(settings, clients, fake_alphavantage, owner=f"week-{minute}")
        assert bool(summary.market_closed) == (not window_open), (local, summary.market_closed)
        capsys.readouterr()  # keep the captured metric lines small
    calls_at = [moment.astimezone(NY) for moment in fake_alphavantage.request_clock]
    assert len(calls_at) == open_runs and closed_runs + open_minutes == minutes
    assert {moment.strftime("%Y-%m-%d") for moment in calls_at} == set(TRADING)  # no weekend, no Thanksgiving
    assert all("09:45" <= moment.strftime("%H:%M") <= "16:16" for moment in calls_at)
    assert not [moment for moment in calls_at if moment.day == 27 and moment.strftime("%H:%M") > "13:16"]
    reasons = {line["reason"] for line in events(caplog, "market_closed")}
    assert reasons == {"weekend", "holiday: Thanksgiving Day", "before open", "after close",
                       "half day: closed early"}
    # Every bar of the week once, in order: over each night, the holiday and the weekend.
    assert [record["ts"] for _, record in read_stream(settings.stream_name)] == utc(rows)
    assert not events(caplog, "catch_up") and not events(caplog, "possible_gap")
    with capsys.disabled():
        print(f"\nsimulated week: {minutes - open_minutes} of {minutes} minutes closed, no Alpha Vantage call "
              f"in them; a fetcher called every minute 24/7 would make {minutes} calls per symbol, this one "
              f"at most {open_minutes} (saved: {minutes - open_minutes}, "
              f"{(minutes - open_minutes) / minutes:.0%})")


def test_a_daily_cap_of_25_loses_no_bar_over_a_session(fake_alphavantage, live_settings, clients, read_stream,
                                                       caplog, capsys):
    caplog.set_level(logging.INFO)
    settings = replace(live_settings, extended_hours=True, entitlement="delayed", calls_per_day=25)
    monday = session_rows("2026-11-30", "18:30", "20:00")
    tuesday = session_rows("2026-12-01", "04:00", "20:00")
    fake_alphavantage.set_series("IBM", monday + tuesday)
    # Monday's session went to the stream the day before.
    fake_alphavantage.set_clock(ny("2026-11-30 20:16"))
    assert invoke(replace(settings, calls_per_day=0), clients, fake_alphavantage).bars_sent == len(monday)
    calls_before = len(fake_alphavantage.calls())
    now = ny("2026-12-01 03:50")
    while now <= ny("2026-12-01 20:40"):  # the scheduler's superset of the window, every minute
        fake_alphavantage.set_clock(now)
        invoke(settings, clients, fake_alphavantage)
        capsys.readouterr()
        now += timedelta(minutes=1)
    calls = fake_alphavantage.calls()[calls_before:]
    assert len(calls) == 25 and all(call["outputsize"] == "compact" for call in calls)
    assert fake_alphavantage.request_clock[-1] == ny("2026-12-01 20:16")  # after the close + lag + grace
    sent = [record["ts"] for _, record in read_stream(settings.stream_name)]
    assert sent == utc(monday) + utc(tuesday)  # every bar of the session once, in order
    assert not events(caplog, "catch_up")


def test_the_first_run_after_a_missed_day_catches_up(fake_alphavantage, live_settings, clients, read_stream, caplog):
    caplog.set_level(logging.INFO)
    settings = replace(live_settings, extended_hours=False, entitlement="delayed")
    # Tuesday's last two hours alone are more than a compact window: without the catch-up they are lost.
    days = {"2026-11-30": session_rows("2026-11-30", "15:50"), "2026-12-01": session_rows("2026-12-01", "14:00"),
            "2026-12-02": session_rows("2026-12-02")}
    fake_alphavantage.set_series("IBM", [row for rows in days.values() for row in rows])
    fake_alphavantage.set_clock(ny("2026-11-30 16:16"))  # Monday's last run
    invoke(settings, clients, fake_alphavantage)
    # No run at all on Tuesday (an outage); Wednesday's first run is at 10:00.
    fake_alphavantage.set_clock(ny("2026-12-02 10:00"))
    summary = invoke(settings, clients, fake_alphavantage)
    assert summary.api_calls == 2 and [call["outputsize"] for call in fake_alphavantage.calls()[-2:]] == [
        "compact", "full"]
    assert events(caplog, "catch_up") and not events(caplog, "possible_gap")
    expected = utc(days["2026-11-30"]) + utc(days["2026-12-01"]) + utc(days["2026-12-02"][:15])
    assert [record["ts"] for _, record in read_stream(settings.stream_name)] == expected


def test_market_closed_runs_make_no_call_and_say_why(fake_alphavantage, live_settings, clients, caplog, capsys):
    caplog.set_level(logging.INFO)
    fake_alphavantage.set_series("IBM", session_rows("2026-11-25"))
    fake_alphavantage.set_clock(ny("2026-11-26 11:00"))
    summary = invoke(live_settings, clients, fake_alphavantage, owner="closed-1")
    assert summary.market_closed == "holiday: Thanksgiving Day" and summary.api_calls == 0
    assert fake_alphavantage.calls() == []
    (closed,) = events(caplog, "market_closed")
    assert closed["reason"] == "holiday: Thanksgiving Day" and closed["invocation_id"] == "closed-1"
    (line,) = emf_lines(capsys.readouterr().out)
    assert line["MarketClosedSkips"] == 1 and line["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
        {"Name": "MarketClosedSkips", "Unit": "Count"}]
    assert CursorStore(clients.dynamodb, live_settings.cursor_table).read("IBM").cursor is None
