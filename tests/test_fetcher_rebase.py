"""Re-basing (bar contract v2), fetcher side: Alpha Vantage's adjusted history changes under bars the
stream already carries; the fetcher notices, raises the symbol's basis and re-sends the series.

The real fetcher against the fake API (whose ``rebase`` scales a stored history as a split or a
dividend does) and the local Kinesis and DynamoDB.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from fetcher_lambda import handler
from fetcher_lambda.alphavantage import to_utc
from fetcher_lambda.cursor import CursorStore, now_ms
from fetcher_lambda.deadline import Deadline
from fetcher_lambda.pipeline import Clients
from tests.log_lines import events
from tests import fake_alphavantage as fake

NY = ZoneInfo("America/New_York")
MONDAY = fake.minute_rows("2026-11-30 15:00", 60, price=100.0)  # 15:00 to 15:59
TUESDAY = fake.minute_rows("2026-12-01 09:30", 90, price=50.0)  # 09:30 to 10:59, uncovered by the clock
SPLIT_DAY = "2026-12-01 00:00:00"


def ny(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=NY).astimezone(timezone.utc)


def utc(rows) -> list[str]:
    return [to_utc(row.local_ts, NY) for row in rows]




@pytest.fixture
def clients(fetcher_clients_factory) -> Clients:
    return Clients(*fetcher_clients_factory())


@pytest.fixture
def settings(fetcher_settings):
    return replace(fetcher_settings, ignore_market_hours=False, extended_hours=False, entitlement="delayed")


def invoke(settings, clients, server, at: str):
    server.set_clock(ny(at))
    return handler.invoke(settings, clients, Deadline.after(30), clock=server.now)


def monday_sent(server, settings, clients) -> None:
    server.set_series("IBM", MONDAY + TUESDAY)
    assert invoke(settings, clients, server, "2026-11-30 16:16").bars_sent == len(MONDAY)


def test_a_2_for_1_split_re_sends_the_series_at_basis_1(fake_alphavantage, settings, clients, read_stream, caplog):
    caplog.set_level(logging.INFO)
    monday_sent(fake_alphavantage, settings, clients)
    store = CursorStore(clients.dynamodb, settings.cursor_table)
    before = store.read("IBM")
    assert before.basis == 0 and before.recent == ((utc(MONDAY)[-2], MONDAY[-2].close),
                                                   (utc(MONDAY)[-1], MONDAY[-1].close))
    fake_alphavantage.rebase("IBM", 0.5, before_local_ts=SPLIT_DAY)  # Monday's prices halved
    calls_before = len(fake_alphavantage.calls())

    summary = invoke(settings, clients, fake_alphavantage, "2026-12-01 10:15")  # Tuesday up to 09:59
    assert summary.rebased == {"IBM": 0.5} and summary.symbols_ok == 1
    assert [call["outputsize"] for call in fake_alphavantage.calls()[calls_before:]] == ["compact", "full"]
    (rebased,) = events(caplog, "rebased")
    assert (rebased["factor"], rebased["previous_basis"], rebased["basis"]) == (0.5, 0, 1)
    assert rebased["bars"] == len(MONDAY) + 30 and rebased["cursor"] == utc(MONDAY)[-1]

    records = [record for _, record in read_stream(settings.stream_name)]
    first, again = records[:len(MONDAY)], records[len(MONDAY):]
    assert [r["ts"] for r in first] == utc(MONDAY) and all("basis" not in r for r in first)
    # The whole series again, oldest first, every bar at basis 1 and at the new prices.
    assert [r["ts"] for r in again] == utc(MONDAY) + utc(TUESDAY[:30])
    assert all(r["basis"] == 1 for r in again)
    assert [r["close"] for r in again[:len(MONDAY)]] == [round(row.close * 0.5, 4) for row in MONDAY]
    assert [r["volume"] for r in again[:len(MONDAY)]] == [row.volume * 2 for row in MONDAY]
    after = store.read("IBM")
    assert (after.cursor, after.basis, after.lease_owner) == (utc(TUESDAY)[29], 1, None)
    assert after.recent == ((utc(TUESDAY)[28], TUESDAY[28].close), (utc(TUESDAY)[29], TUESDAY[29].close))
    # A claim at the old basis (an invocation that read the item before) can no longer win.
    assert not store.claim("IBM", after.cursor, "2026-12-02T00:00:00Z", "stale-reader", now_ms() + 60_000,
                           expected_basis=0)

    # New bars carry the basis; nothing is re-based again.
    later = invoke(settings, clients, fake_alphavantage, "2026-12-01 10:40")
    assert later.rebased == {} and later.bars_sent == 25 and later.api_calls == 1
    newest = [record for _, record in read_stream(settings.stream_name)][len(records):]
    assert [r["ts"] for r in newest] == utc(TUESDAY[30:55]) and all(r["basis"] == 1 for r in newest)
    assert len(events(caplog, "rebased")) == 1


def test_a_small_dividend_re_bases_and_the_basis_keeps_counting(fake_alphavantage, settings, clients, read_stream,
                                                                caplog):
    caplog.set_level(logging.INFO)
    monday_sent(fake_alphavantage, settings, clients)
    fake_alphavantage.rebase("IBM", 0.5, before_local_ts=SPLIT_DAY)
    assert invoke(settings, clients, fake_alphavantage, "2026-12-01 10:15").rebased == {"IBM": 0.5}
    # Then a dividend of about 0.5% re-bases everything before Tuesday 10:00.
    fake_alphavantage.rebase("IBM", 0.995, before_local_ts="2026-12-01 10:00:00")
    summary = invoke(settings, clients, fake_alphavantage, "2026-12-01 10:40")
    assert summary.rebased["IBM"] == pytest.approx(0.995, abs=1e-5)
    assert CursorStore(clients.dynamodb, settings.cursor_table).read("IBM").basis == 2
    records = [record for _, record in read_stream(settings.stream_name)]
    at_2 = [r for r in records if r.get("basis") == 2]
    assert [r["ts"] for r in at_2] == utc(MONDAY) + utc(TUESDAY[:55])
    assert at_2[-1]["close"] == TUESDAY[54].close  # after the ex-date: unchanged
    assert at_2[0]["close"] == round(round(MONDAY[0].close * 0.5, 4) * 0.995, 4)


def test_a_revised_newest_bar_is_not_a_re_basing(fake_alphavantage, settings, clients, read_stream, caplog):
    caplog.set_level(logging.INFO)
    monday_sent(fake_alphavantage, settings, clients)
    # Alpha Vantage revises the newest bar it had served (it was still forming); the one before stays.
    revised = MONDAY[-1]._replace(close=round(MONDAY[-1].close * 1.002, 4), high=round(MONDAY[-1].high * 1.002, 4))
    fake_alphavantage.set_series("IBM", MONDAY[:-1] + [revised] + TUESDAY)
    summary = invoke(settings, clients, fake_alphavantage, "2026-12-01 10:15")
    assert summary.rebased == {} and summary.bars_sent == 30 and not events(caplog, "rebased")
    records = [record for _, record in read_stream(settings.stream_name)]
    assert [r["ts"] for r in records] == utc(MONDAY) + utc(TUESDAY[:30])
    assert all("basis" not in r for r in records)
    assert CursorStore(clients.dynamodb, settings.cursor_table).read("IBM").basis == 0


def test_cursor_items_written_before_v2_stay_readable(fake_alphavantage, settings, clients, read_stream):
    fake_alphavantage.set_series("IBM", MONDAY + TUESDAY)
    clients.dynamodb.put_item(TableName=settings.cursor_table, Item={  # what the v1 fetcher wrote
        "symbol": {"S": "IBM"}, "cursor": {"S": utc(MONDAY)[-1]}, "updated_at": {"S": "2026-11-30T21:16:00Z"}})
    store = CursorStore(clients.dynamodb, settings.cursor_table)
    assert (store.read("IBM").basis, store.read("IBM").recent) == (0, ())
    summary = invoke(settings, clients, fake_alphavantage, "2026-12-01 10:15")
    assert summary.bars_sent == 30 and summary.rebased == {}
    assert [record["ts"] for _, record in read_stream(settings.stream_name)] == utc(TUESDAY[:30])
    state = store.read("IBM")
    assert state.basis == 0 and [ts for ts, _ in state.recent] == utc(TUESDAY[28:30])
