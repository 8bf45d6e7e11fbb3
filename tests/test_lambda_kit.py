"""The Lambdas' shared toolkit: parsers, renamed settings, secrets and JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from alerts.config import Settings as AlertsSettings
from alerts.logs import configure_logging as configure_alerts_logging
from fetcher_lambda.config import Settings as FetcherSettings
from lambda_kit import env, logs, renamed, secret
from lambda_kit.env import ConfigError

ROOT = Path(__file__).resolve().parent.parent
RULES = '{"rules": [{"name": "crosses", "types": ["sma_cross"]}]}'
# A valid value, different from the default, for every name the renamed maps lead to.
NEW_VALUES = {
    "BARS_STREAM_NAME": "bars-x", "CURSOR_TABLE_NAME": "cursor-x", "AV_API_KEY": "k-123",
    "AV_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:av", "AV_BASE_URL": "http://127.0.0.1:9",
    "AV_INTERVAL": "5min", "AV_EXTENDED_HOURS": "false", "AV_ADJUSTED": "no", "AV_OUTPUTSIZE": "full",
    "AV_CONNECT_TIMEOUT_SECONDS": "1.5", "AV_READ_TIMEOUT_SECONDS": "4", "AV_RETRIES": "1",
    "FETCHER_CONCURRENCY": "3", "FETCHER_PUT_ATTEMPTS": "2", "FETCHER_LOCAL_BUDGET_SECONDS": "20",
    "FETCHER_BACKFILL_BUDGET_SECONDS": "60", "FETCHER_CATCH_UP": "0",
    "ENRICHED_STREAM_NAME": "enriched-x", "ALERTS_TABLE_NAME": "alerts-x",
    "ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts", "ALERTS_RULES": RULES,
    "ALERTS_LEASE_SECONDS": "30", "ALERTS_PUBLISH_ATTEMPTS": "2", "ALERTS_WEBHOOK_URL": "http://127.0.0.1:9/a",
    "ALERTS_WEBHOOK_ATTEMPTS": "2", "ALERTS_WEBHOOK_TIMEOUT_SECONDS": "0.5", "ALERTS_POLL_INTERVAL_SECONDS": "0.1",
}
LAMBDAS = [("fetcher", renamed.FETCHER, FetcherSettings), ("alerts", renamed.ALERTS, AlertsSettings)]


def renamed_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if '"setting_renamed"' in r.getMessage()]


# --- renamed settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "renames", "settings"), LAMBDAS)
def test_each_old_name_still_sets_its_new_one_with_a_warning_naming_both(name, renames, settings, caplog):
    caplog.set_level(logging.WARNING)
    defaults = settings.from_env({})
    for old, new in renames.items():
        caplog.clear()
        by_new = settings.from_env({new: NEW_VALUES[new]})
        assert by_new != defaults, f"{name} does not read {new}"
        assert renamed_lines(caplog) == []
        assert settings.from_env({old: NEW_VALUES[new]}) == by_new, f"{old} is not read as {new}"
        (line,) = renamed_lines(caplog)
        assert line["level"] == "WARNING" and (line["old"], line["new"]) == (old, new) and not line["old_ignored"]
        assert new in line["hint"] and old in line["hint"]


@pytest.mark.parametrize(("name", "renames", "settings"), LAMBDAS)
def test_the_new_name_wins_over_the_old_one_and_the_warning_says_so(name, renames, settings, caplog):
    caplog.set_level(logging.WARNING)
    old = next(o for o, n in renames.items() if n.endswith("_STREAM_NAME"))
    new = renames[old]
    got = settings.from_env({old: "from-old", new: NEW_VALUES[new]})
    assert got.stream_name == NEW_VALUES[new]
    (line,) = renamed_lines(caplog)
    assert line["old_ignored"] and f"{old} is ignored" in line["hint"]


def test_stream_name_meant_two_streams_and_now_each_has_its_own_name():
    assert renamed.FETCHER["STREAM_NAME"] == "BARS_STREAM_NAME"
    assert renamed.ALERTS["STREAM_NAME"] == "ENRICHED_STREAM_NAME"
    both = {"BARS_STREAM_NAME": "bars", "ENRICHED_STREAM_NAME": "enriched"}
    assert FetcherSettings.from_env(both).stream_name == "bars"
    assert AlertsSettings.from_env(both).stream_name == "enriched"


def test_new_names_follow_the_conventions():
    for old, new in [*renamed.FETCHER.items(), *renamed.ALERTS.items()]:
        assert new != old and new not in renamed.FETCHER and new not in renamed.ALERTS
        assert new.startswith(("AV_", "FETCHER_", "ALERTS_", "BARS_", "ENRICHED_", "CURSOR_")), new
    for duration in ("TIMEOUT", "BUDGET", "LEASE", "INTERVAL"):
        for new in [*renamed.FETCHER.values(), *renamed.ALERTS.values()]:
            if duration in new and new != "AV_INTERVAL":  # AV_INTERVAL is a bar size: 1min ... 60min
                assert new.endswith(("_SECONDS", "_DAYS")), new


def test_the_readme_lists_every_renamed_setting():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Renamed settings"):]
    listed = set(re.findall(r"^\| `(\w+)` \| `(\w+)` \| (fetcher|alerts) \|$", section, re.MULTILINE))
    expected = {(o, n, name) for name, renames, _ in LAMBDAS for o, n in renames.items()}
    assert listed == expected


def test_the_template_sets_only_new_names_on_both_functions():
    from tests.cfn_template import load_template

    template = load_template()
    for function, renames in (("FetcherFunction", renamed.FETCHER), ("AlertsFunction", renamed.ALERTS)):
        variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert variables and not set(variables) & set(renames), f"{function} still sets an old name"
        assert set(variables) & set(renames.values()), function


# --- parsers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("TRUE", True), ("1", True), ("yes", True),
                                            ("on", True), ("false", False), ("0", False), ("No", False),
                                            ("off", False)])
def test_booleans_accept_true_false_and_the_usual_spellings(raw, value):
    assert env.boolean({"X_FLAG": raw}, "X_FLAG", not value) is value


def test_parsers_name_the_variable_and_treat_blank_as_unset():
    with pytest.raises(ConfigError, match="X_FLAG must be true or false; got 'maybe'"):
        env.boolean({"X_FLAG": "maybe"}, "X_FLAG", True)
    with pytest.raises(ConfigError, match="X_SECONDS must be a number"):
        env.number({"X_SECONDS": "soon"}, "X_SECONDS", 1.0)
    with pytest.raises(ConfigError, match="X_SECONDS must be at least 1"):
        env.number({"X_SECONDS": "nan"}, "X_SECONDS", 2.0, minimum=1)
    with pytest.raises(ConfigError, match="LOG_LEVEL must be one of DEBUG"):
        env.log_level({"LOG_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="X_URL must start with http:// or https://"):
        env.http_url({"X_URL": "ftp://x"}, "X_URL", None, "http://127.0.0.1:9000/")
    blank = {"X_FLAG": "  ", "X_SECONDS": "", "X_NAME": " "}
    assert env.boolean(blank, "X_FLAG", True) and env.number(blank, "X_SECONDS", 2.0) == 2.0
    assert env.text(blank, "X_NAME", "d") == "d" and env.optional(blank, "X_NAME") is None
    assert env.log_level({"LOG_LEVEL": "debug"}) == "DEBUG"


def test_both_lambdas_raise_the_one_config_error():
    from alerts.config import ConfigError as AlertsError
    from fetcher_lambda.config import ConfigError as FetcherError

    assert AlertsError is FetcherError is ConfigError
    with pytest.raises(ConfigError, match="ALERTS_TTL_DAYS"):
        AlertsSettings.from_env({"ALERTS_TTL_DAYS": "soon"})
    with pytest.raises(ConfigError, match="FETCHER_CATCH_UP"):
        FetcherSettings.from_env({"FETCHER_CATCH_UP": "perhaps"})


# --- secrets ---------------------------------------------------------------------------------------


class SecretsManager:
    """Answers GetSecretValue like Secrets Manager: a value, or the error it was given."""

    def __init__(self, value: str | None = None, error: str | None = None):
        self.value, self.error, self.calls = value, error, 0

    def __call__(self) -> "SecretsManager":
        return self

    def get_secret_value(self, SecretId: str) -> dict:  # noqa: N803 - boto3's parameter name
        self.calls += 1
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "no"}}, "GetSecretValue")
        return {"SecretString": self.value, "ARN": SecretId}


ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kit"


def test_a_secret_is_read_once_and_a_refused_value_is_read_again():
    secret.clear_cache()
    try:
        client = SecretsManager("value-1")
        assert secret.secret_value(ARN, client, str.upper) == "VALUE-1"
        assert secret.secret_value(ARN, client, str.upper) == "VALUE-1" and client.calls == 1
        secret.clear_cache()

        def refuse(_: str) -> str:
            raise ConfigError("bad value")

        with pytest.raises(ConfigError, match="bad value"):
            secret.secret_value(ARN, client, refuse)
        assert secret.secret_value(ARN, client, str) == "value-1" and client.calls == 3
        assert logs.redact("it is value-1 here") == "it is *** here"  # a read value is redacted
    finally:
        secret.clear_cache()


def test_an_unreadable_secret_names_the_arn_and_what_to_check():
    secret.clear_cache()
    with pytest.raises(ConfigError) as err:
        secret.secret_value(ARN, SecretsManager(error="AccessDeniedException"), str)
    assert ARN in str(err.value) and "AccessDeniedException" in str(err.value)
    assert "secretsmanager:GetSecretValue" in str(err.value)
    assert repr(secret.Secret("s3cr3t")) == "Secret('***')" and "s3cr3t" not in str(secret.Secret("s3cr3t"))


# --- log lines -------------------------------------------------------------------------------------


def test_event_lines_pass_through_and_other_records_are_wrapped_redacted():
    formatter = logs.JsonLines()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("lambda_kit.test")
    logger.addHandler(keep := Keep())
    logger.setLevel(logging.INFO)
    try:
        logs.log_event(logger, logging.INFO, "done", url="https://x/query?symbol=IBM&apikey=abc123&x=1")
        logger.warning("GET /hook?token=t0k3n failed")
    finally:
        logger.removeHandler(keep)
    first, second = (json.loads(formatter.format(r)) for r in records)
    assert first == {"event": "done", "level": "INFO", "url": "https://x/query?symbol=IBM&apikey=***&x=1"}
    assert second == {"event": "log", "level": "WARNING", "logger": "lambda_kit.test",
                      "message": "GET /hook?token=*** failed"}


def test_the_alerts_get_the_redaction_too():
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("urllib3", "botocore", "boto3")}
    out = io.StringIO()
    root.handlers = []
    try:
        configure_alerts_logging("DEBUG", out)
        logs.register_secret("hook-secret-42")
        logging.getLogger("alerts.webhook").info("posting to https://hooks.example/hook-secret-42")
        logs.log_event(logging.getLogger("alerts.deliver"), logging.INFO, "sent", target="hook-secret-42")
        assert logging.getLogger("urllib3").level == logging.WARNING  # quiet, as the SDK's loggers
    finally:
        root.handlers, root.level = saved_handlers, saved_level
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["log", "sent"]
    assert "hook-secret-42" not in out.getvalue() and lines[1]["target"] == "***"


def test_make_run_sets_only_new_names_and_tells_the_two_streams_apart(monkeypatch):
    from stack import run

    ports = SimpleNamespace(url=lambda name: f"http://127.0.0.1:1/{name}")
    config = SimpleNamespace(source=SimpleNamespace(stream_name="in", region="us-east-1"),
                             sink=SimpleNamespace(stream_name="out"))
    ctx = SimpleNamespace(ports=ports, config=config)
    producer, alerts = run.producer_env(ctx), run.alerts_env(ctx)
    old_names = {*renamed.FETCHER, *renamed.ALERTS}
    assert not set(producer) & old_names and not set(alerts) & old_names
    assert FetcherSettings.from_env(producer).stream_name == "in"
    assert AlertsSettings.from_env(alerts).stream_name == "out"
    # A key under its old name still makes `make run` fetch live (the fetcher reads it, with a warning).
    for name in ("AV_API_KEY", "ALPHAVANTAGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert not run.has_api_key()
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", "k")
    assert run.has_api_key() and "--replay" not in run.producer_command(ctx)


def test_the_command_line_prints_the_warning_as_a_json_line_before_logging_is_set_up():
    """The warning is logged while the settings are parsed; locally it still reaches stderr as JSON."""
    env = {k: v for k, v in os.environ.items() if k not in {*renamed.FETCHER, *renamed.FETCHER.values()}}
    result = subprocess.run([sys.executable, "-m", "fetcher_lambda", "--once"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**env, "INTERVAL": "2min", "AV_API_KEY": "k"})
    assert result.returncode == 2 and "AV_INTERVAL must be one of" in result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [(x["event"], x["old"], x["new"]) for x in lines] == [("setting_renamed", "INTERVAL", "AV_INTERVAL")]
