"""Pure parts of the fetcher: parsing, classification, selection, batching, settings, samples."""

from __future__ import annotations

import json
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from fetcher_lambda import samples
from fetcher_lambda.alphavantage import (FetchError, classify, parse_intraday, parse_response, request_params,
                                         resolve_zone, to_utc)
from fetcher_lambda.apikey import key_from_secret_string
from fetcher_lambda.config import ConfigError, Secret, Settings
from fetcher_lambda.contract import Bar
from fetcher_lambda.kinesis import MAX_BATCH_BYTES, Entry, batches
from fetcher_lambda.pipeline import SymbolResult, accepted_prefix_end, select_new, summarize, window_misses_cursor
from fetcher_lambda.samples import Row, av_payload
from tests import fake_alphavantage as fake

NY = ZoneInfo("America/New_York")


def bar(ts: str, symbol: str = "IBM") -> Bar:
    return Bar(symbol, ts, 1.0, 1.0, 1.0, 1.0, 1)


# ---- time zones ----

@pytest.mark.parametrize("local, utc", [
    ("2024-03-08 09:30:00", "2024-03-08T14:30:00Z"),  # EST, UTC-5
    ("2024-03-08 19:59:00", "2024-03-09T00:59:00Z"),  # after-hours crosses midnight UTC
    ("2024-03-11 09:30:00", "2024-03-11T13:30:00Z"),  # EDT, UTC-4 after the 2024-03-10 change
    ("2024-03-11 04:00:00", "2024-03-11T08:00:00Z"),
    ("2024-03-10 01:59:00", "2024-03-10T06:59:00Z"),  # the minute before the change
    ("2024-03-10 03:00:00", "2024-03-10T07:00:00Z"),  # the first minute after it
    ("2024-11-04 09:30:00", "2024-11-04T14:30:00Z"),  # back to EST
])
def test_to_utc_applies_the_offset_in_force(local, utc):
    assert to_utc(local, NY) == utc


def test_alpha_vantage_zone_names_resolve_even_without_legacy_links(monkeypatch):
    from fetcher_lambda import alphavantage

    def zone_info_without_backward_links(name: str) -> ZoneInfo:
        if name.startswith("US/"):
            raise alphavantage.ZoneInfoNotFoundError(name)
        return ZoneInfo(name)

    monkeypatch.setattr(alphavantage, "ZoneInfo", zone_info_without_backward_links)
    assert to_utc("2024-03-11 09:30:00", resolve_zone("US/Eastern")) == "2024-03-11T13:30:00Z"
    with pytest.raises(FetchError) as err:
        resolve_zone("Mars/Olympus_Mons")
    assert err.value.kind == "unknown_time_zone"


# ---- parsing ----

def test_parse_orders_oldest_first_with_contract_types_across_dst():
    rows = [Row("2024-03-08 15:59:00", 10, 11, 9, 10.5, 100), Row("2024-03-11 09:30:00", 10.5, 12, 10, 11, 200),
            Row("2024-03-08 09:30:00", 9, 10, 8.5, 9.5, 300)]
    payload = av_payload("IBM", rows)
    assert list(payload["Time Series (1min)"])[0] == "2024-03-11 09:30:00"  # newest first, like the API
    series = parse_intraday(payload, "IBM", "1min")
    assert [b.ts for b in series.bars] == ["2024-03-08T14:30:00Z", "2024-03-08T20:59:00Z", "2024-03-11T13:30:00Z"]
    first = series.bars[0]
    assert (first.open, first.high, first.low, first.close, first.volume) == (9.0, 10.0, 8.5, 9.5, 300)
    assert all(isinstance(v, float) for b in series.bars for v in (b.open, b.high, b.low, b.close))
    assert all(type(b.volume) is int for b in series.bars)
    record = json.loads(first.to_bytes())
    assert record == {"symbol": "IBM", "ts": "2024-03-08T14:30:00Z", "open": 9.0, "high": 10.0, "low": 8.5,
                      "close": 9.5, "volume": 300, "interval": "1min", "source": "alphavantage"}


def test_parse_uses_the_meta_data_time_zone():
    payload = av_payload("IBM", [Row("2024-03-08 09:30:00", 1, 1, 1, 1, 1)], time_zone="UTC")
    assert parse_intraday(payload, "IBM", "1min").bars[0].ts == "2024-03-08T09:30:00Z"


