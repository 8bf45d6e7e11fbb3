"""The Alpha Vantage client against a fake API on a real socket: query, retries, timeouts, notices."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import replace

import pytest

from fetcher_lambda.alphavantage import AlphaVantageClient, FetchError
from fetcher_lambda.deadline import Deadline
from tests import fake_alphavantage as fake
from tests.fake_alphavantage import TEST_API_KEY as KEY
from tests.fake_alphavantage import Reply


def client(settings, seconds: float = 20.0) -> AlphaVantageClient:
    return AlphaVantageClient(settings, KEY, Deadline.after(seconds))


def test_query_has_every_parameter_and_compact_full_month(fake_alphavantage, av_settings):
    fake_alphavantage.set_series("IBM", fake.minute_rows("2024-03-08 09:30", 150)
                                 + fake.minute_rows("2024-04-01 09:30", 5))
    av = client(av_settings)
    compact = av.fetch("IBM")
    full = av.fetch("IBM", outputsize="full")
    march = av.fetch("IBM", month="2024-03")
    assert (len(compact.bars), len(full.bars), len(march.bars)) == (100, 155, 150)
    assert compact.bars[-1].ts == "2024-04-01T13:34:00Z" and march.bars[0].ts == "2024-03-08T14:30:00Z"
    first, _, third = fake_alphavantage.calls("IBM")
    assert first == {"function": "TIME_SERIES_INTRADAY", "symbol": "IBM", "interval": "1min",
                     "outputsize": "compact", "extended_hours": "true", "adjusted": "true",
                     "datatype": "json", "entitlement": "delayed", "apikey": KEY}
    assert third["month"] == "2024-03" and third["outputsize"] == "full" and "entitlement" not in third
    assert av.api_calls == 3 and av.http_retries == 0


def test_http_500_then_success_is_retried(fake_alphavantage, av_settings):
    fake_alphavantage.set_series("IBM", fake.minute_rows("2024-03-08 09:30", 3))
    fake_alphavantage.queue("IBM", Reply("boom", status=500), Reply("busy", status=503))
    av = client(av_settings)
    assert len(av.fetch("IBM").bars) == 3
    assert av.api_calls == 1 and av.http_retries == 2 and len(fake_alphavantage.calls("IBM")) == 3


def test_persistent_500_fails_the_symbol_after_bounded_retries(fake_alphavantage, av_settings):
    fake_alphavantage.queue("IBM", *[Reply("boom", status=500)] * 5)
    with pytest.raises(FetchError) as err:
        client(av_settings).fetch("IBM")
    assert err.value.kind == "http_status" and "500" in str(err.value)
    assert len(fake_alphavantage.calls("IBM")) == av_settings.http_retries + 1


def test_slow_reply_past_read_timeout_is_retried_then_succeeds(fake_alphavantage, av_settings):
    fake_alphavantage.set_series("IBM", fake.minute_rows("2024-03-08 09:30", 3))
    fake_alphavantage.queue("IBM", Reply(fake.RATE_LIMIT, delay_s=1.5))
    av = client(av_settings)
    assert len(av.fetch("IBM").bars) == 3
    assert av.http_retries == 1


def test_slow_replies_end_in_a_timeout_within_the_bound(fake_alphavantage, av_settings):
    fake_alphavantage.queue("IBM", *[Reply(fake.RATE_LIMIT, delay_s=2.0)] * 3)
    started = time.monotonic()
    with pytest.raises(FetchError) as err:
        client(av_settings).fetch("IBM")
    assert err.value.kind == "timeout"
    attempts = av_settings.http_retries + 1
    assert time.monotonic() - started < attempts * av_settings.read_timeout_s + 1.0
    assert KEY not in str(err.value)


def test_retries_stop_at_the_invocation_deadline(fake_alphavantage, av_settings):
    fake_alphavantage.queue("IBM", *[Reply("boom", status=500)] * 5)
    av = client(replace(av_settings, http_retries=10, backoff_factor_s=0.2, backoff_max_s=0.2), seconds=1.5)
    started = time.monotonic()
    with pytest.raises(FetchError):
        av.fetch("IBM")
    assert time.monotonic() - started < 1.5
    assert len(fake_alphavantage.calls("IBM")) < 11


def test_unreachable_api_is_a_connection_error_without_the_key(av_settings, caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    caplog.set_level(logging.DEBUG)
    with pytest.raises(FetchError) as err:
        client(replace(av_settings, base_url=f"http://127.0.0.1:{port}")).fetch("IBM")
    assert err.value.kind == "connection_error"
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert KEY not in str(err.value) and KEY not in caplog.text
    assert "apikey=***" in caplog.text  # urllib3's retry warnings are kept, redacted


@pytest.mark.parametrize("reply, kind", [
    (fake.RATE_LIMIT, "rate_limit"), (fake.NOTE, "rate_limit"), (fake.ERROR_MESSAGE, "api_error"),
    (fake.DEMO_KEY, "demo_key"), (fake.PREMIUM, "entitlement_refused"), (fake.MISSING_SERIES, "missing_series"),
    (fake.MALFORMED_JSON, "malformed_json"),
])
def test_http_200_notices_are_failures_of_their_kind(fake_alphavantage, av_settings, reply, kind):
    fake_alphavantage.queue("IBM", reply)
    av = client(av_settings)
    with pytest.raises(FetchError) as err:
        av.fetch("IBM")
    assert err.value.kind == kind and av.http_retries == 0
