"""Pure rules of live fetching: market hours, the daily call plan, re-basing, entitlement notices,
the freshness metrics' documents and the new settings."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from fetcher_lambda import market_hours, metrics, quota
from fetcher_lambda.alphavantage import FetchError, classify, parse_intraday
from fetcher_lambda.config import ConfigError, Settings
from fetcher_lambda.contract import Bar
from fetcher_lambda.market_hours import NEW_YORK
from fetcher_lambda.rebasing import rebase_factor
from fetcher_lambda.samples import av_payload
from tests import fake_alphavantage as fake

DELAYED, REALTIME = 900, 0


def ny(text: str) -> datetime:
    """``YYYY-MM-DD HH:MM[:SS]`` New York time, as a UTC instant (what the fetcher's clock gives)."""
    return datetime.fromisoformat(text).replace(tzinfo=NEW_YORK).astimezone(timezone.utc)


def reason(text: str, extended: bool = False, lag_s: int = DELAYED) -> str:
    decision = market_hours.decide(ny(text), extended, lag_s)
    return "open" if decision.open else decision.reason


# ---- market hours ----

@pytest.mark.parametrize("when, extended, lag_s, expected", [
    ("2026-11-28 11:00", False, DELAYED, "weekend"),
    ("2026-11-29 11:00", True, REALTIME, "weekend"),
    ("2026-11-26 11:00", False, DELAYED, "holiday: Thanksgiving Day"),
    ("2026-04-03 11:00", True, DELAYED, "holiday: Good Friday"),
    ("2026-07-03 11:00", False, DELAYED, "holiday: Independence Day (observed)"),  # July 4 is a Saturday
    ("2025-01-09 11:00", False, DELAYED, "holiday: National Day of Mourning for former President Jimmy Carter"),
    # Regular session, delayed: bars are served 15 minutes after they end, the last one at 16:15.
    ("2026-11-24 09:44", False, DELAYED, "before open"),
    ("2026-11-24 09:45", False, DELAYED, "open"),
    ("2026-11-24 16:16", False, DELAYED, "open"),
    ("2026-11-24 16:16:50", False, DELAYED, "open"),  # a schedule fires some seconds into its minute
    ("2026-11-24 16:17", False, DELAYED, "after close"),
    # Realtime: the session itself plus the grace minute.
    ("2026-11-24 09:29", False, REALTIME, "before open"),
    ("2026-11-24 09:30", False, REALTIME, "open"),
    ("2026-11-24 16:01", False, REALTIME, "open"),
    ("2026-11-24 16:02", False, REALTIME, "after close"),
    # Extended hours: 04:00-20:00.
    ("2026-11-24 04:14", True, DELAYED, "before open"),
    ("2026-11-24 04:15", True, DELAYED, "open"),
    ("2026-11-24 20:16", True, DELAYED, "open"),
    ("2026-11-24 20:17", True, DELAYED, "after close"),
    # Half days close at 13:00 (17:00 with extended hours).
    ("2026-11-27 13:16", False, DELAYED, "open"),
    ("2026-11-27 13:17", False, DELAYED, "half day: closed early"),
    ("2026-11-27 17:16", True, DELAYED, "open"),
    ("2026-11-27 17:17", True, DELAYED, "half day: closed early"),
    ("2026-12-24 13:17", False, DELAYED, "half day: closed early"),
    ("2025-07-03 13:02", False, REALTIME, "half day: closed early"),
    ("2025-07-03 12:59", False, REALTIME, "open"),
    # Summer time: the same New York bounds at another UTC offset.
    ("2026-07-14 09:45", False, DELAYED, "open"),
    ("2026-07-14 09:44", False, DELAYED, "before open"),
])
def test_market_hours(when, extended, lag_s, expected):
    assert reason(when, extended, lag_s) == expected


def test_half_days_follow_the_calendar():
    assert market_hours.is_half_day(date(2026, 11, 27)) and market_hours.is_half_day(date(2025, 11, 28))
    assert market_hours.is_half_day(date(2025, 12, 24)) and market_hours.is_half_day(date(2024, 7, 3))
    assert not market_hours.is_half_day(date(2026, 7, 3))  # a holiday that year, not a half day
    assert not market_hours.is_half_day(date(2022, 12, 24))  # a Saturday
    assert not market_hours.is_half_day(date(2026, 11, 25))
    session = market_hours.session_on(date(2026, 11, 27), extended_hours=False)
    assert session is not None and session.half_day and session.close.hour == 13
    assert market_hours.session_on(date(2026, 11, 26), extended_hours=True) is None


# ---- the daily call plan ----

def due_minutes(plan: quota.CallPlan, start: datetime, end: datetime) -> list[datetime]:
    minutes, moment = [], start
    while moment <= end:
        if plan.due(moment):
            minutes.append(moment)
        moment += timedelta(minutes=1)
    return minutes


@pytest.mark.parametrize("extended, lag_s", [(True, DELAYED), (False, DELAYED), (True, REALTIME)])
def test_a_cap_of_25_calls_covers_the_session_for_one_symbol(extended, lag_s):
    decision = market_hours.decide(ny("2026-12-01 12:00"), extended, lag_s)
    plan = quota.plan(25, 1, decision.window_start, decision.window_end)
    assert plan is not None and plan.reaches
    calls = due_minutes(plan, decision.window_start, decision.window_end)
    assert len(calls) == 25
    assert calls[-1] == decision.window_end  # the last call after the close, the lag and the grace minute
    gaps = [(b - a) / timedelta(minutes=1) for a, b in zip(calls, calls[1:])]
    assert max(gaps) <= quota.COMPACT_REACH_MIN and min(gaps) >= 1
    # The first call comes one spacing after the window opens, and the session's first bar is in it.
    assert decision.window_start < calls[0] <= decision.window_start + timedelta(minutes=quota.COMPACT_REACH_MIN)


def test_a_cap_shared_by_many_symbols_spaces_their_calls_wider():
    decision = market_hours.decide(ny("2026-12-01 12:00"), True, DELAYED)
    plan = quota.plan(25, 5, decision.window_start, decision.window_end)
    assert plan.calls == 5 and plan.spacing_min > quota.COMPACT_REACH_MIN and not plan.reaches
    assert quota.plan(0, 5, decision.window_start, decision.window_end) is None


# ---- re-basing ----

def bars(*closes: float) -> list[Bar]:
    return [Bar("IBM", f"2026-12-01T15:{minute:02d}:00Z", c, c, c, c, 100) for minute, c in enumerate(closes)]


def test_rebase_factor():
    sent = bars(100.0, 100.5, 101.0)
    recent = [(bar.ts, bar.close) for bar in sent[-2:]]
    assert rebase_factor(recent, sent) is None  # unchanged
    assert rebase_factor(recent, bars(50.0, 50.25, 50.5)) == pytest.approx(0.5)  # 2:1 split
    dividend = bars(*(round(c * 0.995, 4) for c in (100.0, 100.5, 101.0)))
    assert rebase_factor(recent, dividend) == pytest.approx(0.995, abs=1e-6)
    # Only the newest bar revised (it was still forming when sent): not a re-basing.
    assert rebase_factor(recent, bars(100.0, 100.5, 101.07)) is None
    assert rebase_factor(recent, bars(100.0, 100.49, 101.0)) is None
    assert rebase_factor(recent[-1:], bars(50.0, 50.25, 50.5)) is None  # one bar sent: nothing to compare
    assert rebase_factor(recent, bars(50.0, 50.25)) is None  # the newest sent bar is not in the window
    # At a low price the 4-decimal rounding of the halved closes skews the two ratios apart
    # (0.50015 / 1.0003 vs 0.5001 / 1.0001): still one factor.
    low = bars(1.0001, 1.0001, 1.0003)
    halved = bars(*(round(c / 2, 4) for c in (1.0001, 1.0001, 1.0003)))
    assert rebase_factor([(b.ts, b.close) for b in low[-2:]], halved) == pytest.approx(0.5, abs=1e-4)


# ---- entitlement notices and the delayed Meta Data ----

def test_a_refused_entitlement_is_its_own_kind():
    series_key = "Time Series (1min)"
    for entitlement in ("realtime", "delayed"):
        problem = classify(fake.entitlement_refused(entitlement), series_key, entitlement)
        assert problem is not None and problem.kind == "entitlement_refused" and "AV_ENTITLEMENT" in problem.hint
    assert classify(fake.PREMIUM, series_key, "realtime").kind == "entitlement_refused"
    assert classify(fake.PREMIUM, series_key).kind == "premium_only"  # nothing asked for: a premium call
    # A rate limit or a demo key stays what it is, whatever was asked for.
    assert classify(fake.RATE_LIMIT, series_key, "delayed").kind == "rate_limit"
    assert classify(fake.DEMO_KEY, series_key, "delayed").kind == "demo_key"
    with pytest.raises(FetchError, match="entitlement_refused"):
        parse_intraday(fake.entitlement_refused("realtime"), "IBM", "1min", "realtime")


def test_a_delayed_answer_parses_like_a_realtime_one():
    rows = fake.minute_rows("2026-12-01 10:00", 3)
    realtime = av_payload("IBM", rows, output_size="Compact")
    delayed = av_payload("IBM", rows, output_size="Compact")
    delayed["Meta Data"]["1. Information"] = fake.DELAYED_INFORMATION.format(interval="1min")
    assert "DATA DELAYED BY 15 MINUTES" in delayed["Meta Data"]["1. Information"]
    assert parse_intraday(delayed, "IBM", "1min", "delayed") == parse_intraday(realtime, "IBM", "1min", "realtime")


# ---- settings ----

def test_live_settings():
    defaults = Settings.from_env({})
    assert (defaults.entitlement, defaults.calls_per_day, defaults.ignore_market_hours) == ("delayed", 0, False)
    assert defaults.entitlement_lag_s == 900 and defaults.interval_s == 60
    chosen = Settings.from_env({"AV_ENTITLEMENT": "RealTime", "AV_CALLS_PER_DAY": "25",
                                "FETCHER_IGNORE_MARKET_HOURS": "true"})
    assert (chosen.entitlement, chosen.entitlement_lag_s, chosen.calls_per_day) == ("realtime", 0, 25)
    assert chosen.ignore_market_hours
    with pytest.raises(ConfigError, match="AV_ENTITLEMENT must be one of realtime, delayed, historical"):
        Settings.from_env({"AV_ENTITLEMENT": "live"})
    with pytest.raises(ConfigError, match="AV_CALLS_PER_DAY must be a whole number"):
        Settings.from_env({"AV_CALLS_PER_DAY": "2.5"})
    with pytest.raises(ConfigError, match="AV_CALLS_PER_DAY must be at least 0"):
        Settings.from_env({"AV_CALLS_PER_DAY": "-1"})


# ---- bar contract v2 ----

def test_basis_appears_only_once_re_based():
    bar = Bar("IBM", "2026-12-01T15:00:00Z", 1.0, 1.0, 1.0, 1.0, 100)
    v1 = {"symbol", "ts", "open", "high", "low", "close", "volume", "interval", "source"}
    assert set(bar.to_record()) == v1 and bar.to_record(0) == bar.to_record()
    assert bar.to_record(2) == {**bar.to_record(), "basis": 2}


# ---- the metrics' documents ----

def test_data_age_counts_from_the_newest_bar_or_the_open():
    open_ = ny("2026-12-01 04:00")
    now = ny("2026-12-01 10:30")
    assert metrics.data_age_seconds(now, ny("2026-12-01 10:15"), open_) == 900
    assert metrics.data_age_seconds(now, ny("2026-11-30 20:00"), open_) == 6.5 * 3600  # yesterday's bar
    assert metrics.data_age_seconds(now, None, open_) == 6.5 * 3600


def test_emf_documents():
    now = ny("2026-12-01 10:30")
    documents = metrics.invocation_documents(now, "inv-1", {"IBM": 60.0, "SPY": 900.0}, entitlement_refused=0)
    assert len(documents) == 3
    ibm, spy, totals = documents
    assert ibm["_aws"]["CloudWatchMetrics"] == [{"Namespace": "StockAnalytics/Fetcher", "Dimensions": [["Symbol"]],
                                                 "Metrics": [{"Name": "DataAgeSeconds", "Unit": "Seconds"}]}]
    assert (ibm["Symbol"], ibm["DataAgeSeconds"], spy["DataAgeSeconds"]) == ("IBM", 60.0, 900.0)
    assert ibm["_aws"]["Timestamp"] == int(now.timestamp() * 1000)
    assert totals["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]
    assert {m["Name"]: m["Unit"] for m in totals["_aws"]["CloudWatchMetrics"][0]["Metrics"]} == {
        "EntitlementRefused": "Count", "MaxDataAgeSeconds": "Seconds"}
    assert (totals["MaxDataAgeSeconds"], totals["EntitlementRefused"]) == (900.0, 0)
    closed = metrics.invocation_documents(now, "inv-2", {}, market_closed=True)
    assert len(closed) == 1 and closed[0]["MarketClosedSkips"] == 1 and "MaxDataAgeSeconds" not in closed[0]


# ---- the local entry point ----

def test_ignore_market_hours_is_for_live_runs_only(capsys):
    from fetcher_lambda.__main__ import parse_args

    assert parse_args(["--every", "60", "--ignore-market-hours"]).ignore_market_hours
    assert not parse_args(["--once"]).ignore_market_hours
    for mode in (["--month", "2024-03"], ["--replay"]):
        with pytest.raises(SystemExit):
            parse_args([*mode, "--ignore-market-hours"])
        assert "--month and --replay never check" in capsys.readouterr().err
