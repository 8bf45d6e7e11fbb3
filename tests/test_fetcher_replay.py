"""Replay of the sample set and the local entry point, against the real local Kinesis/DynamoDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fetcher_lambda.replay import load_bars, replay, ticks
from fetcher_lambda.samples import av_payload, render
from tests import fake_alphavantage as fake
from tests.local_aws import DYNAMODB_URL, KINESIS_URL
from tests.fake_alphavantage import TEST_API_KEY as KEY

ROOT = Path(__file__).resolve().parent.parent


def test_replay_puts_the_whole_sample_set_oldest_first(local_kinesis, kinesis_stream, read_stream):
    bars = load_bars()
    assert {b.symbol for b in bars} == {"IBM", "AAPL", "MSFT", "SPY"}
    lines: list[str] = []
    stats = replay(local_kinesis, kinesis_stream, bars, speed=0, progress=lines.append)
    records = read_stream(kinesis_stream)
    assert stats.bars == len(records) == len(bars) and 4000 < len(bars) < 10000
    stamps = [record["ts"] for _, record in records]
    assert stamps == sorted(stamps)  # symbols interleaved by time
    for symbol in ("IBM", "SPY"):
        own = [r["ts"] for key, r in records if key == symbol and r["symbol"] == symbol]
        assert own == sorted(own) and len(own) == len(set(own))
    assert records[0][1]["ts"].startswith("2024-03-07T09:")  # 04:xx New York = 09:xx UTC
    assert lines[0].startswith("replay:") and "100%" in lines[-1]


def test_replay_paces_by_bar_minutes(local_kinesis, kinesis_stream, read_stream):
    bars = [b for b in load_bars() if b.ts < "2024-03-07T15:00:00Z"]
    groups = ticks(bars)
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    stats = replay(local_kinesis, kinesis_stream, bars, speed=20, progress=lambda _: None,
                   clock=lambda: now[0], sleep=sleep)
    assert stats.bars == len(read_stream(kinesis_stream)) == len(bars)
    # len(groups) bar minutes at 20 per second, sent in chunks rather than one call per minute.
    assert abs(now[0] - (len(groups) - 1) / 20) < 0.5
    assert stats.put_records_calls < len(groups)


def _cli(args: list[str], env_extra: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ALPHAVANTAGE_", "AV_"))}
    env.update({"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_REGION": "us-east-1",
                "KINESIS_ENDPOINT_URL": KINESIS_URL, "DYNAMODB_ENDPOINT_URL": DYNAMODB_URL,
                **env_extra})
    return subprocess.run([sys.executable, "-m", "fetcher_lambda", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_once_creates_resources_and_logs_a_json_summary(fake_alphavantage, local_kinesis, local_dynamodb,
                                                           read_stream):
    import uuid

    stream, table = f"test-cli-{uuid.uuid4().hex[:8]}", f"test-cli-{uuid.uuid4().hex[:8]}"
    fake_alphavantage.set_series("IBM", fake.minute_rows("2024-03-08 10:00", 7))
    fake_alphavantage.queue("AAPL", fake.RATE_LIMIT)
    try:
        # The bars are of a past day: fetch them whatever the market does while the test runs.
        done = _cli(["--once", "--create-resources", "--ignore-market-hours"], {
            "SYMBOLS": "IBM,AAPL", "BARS_STREAM_NAME": stream, "CURSOR_TABLE_NAME": table,
            "AV_BASE_URL": fake_alphavantage.url, "AV_API_KEY": KEY,
            "AV_CALLS_PER_MINUTE": "600"})
        assert done.returncode == 1, done.stderr  # one symbol failed
        lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
        summary = [line for line in lines if line["event"] == "fetch_summary"][0]
        assert summary["bars_sent"] == 7 and summary["failed"] == {"AAPL": "rate_limit"}
        assert KEY not in done.stdout + done.stderr
        assert len(read_stream(stream)) == 7
    finally:
        local_kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        local_dynamodb.delete_table(TableName=table)


def test_cli_reports_setup_problems_in_one_line():
    missing_key = _cli(["--once"], {"SYMBOLS": "IBM"})
    assert missing_key.returncode == 2 and "AV_API_KEY" in missing_key.stderr
    bad = _cli(["--month", "2024-13"], {})
    assert bad.returncode == 2 and "YYYY-MM" in bad.stderr
    bad_setting = _cli(["--once"], {"AV_INTERVAL": "2min", "AV_API_KEY": KEY})
    assert bad_setting.returncode == 2 and "AV_INTERVAL must be one of" in bad_setting.stderr


def test_cli_replay(local_kinesis, read_stream, tmp_path):
    import uuid

    for symbol in ("IBM", "SPY"):  # a small sample set keeps the test fast
        rows = fake.minute_rows("2024-03-08 09:30", 40)
        (tmp_path / f"{symbol}.json").write_text(render(av_payload(symbol, rows)))
    stream = f"test-replay-{uuid.uuid4().hex[:8]}"
    try:
        done = _cli(["--replay", "--speed", "200", "--create-resources", "--sample-dir", str(tmp_path)],
                    {"BARS_STREAM_NAME": stream})
        assert done.returncode == 0, done.stderr
        assert "replay: 80/80 bars (100%)" in done.stdout and "replay: done" in done.stdout
        records = read_stream(stream)
        assert len(records) == 80 and [r["ts"] for _, r in records] == sorted(r["ts"] for _, r in records)
    finally:
        local_kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)


def test_handler_import_is_light():
    code = ("import sys, time; t = time.perf_counter(); import fetcher_lambda.handler; "
            "print(time.perf_counter() - t, 'boto3' in sys.modules, 'botocore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    seconds, boto3_loaded, botocore_loaded = out.stdout.split()
    assert boto3_loaded == botocore_loaded == "False"  # boto3 is imported on first use, not at cold start
    assert float(seconds) < 1.0  # typically ~0.1 s; a generous bound so a busy machine does not flake