def test_parse_drops_and_counts_malformed_entries():
    payload = av_payload("IBM", fake.minute_rows("2024-03-08 10:00", 3))
    series_map = payload["Time Series (1min)"]
    series_map["2024-03-08 10:03:00"] = {"1. open": "x", "2. high": "1", "3. low": "1", "4. close": "1",
                                         "5. volume": "1"}
    series_map["2024-03-08 10:04:00"] = {"1. open": "1"}
    series_map["not a time"] = {"1. open": "1", "2. high": "1", "3. low": "1", "4. close": "1", "5. volume": "1"}
    series_map["2024-03-08 10:05:00"] = {"1. open": "1", "2. high": "1", "3. low": "1", "4. close": "1",
                                         "5. volume": "1.5"}
    series = parse_intraday(payload, "IBM", "1min")
    assert len(series.bars) == 3 and series.invalid == 4 and series.invalid_example


def test_volume_given_as_integral_float_text_is_accepted():
    payload = av_payload("IBM", [Row("2024-03-08 09:30:00", 1, 1, 1, 1, 1)])
    payload["Time Series (1min)"]["2024-03-08 09:30:00"]["5. volume"] = "1200.0"
    assert parse_intraday(payload, "IBM", "1min").bars[0].volume == 1200


@pytest.mark.parametrize("body, kind", [
    (fake.RATE_LIMIT, "rate_limit"),
    (fake.NOTE, "rate_limit"),
    (fake.DEMO_KEY, "demo_key"),
    (fake.PREMIUM, "premium_only"),
    (fake.ERROR_MESSAGE, "api_error"),
    (fake.MISSING_SERIES, "missing_series"),
    ({"Information": "Something else entirely"}, "information"),
    ({"Note": "Something else entirely"}, "note"),
    ({"Meta Data": {}, "Time Series (1min)": ["not", "an", "object"]}, "malformed_series"),
    ([1, 2, 3], "malformed_json"),
])
def test_notices_are_classified_not_parsed(body, kind):
    problem = classify(body, "Time Series (1min)")
    assert problem is not None and problem.kind == kind and problem.hint
    with pytest.raises(FetchError) as err:
        parse_intraday(body, "IBM", "1min")
    assert err.value.kind == kind


def test_malformed_json_body():
    with pytest.raises(FetchError) as err:
        parse_response(fake.MALFORMED_JSON, "IBM", "1min")
    assert err.value.kind == "malformed_json"


def test_series_key_follows_the_interval():
    payload = av_payload("IBM", [Row("2024-03-08 09:30:00", 1, 1, 1, 1, 1)], interval="5min")
    assert len(parse_intraday(payload, "IBM", "5min").bars) == 1
    with pytest.raises(FetchError) as err:
        parse_intraday(payload, "IBM", "1min")
    assert err.value.kind == "missing_series"


def test_request_params():
    settings = Settings(interval="5min", extended_hours=False, adjusted=True)
    assert request_params(settings, "IBM") == {
        "function": "TIME_SERIES_INTRADAY", "symbol": "IBM", "interval": "5min", "outputsize": "compact",
        "extended_hours": "false", "adjusted": "true", "datatype": "json", "entitlement": "delayed"}
    backfill = request_params(settings, "IBM", month="2024-03")
    assert backfill["month"] == "2024-03" and backfill["outputsize"] == "full"
    assert "apikey" not in backfill and "entitlement" not in backfill  # a past month needs none
    assert request_params(replace(settings, entitlement="realtime"), "IBM")["entitlement"] == "realtime"
    assert "entitlement" not in request_params(replace(settings, entitlement="historical"), "IBM")


# ---- selection and cursor arithmetic ----

def test_select_new_against_cursor():
    bars = [bar("2024-03-08T14:30:00Z"), bar("2024-03-08T14:31:00Z"), bar("2024-03-08T14:32:00Z")]
    assert select_new(bars, None) == (bars, 0)
    assert select_new(bars, "2024-03-08T14:31:00Z") == (bars[2:], 2)
    assert select_new(bars, "2024-03-08T14:32:00Z") == ([], 3)


def test_window_misses_cursor():
    bars = [bar("2024-03-08T14:30:00Z"), bar("2024-03-08T14:31:00Z")]
    assert not window_misses_cursor(bars, None)
    assert not window_misses_cursor(bars, "2024-03-08T14:30:00Z")
    assert window_misses_cursor(bars, "2024-03-08T14:29:00Z")
    assert not window_misses_cursor([], "2024-03-08T14:29:00Z")


def test_accepted_prefix_end():
    bars = [bar(f"2024-03-08T14:3{i}:00Z") for i in range(4)]
    assert accepted_prefix_end(bars, [True] * 4) == bars[-1].ts
    assert accepted_prefix_end(bars, [True, True, False, True]) == bars[1].ts
    assert accepted_prefix_end(bars, [False, True, True, True]) is None


