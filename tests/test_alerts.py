"""Signal alerts against the real local Kinesis and DynamoDB, and a real local HTTP receiver.

Each test owns a Kinesis stream and an alerts table and puts enriched records on the stream itself,
in the job's record contract: no Flink job runs here. SNS has no local stand-in: its publish
parameters are checked against botocore's service model (``Stubber`` validates every call's
parameters, and nothing is sent).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import boto3
import pytest
from botocore.stub import Stubber
from botocore.validate import ParamValidator

from alerts.config import ConfigError, Settings
from alerts.deliver import AlertPipeline
from alerts.local import LocalPublisher, ShardPoller
from alerts.message import Alert
from alerts.publish import DeliveryError, SnsPublisher, publish_request
from alerts.rules import RuleError, load_rules, parse_rules
from alerts.store import AlertStore
from alerts.webhook import WebhookSender
from tests.alert_receiver import AlertReceiver
from tests.local_aws import DYNAMODB_URL, KINESIS_URL

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "arn:aws:sns:us-east-1:123456789012:stock-signal-alerts"
RULES = {"rules": [
    {"name": "crosses", "types": ["sma_cross"], "cooldown_minutes": 180},
    {"name": "heavy volume", "types": ["volume_spike"], "min_strength": 8},
    {"name": "IBM overbought", "types": ["rsi_zone"], "symbols": ["IBM"], "directions": ["up"]},
]}


# --- records and fixtures ------------------------------------------------------------------------
def signal(kind: str, direction: str = "up", value: float | None = 0.5, detail: str = "") -> dict:
    return {"type": kind, "direction": direction, "value": value, "detail": detail}


def enriched(symbol: str, ts: str, *signals: dict, close: float = 171.4) -> bytes:
    """An enriched record as the job writes it (the fields alerts read, plus a few others)."""
    return json.dumps({"symbol": symbol, "ts": ts, "open": close, "high": close, "low": close, "close": close,
                       "volume": 1000, "sma_20": close, "sma_50": close, "trend": "up",
                       "signals": list(signals)}).encode()


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    server = AlertReceiver(failing_symbols=("FAIL",))
    yield server
    server.stop()


def put(kinesis, stream: str, *records: bytes) -> None:
    for data in records:
        kinesis.put_record(StreamName=stream, Data=data, PartitionKey=json.loads(data)["symbol"]
                           if data.startswith(b"{") else "x")


def store(dynamodb, table: str) -> AlertStore:
    return AlertStore(dynamodb, table, ttl_s=86400, lease_ms=60_000)


def drain(kinesis, dynamodb, stream: str, table: str, receiver: AlertReceiver, rules=RULES) -> dict:
    """Run the local runner's poll loop over the stream until it is read to the end, deliver to the
    receiver, and return the counts of what happened."""
    webhook = WebhookSender(receiver.url, attempts=3, timeout_s=2, backoff_s=0.05)
    pipeline = AlertPipeline(parse_rules(json.dumps(rules)), store(dynamodb, table), LocalPublisher(webhook))
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    pollers = [ShardPoller(kinesis, stream, arn, s["ShardId"], 100)
               for s in kinesis.list_shards(StreamName=stream)["Shards"]]
    counts: dict = {}
    original = pipeline.handle_event

    def counting(event, owner):
        result = original(event, owner)
        for key, value in result.counts.items():
            counts[key] = counts.get(key, 0) + value
        return result

    pipeline.handle_event = counting
    while sum(p.poll(pipeline, "test") for p in pollers):
        pass
    webhook.close()
    return counts


def table_items(dynamodb, table: str) -> dict[str, dict]:
    items = dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    return {i["id"]["S"]: i for i in items}


# --- once per signal -----------------------------------------------------------------------------
def test_duplicate_records_in_the_stream_give_one_alert(local_kinesis, local_dynamodb, kinesis_stream,
                                                        alerts_table, receiver):
    cross = enriched("IBM", "2024-03-08T15:31:00Z", signal("sma_cross", "up", 0.02, "golden"))
    put(local_kinesis, kinesis_stream, cross, cross, cross)
    counts = drain(local_kinesis, local_dynamodb, kinesis_stream, alerts_table, receiver)
    # A replay after the stream was read once (a Lambda retry, a restarted runner) sends nothing.
    again = drain(local_kinesis, local_dynamodb, kinesis_stream, alerts_table, receiver)

    assert receiver.ids() == ["IBM|2024-03-08T15:31:00Z|sma_cross"]
    assert counts == {"records": 3, "sent": 1, "duplicate": 2} and again == {"records": 3, "duplicate": 3}
    (alert,) = receiver.received
    assert alert["subject"] == "IBM golden cross: SMA 20 above SMA 50 at 10:31 New York, close 171.40"
    item = table_items(local_dynamodb, alerts_table)["alert|IBM|2024-03-08T15:31:00Z|sma_cross"]
    assert item["status"]["S"] == "sent" and "lease_owner" not in item
    assert abs(int(item["expires_at"]["N"]) - (time.time() + 86400)) < 120, "TTL: a day after it was written"


def test_a_revision_that_loses_its_signal_sends_nothing_and_one_that_adds_a_signal_alerts(
        local_kinesis, local_dynamodb, kinesis_stream, alerts_table, receiver):
    ts = "2024-03-08T15:31:00Z"
    put(local_kinesis, kinesis_stream,
        enriched("IBM", ts, signal("sma_cross", "up", 0.02, "golden")),
        enriched("IBM", ts, close=171.2),  # revised: the cross is gone
        enriched("IBM", ts, signal("sma_cross", "up", 0.01, "golden"), signal("volume_spike", "up", 9.5, "spike"),
                 close=171.6))  # revised again: the cross is back (same id) and a volume spike is new
    counts = drain(local_kinesis, local_dynamodb, kinesis_stream, alerts_table, receiver)

    assert receiver.ids() == [f"IBM|{ts}|sma_cross", f"IBM|{ts}|volume_spike"]
    assert counts["sent"] == 2 and counts["duplicate"] == 1
    assert receiver.received[1]["close"] == 171.6


def test_malformed_records_are_logged_with_a_reason_and_skipped(local_kinesis, local_dynamodb, kinesis_stream,
                                                                 alerts_table, receiver, caplog):
    put(local_kinesis, kinesis_stream, b"not json", b"[1, 2]", b'{"symbol": "IBM", "ts": "yesterday"}',
        json.dumps({"symbol": "IBM", "ts": "2024-03-08T15:31:00Z", "signals": [{"type": 1}]}).encode(),
        enriched("IBM", "2024-03-08T15:32:00Z", signal("sma_cross", "down", -0.01, "death")))
    with caplog.at_level(logging.WARNING, logger="alerts"):
        counts = drain(local_kinesis, local_dynamodb, kinesis_stream, alerts_table, receiver)

    assert receiver.ids() == ["IBM|2024-03-08T15:32:00Z|sma_cross"], "the good record after the bad ones alerts"
    reasons = [json.loads(r.message)["reason"] for r in caplog.records if '"malformed_record"' in r.message]
    assert reasons == ["not_json", "not_object", "bad_ts", "bad_signal"]
    assert counts["malformed"] == 4 and counts["records"] == 5


# --- rules and cooldown --------------------------------------------------------------------------
def test_rules_pick_symbols_types_directions_and_strength_and_the_cooldown_keeps_quiet(
        local_kinesis, local_dynamodb, kinesis_stream, alerts_table, receiver):
    put(local_kinesis, kinesis_stream,
        enriched("IBM", "2024-03-08T15:00:00Z", signal("sma_cross", "up", 0.02, "golden")),
        enriched("IBM", "2024-03-08T16:00:00Z", signal("sma_cross", "down", -0.02, "death")),  # 60 min: cooldown
        enriched("IBM", "2024-03-08T18:00:00Z", signal("sma_cross", "down", -0.02, "death")),  # 180 min: alerts
        enriched("AAPL", "2024-03-08T16:00:00Z", signal("sma_cross", "up", 0.02, "golden")),  # own cooldown
        enriched("IBM", "2024-03-08T15:01:00Z", signal("volume_spike", "up", 7.9, "spike")),  # below 8
        enriched("IBM", "2024-03-08T15:02:00Z", signal("volume_spike", "up", 8.0, "spike")),
        enriched("IBM", "2024-03-08T15:03:00Z", signal("rsi_zone", "up", 71.0, "overbought")),
        enriched("IBM", "2024-03-08T15:04:00Z", signal("rsi_zone", "down", 29.0, "oversold")),  # not this direction
        enriched("MSFT", "2024-03-08T15:05:00Z", signal("rsi_zone", "up", 72.0, "overbought")),  # not this symbol
        enriched("IBM", "2024-03-08T15:06:00Z", signal("trend_change", "up", 0.0001, "flat->up")))  # no rule
    counts = drain(local_kinesis, local_dynamodb, kinesis_stream, alerts_table, receiver)

    assert sorted(receiver.ids()) == sorted([
        "IBM|2024-03-08T15:00:00Z|sma_cross", "IBM|2024-03-08T18:00:00Z|sma_cross",
        "AAPL|2024-03-08T16:00:00Z|sma_cross", "IBM|2024-03-08T15:02:00Z|volume_spike",
        "IBM|2024-03-08T15:03:00Z|rsi_zone"])
    assert counts["suppressed"] == 1 and counts["not_matched"] == 4
    items = table_items(local_dynamodb, alerts_table)
    assert items["alert|IBM|2024-03-08T16:00:00Z|sma_cross"]["status"]["S"] == "suppressed"
    assert [a["rule"] for a in receiver.received if a["type"] == "rsi_zone"] == ["IBM overbought"]


@pytest.mark.parametrize("rules, message", [
    ('{"rules": [{"name": "crosses", "types": ["sma_crossing"]}]}', "rule #1 'crosses': unknown signal type(s) ['sma_crossing']"),
    ('{"rules": [{"name": "a", "types": ["sma_cross"]}, {"name": "spikes", "types": ["volume_spike"], "min_strength": -1}]}',
     "rule #2 'spikes': 'min_strength' must be a number >= 0"),
    ('{"rules": [{"name": "spikes", "types": ["volume_spike"], "cooldown_minute": 5}]}',
     "rule #1 'spikes': unknown key(s) ['cooldown_minute']"),
    ('{"rules": [{"name": "spikes", "types": ["volume_spike"], "directions": ["down"]}]}',
     "rule #1 'spikes': direction(s) ['down'] never occur for ['volume_spike']"),
    ('{"rules": [{"name": "x", "types": ["sma_cross"], "symbols": ["ibm"]}]}', "rule #1 'x': invalid symbol(s) ['ibm']"),
    ('{"rules": [{"types": ["sma_cross"]}]}', "rule #1: 'name' is required"),
    ('{"rules": [{"name": "x", "types": ["sma_cross"]}, {"name": "x", "types": ["rsi_zone"]}]}',
     "rule 'x': another rule has the same name"),
    ('{"rules": []}', "the rules list is empty"),
    ('{"rules": [{"name": "p", "types": ["sma_cross"], "patterns": ["CDLENGULFING"]}]}',
     "rule #1 'p': 'patterns' needs the type candle_pattern"),
    ('{"rules": [{"name": "p", "types": ["candle_pattern"], "patterns": ["CDLENGULF"]}]}',
     "rule #1 'p': unknown candlestick pattern(s) ['CDLENGULF']"),
    ('{"rules": [{"name": "t", "types": ["macd_cross"], "timeframes": ["1h"]}]}',
     "rule #1 't': unknown timeframe(s) ['1h']"),
    ('{"rules": [', "not JSON"),
])
def test_a_rule_file_with_errors_is_refused_naming_the_rule(tmp_path, rules, message):
    path = tmp_path / "rules.json"
    path.write_text(rules)
    with pytest.raises(RuleError) as err:
        load_rules(str(path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_rules_pick_candlestick_patterns_by_name_and_direction_and_candle_signals_by_timeframe():
    rules = parse_rules(json.dumps({"rules": [
        {"name": "bullish engulfing", "types": ["candle_pattern"], "patterns": ["CDLENGULFING"], "directions": ["up"]},
        {"name": "15-minute MACD", "types": ["macd_cross"], "timeframes": ["15m"]},
        {"name": "any star", "types": ["candle_pattern"]},
    ]}))

    def rule(type_, direction, detail, timeframe="1m"):
        found = rules.match("IBM", type_, direction, 100.0, detail, timeframe)
        return found and found.name

    assert rule("candle_pattern", "up", "CDLENGULFING") == "bullish engulfing"
    assert rule("candle_pattern", "down", "CDLENGULFING") == "any star"
    assert rule("candle_pattern", "up", "CDLMORNINGSTAR") == "any star"
    assert rule("macd_cross", "up", "bullish", "15m") == "15-minute MACD"
    assert rule("macd_cross", "up", "bullish", "5m") is None and rule("macd_cross", "up", "bullish") is None


def test_the_rules_know_every_pattern_the_job_computes():
    from alerts.rules import PATTERNS
    from flink_job.core.patterns import PATTERN_NAMES

    assert PATTERNS == set(PATTERN_NAMES)


def test_pattern_and_candle_alerts_have_ids_of_their_own_and_say_what_they_are():
    engulfing = Alert("IBM", "2024-03-08T15:31:00Z", 1709911860000, "candle_pattern", "up", 100.0, "CDLENGULFING",
                      171.4, "patterns")
    morning = Alert("IBM", "2024-03-08T15:31:00Z", 1709911860000, "candle_pattern", "up", 100.0, "CDLMORNINGSTAR",
                    171.4, "patterns")
    macd_5m = Alert("IBM", "2024-03-08T15:31:00Z", 1709911860000, "macd_cross", "up", 0.1, "bullish", 171.4, "macd",
                    "5m")
    assert [engulfing.id, morning.id, macd_5m.id] == [
        "IBM|2024-03-08T15:31:00Z|candle_pattern:CDLENGULFING", "IBM|2024-03-08T15:31:00Z|candle_pattern:CDLMORNINGSTAR",
        "IBM|2024-03-08T15:31:00Z|macd_cross:5m"]
    assert engulfing.headline() == "bullish candlestick pattern engulfing (CDLENGULFING)"
    assert macd_5m.headline().startswith("5m candles: MACD bullish cross")
    assert GOLDEN.id == "IBM|2024-03-08T15:31:00Z|sma_cross", "1-minute ids as before"


def test_the_runner_refuses_to_start_with_a_bad_rule_file(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text('{"rules": [{"name": "loud", "types": ["volume_spike"], "min_strength": "high"}]}')
    result = subprocess.run([sys.executable, "-m", "alerts"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "ALERTS_RULES": str(path)})
    assert result.returncode == 2
    assert "rule #1 'loud': 'min_strength' must be a number >= 0; got 'high'" in result.stderr


def test_settings_errors_name_the_variable():
    with pytest.raises(ConfigError, match="ALERTS_WEBHOOK_URL"):
        Settings.from_env({"ALERTS_WEBHOOK_URL": "ftp://x"})
    with pytest.raises(ConfigError, match="ALERTS_TTL_DAYS"):
        Settings.from_env({"ALERTS_TTL_DAYS": "soon"})
    with pytest.raises(RuleError, match="ALERTS_RULES: cannot read the rules file"):
        Settings.from_env({"ALERTS_RULES": "/nonexistent/rules.json"})
    assert Settings.from_env({}).rules == load_rules(None)


def test_the_default_rules_are_quiet_on_the_sample_data():
    """A handful of alerts per symbol and trading day, out of ~150 signals (README, "Alerts")."""
    from tests.alert_volume import alerts_per_symbol_day, enriched_sample_records

    alerts, signals = alerts_per_symbol_day(load_rules(None), enriched_sample_records())
    per_day = sum(alerts.values()) / len(signals)
    assert len(signals) == 16 and sum(signals.values()) / len(signals) > 100
    assert 2 <= per_day <= 6 and max(alerts.values()) <= 8, (per_day, alerts)


# --- webhook -------------------------------------------------------------------------------------
def test_a_failing_webhook_receiver_is_retried_then_logged_and_blocks_nothing(
        local_kinesis, local_dynamodb, kinesis_stream, alerts_table, receiver, caplog):
    put(local_kinesis, kinesis_stream,
        enriched("FAIL", "2024-03-08T15:31:00Z", signal("sma_cross", "up", 0.02, "golden")),
        enriched("IBM", "2024-03-08T15:32:00Z", signal("sma_cross", "up", 0.02, "golden")))
    pipeline_store = store(local_dynamodb, alerts_table)
    webhook = WebhookSender(receiver.url, attempts=3, timeout_s=2, backoff_s=0.3)  # retries take >= 0.9 s
    pipeline = AlertPipeline(parse_rules(json.dumps(RULES)), pipeline_store, LocalPublisher(webhook))
    arn = local_kinesis.describe_stream_summary(StreamName=kinesis_stream)["StreamDescriptionSummary"]["StreamARN"]
    (shard,) = local_kinesis.list_shards(StreamName=kinesis_stream)["Shards"]
    poller = ShardPoller(local_kinesis, kinesis_stream, arn, shard["ShardId"], 100)
    with caplog.at_level(logging.WARNING, logger="alerts"):
        started = time.monotonic()
        assert poller.poll(pipeline, "test") == 2
        handled_s = time.monotonic() - started
        webhook.close()

    assert handled_s < 0.9, f"the batch waited for the failing receiver ({handled_s:.2f}s)"
    assert receiver.attempts == {"FAIL|2024-03-08T15:31:00Z|sma_cross": 3, "IBM|2024-03-08T15:32:00Z|sma_cross": 1}
    assert receiver.ids() == ["IBM|2024-03-08T15:32:00Z|sma_cross"]
    (failed,) = [json.loads(r.message) for r in caplog.records if '"webhook_failed"' in r.message]
    assert failed["id"] == "FAIL|2024-03-08T15:31:00Z|sma_cross" and "HTTP 500" in failed["reason"]
    assert failed["receiver"] == receiver.url.split("/hooks")[0], "the path and its token stay out of the log"
    assert webhook.failed == 1 and webhook.sent == 1
    # The alert still counts as sent: the table (and the dashboard) have it.
    assert table_items(local_dynamodb, alerts_table)["alert|FAIL|2024-03-08T15:31:00Z|sma_cross"]["status"]["S"] == "sent"


def test_make_run_s_runner_polls_the_stream_and_posts_to_the_webhook(local_kinesis, local_dynamodb,
                                                                     kinesis_stream, receiver):
    """``python -m alerts`` as ``make run`` starts it: its own table, the local services, a webhook."""
    table = f"test-alerts-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "ENRICHED_STREAM_NAME": kinesis_stream, "ALERTS_TABLE_NAME": table,
           "KINESIS_ENDPOINT_URL": KINESIS_URL, "DYNAMODB_ENDPOINT_URL": DYNAMODB_URL, "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "ALERTS_WEBHOOK_URL": receiver.url,
           "ALERTS_POLL_INTERVAL_SECONDS": "0.2"}
    proc = subprocess.Popen([sys.executable, "-m", "alerts", "--create-table"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        cross = enriched("IBM", "2024-03-08T15:31:00Z", signal("sma_cross", "up", 0.02, "golden"))
        put(local_kinesis, kinesis_stream, cross, enriched("IBM", "2024-03-08T15:32:00Z"), cross)
        deadline = time.monotonic() + 30
        while not receiver.ids() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # time for a duplicate to arrive, were one sent
        assert receiver.ids() == ["IBM|2024-03-08T15:31:00Z|sma_cross"]
        recent = AlertStore(local_dynamodb, table).recent()
        assert [a["subject"] for a in recent] == [receiver.received[0]["subject"]]
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0]
        local_dynamodb.delete_table(TableName=table)
    assert proc.returncode == 0, output
    assert all(json.loads(line)["event"] for line in output.splitlines()), "logs are JSON lines"


# --- SNS (parameters validated against botocore's model; nothing sent) ----------------------------
GOLDEN = Alert("IBM", "2024-03-08T15:31:00Z", 1709911860000, "sma_cross", "up", 0.0213, "golden", 171.4, "crosses")


@pytest.fixture
def sns():
    client = boto3.session.Session().client("sns", region_name="us-east-1", aws_access_key_id="x",
                                            aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_the_sns_message_is_valid_and_carries_the_filter_attributes(sns):
    client, stubber = sns
    request = publish_request(GOLDEN, TOPIC)
    model = client.meta.service_model.operation_model("Publish").input_shape
    report = ParamValidator().validate(request, model)
    assert not report.has_errors(), report.generate_report()
    stubber.add_response("publish", {"MessageId": "m-1"}, expected_params=request)
    SnsPublisher(client, TOPIC).publish(GOLDEN)

    assert {k: v["StringValue"] for k, v in request["MessageAttributes"].items()} == {
        "symbol": "IBM", "type": "sma_cross", "direction": "up"}
    subject = request["Subject"]
    assert subject == "IBM golden cross: SMA 20 above SMA 50 at 10:31 New York, close 171.40"
    message = json.loads(request["Message"])
    assert message["default"] == message["email"] and message["default"].startswith(subject)
    assert message["sms"] == subject and json.loads(message["https"])["id"] == "IBM|2024-03-08T15:31:00Z|sma_cross"


@pytest.mark.parametrize("kind, direction, value, detail, headline", [
    ("macd_cross", "down", -0.01, "bearish", "MACD bearish cross: MACD below its signal line"),
    ("rsi_zone", "up", 72.34, "overbought", "RSI overbought: RSI 14 rose to 72.3"),
    ("bb_breakout", "down", 170.0, "lower", "Bollinger breakout: close below the lower band"),
    ("volume_spike", "up", 9.41, "spike", "volume spike: 9.4 standard deviations above the last 20 bars"),
    ("price_anomaly", "down", -5.2, "drop", "price drop: a -5.2 sigma move"),
    ("trend_change", "flat", 0.00001, "up->flat", "trend turned flat (was up)"),
    ("a_new_kind", "up", None, "", "a new kind up"),
])
def test_every_signal_type_reads_well_and_fits_sns_limits(kind, direction, value, detail, headline):
    alert = Alert("BRK.B-LONGNAME"[:12], "2024-03-12T13:30:00Z", 1710250200000, kind, direction, value, detail,
                  412.55, "r")
    assert alert.headline() == headline
    subject = publish_request(alert, TOPIC)["Subject"]
    assert subject.isascii() and len(subject) < 100 and "09:30 New York" in subject  # after the DST change


def test_a_failed_publish_is_a_batch_item_failure_and_the_retry_sends_once(sns, local_dynamodb, alerts_table):
    client, stubber = sns
    pipeline = AlertPipeline(parse_rules(json.dumps(RULES)), store(local_dynamodb, alerts_table),
                             SnsPublisher(client, TOPIC))
    records = [enriched("IBM", "2024-03-08T15:31:00Z", signal("sma_cross", "up", 0.02, "golden")),
               enriched("IBM", "2024-03-08T15:32:00Z", signal("volume_spike", "up", 12.0, "spike"))]
    event = {"Records": [{"eventID": f"shardId-0:{i}", "kinesis": {
        "data": __import__("base64").b64encode(r).decode(), "sequenceNumber": str(i), "partitionKey": "IBM"}}
        for i, r in enumerate(records)]}
    # botocore retries throttling and 5xx itself (standard mode); this error is what is left after that.
    stubber.add_client_error("publish", "InternalError", http_status_code=500)
    first = pipeline.handle_event(event, "invocation-1")
    assert first.response() == {"batchItemFailures": [{"itemIdentifier": "0"}]}
    assert table_items(local_dynamodb, alerts_table) == {}, "the claim and the cooldown were given back"

    stubber.add_response("publish", {"MessageId": "m-1"})
    stubber.add_response("publish", {"MessageId": "m-2"})
    second = pipeline.handle_event(event, "invocation-2")  # the mapping retries from the failed record
    third = pipeline.handle_event(event, "invocation-3")  # and a later replay sends nothing
    assert second.response() == {"batchItemFailures": []} and second.counts["sent"] == 2
    assert third.counts["duplicate"] == 2 and "sent" not in third.counts


def test_the_lambda_handler_answers_with_batch_item_failures(sns, local_dynamodb, alerts_table, monkeypatch):
    from alerts import handler

    client, stubber = sns
    monkeypatch.setattr(handler, "_pipeline", None)
    monkeypatch.setattr(handler, "sns_client", lambda region, attempts: client)
    for name, value in {"ALERTS_TOPIC_ARN": TOPIC, "ALERTS_TABLE_NAME": alerts_table, "DYNAMODB_ENDPOINT_URL": DYNAMODB_URL,
                        "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
                        "ALERTS_RULES": json.dumps(RULES)}.items():
        monkeypatch.setenv(name, value)
    data = [b"garbage", enriched("IBM", "2024-03-08T15:31:00Z", signal("sma_cross", "up", 0.02, "golden"))]
    event = {"Records": [{"eventID": f"shardId-0:{i}", "kinesis": {
        "data": __import__("base64").b64encode(d).decode(), "sequenceNumber": str(i), "partitionKey": "IBM"}}
        for i, d in enumerate(data)]}
    stubber.add_response("publish", {"MessageId": "m-1"}, expected_params=publish_request(
        Alert("IBM", "2024-03-08T15:31:00Z", 1709911860000, "sma_cross", "up", 0.02, "golden", 171.4, "crosses"), TOPIC))

    context = type("Context", (), {"aws_request_id": "req-1"})()
    assert handler.lambda_handler(event, context) == {"batchItemFailures": []}
    monkeypatch.setattr(handler, "_pipeline", None)
    monkeypatch.delenv("ALERTS_TOPIC_ARN")
    with pytest.raises(ConfigError, match="ALERTS_TOPIC_ARN"):
        handler.lambda_handler(event, context)


def test_a_publish_error_becomes_a_delivery_error(sns):
    client, stubber = sns
    stubber.add_client_error("publish", "AuthorizationError", http_status_code=403)
    with pytest.raises(DeliveryError, match="AuthorizationError"):
        SnsPublisher(client, TOPIC).publish(GOLDEN)
