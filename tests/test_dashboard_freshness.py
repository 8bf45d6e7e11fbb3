"""The live dashboard's freshness label per symbol (pure): live, delayed, stale since, replay."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dashboards.live.freshness import freshness, market_closed

# Wednesday 2024-03-13, 14:00 New York (EDT, UTC-4) = 18:00Z.
NOW = datetime(2024, 3, 13, 18, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("last_ts,state,label,age_s", [
    ("2024-03-13T17:58:00Z", "live", "live", 60),  # ended 17:59, a minute ago
    ("2024-03-13T17:56:00Z", "live", "live", 180),
    ("2024-03-13T17:55:00Z", "delayed", "delayed 15 min", 240),
    ("2024-03-13T17:44:00Z", "delayed", "delayed 15 min", 900),  # Alpha Vantage's delayed feed
    ("2024-03-13T17:39:00Z", "delayed", "delayed 15 min", 1200),
    ("2024-03-13T17:38:00Z", "stale", "stale since 13:39 ET", 1260),
    ("2024-03-12T23:59:00Z", "stale", "stale since 2024-03-12 20:00 ET", 64800),
])
def test_the_label_follows_the_age_of_the_newest_bar(last_ts, state, label, age_s):
    got = freshness(last_ts, "alphavantage", NOW)
    assert (got.state, got.label, got.age_s, got.market_closed) == (state, label, age_s, False)


def test_replayed_sample_data_is_a_replay_not_stale():
    got = freshness("2024-03-08T20:59:00Z", "replay", NOW)
    assert (got.state, got.label) == ("replay", "replay of sample data")


def test_a_symbol_without_bars_has_no_data():
    assert freshness(None, None, NOW).state == "none"


def test_stale_outside_the_session_says_the_market_is_closed():
    saturday = datetime(2024, 3, 16, 15, 0, tzinfo=timezone.utc)
    got = freshness("2024-03-15T23:59:00Z", "alphavantage", saturday)
    assert got.state == "stale" and got.market_closed
    assert got.label == "stale since 2024-03-15 20:00 ET (market closed)"


@pytest.mark.parametrize("now,closed", [
    (datetime(2024, 3, 13, 7, 59, tzinfo=timezone.utc), True),  # 03:59 New York
    (datetime(2024, 3, 13, 8, 0, tzinfo=timezone.utc), False),  # 04:00
    (datetime(2024, 3, 13, 23, 59, tzinfo=timezone.utc), False),  # 19:59
    (datetime(2024, 3, 14, 0, 0, tzinfo=timezone.utc), True),  # 20:00
    (datetime(2024, 3, 17, 15, 0, tzinfo=timezone.utc), True),  # Sunday
])
def test_market_closed_is_the_weekday_extended_session(now, closed):
    assert market_closed(now) is closed