def test_summary_counts():
    results = [SymbolResult("IBM", bars_sent=3, api_calls=1), SymbolResult("AAPL", status="failed", kind="rate_limit",
                                                                           api_calls=1),
               SymbolResult("MSFT", status="skipped", kind="claimed_elsewhere")]
    summary = summarize("id", "live", results, 5, put_records_calls=4)
    assert (summary.symbols_ok, summary.symbols_failed, summary.symbols_skipped) == (1, 1, 1)
    assert summary.bars_sent == 3 and summary.api_calls == 2 and summary.put_records_calls == 4
    assert summary.failed == {"AAPL": "rate_limit"} and summary.skipped == {"MSFT": "claimed_elsewhere"}


# ---- batching ----

def test_batches_respect_record_count_and_bytes():
    small = [Entry("IBM", b"x" * 100)] * 1203
    assert [len(b) for b in batches(small)] == [500, 500, 203]
    big = [Entry("IBM", b"x" * (1024 * 1024 - 3))] * 7  # 1 MiB each with the key
    sizes = [len(b) for b in batches(big)]
    assert sizes == [5, 2] and all(sum(big[i].size for i in b) <= MAX_BATCH_BYTES for b in batches(big))
    assert [i for b in batches(small) for i in b] == list(range(1203))  # order kept
    with pytest.raises(ValueError):
        batches([Entry("IBM", b"x" * (1024 * 1024))])


# ---- settings and key ----

def test_settings_defaults_and_parsing():
    assert Settings.from_env({}) == Settings()
    settings = Settings.from_env({"SYMBOLS": " ibm, aapl ,IBM", "AV_INTERVAL": "5MIN", "AV_EXTENDED_HOURS": "false",
                                  "AV_OUTPUTSIZE": "full", "AV_API_KEY": "k1",
                                  "AV_BASE_URL": "http://127.0.0.1:9/", "AWS_REGION": "eu-west-1"})
    assert settings.symbols == ("IBM", "AAPL") and settings.interval == "5min"
    assert settings.extended_hours is False and settings.outputsize == "full"
    assert settings.base_url == "http://127.0.0.1:9" and settings.region == "eu-west-1"
    assert settings.api_key == Secret("k1") and "k1" not in repr(settings) and "k1" not in str(settings.api_key)


@pytest.mark.parametrize("env, name", [
    ({"SYMBOLS": "IBM,bad symbol"}, "SYMBOLS"), ({"AV_INTERVAL": "2min"}, "AV_INTERVAL"),
    ({"AV_EXTENDED_HOURS": "maybe"}, "AV_EXTENDED_HOURS"),
    ({"AV_READ_TIMEOUT_SECONDS": "soon"}, "AV_READ_TIMEOUT_SECONDS"),
    ({"AV_BASE_URL": "www.alphavantage.co"}, "AV_BASE_URL"),
])
def test_settings_errors_name_the_variable(env, name):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)


def test_secret_string_forms():
    assert key_from_secret_string(" abc ") == "abc"
    assert key_from_secret_string('{"ALPHAVANTAGE_API_KEY": "abc"}') == "abc"
    assert key_from_secret_string('{"apikey": "abc"}') == "abc"
    with pytest.raises(ConfigError):
        key_from_secret_string('{"other": "abc"}')
    with pytest.raises(ConfigError) as err:
        key_from_secret_string('{"apikey": "abc"')
    assert "abc" not in str(err.value)


# ---- the shipped sample set ----

def test_sample_files_are_reproduced_by_the_script():
    expected = samples.sample_texts()
    files = {path.name: path.read_text() for path in samples.sample_files()}
    assert files == expected, "sample_data is stale: run python -m fetcher_lambda.samples"
    assert sum(len(text.encode()) for text in files.values()) < 2 * 1024 * 1024


def test_sample_files_cover_dst_and_extended_hours():
    for path in samples.sample_files():
        payload = json.loads(path.read_text())
        keys = list(payload["Time Series (1min)"])
        assert keys == sorted(keys, reverse=True)
        days = {k[:10] for k in keys}
        assert days == {"2024-03-07", "2024-03-08", "2024-03-11", "2024-03-12"}
        assert any("04:00:00" <= k[11:] < "09:30:00" for k in keys)
        assert any("16:00:00" <= k[11:] < "20:00:00" for k in keys)
        series = parse_response(path.read_bytes(), path.stem, "1min")
        assert series.invalid == 0
        opens = {b.ts for b in series.bars if b.ts.endswith(("14:30:00Z", "13:30:00Z"))}
        assert "2024-03-08T14:30:00Z" in opens and "2024-03-11T13:30:00Z" in opens
        for b in series.bars:
            assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high and b.volume > 0
