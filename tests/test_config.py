"""The job's configuration: every property group typed at start, every error naming group and key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flink_job.config import ConfigError, describe, load_config, parse_config, read_property_groups
from flink_job.core.indicators import AnalyticsSettings
from stack.services import ROOT

LOCAL = ROOT / "stack" / "application_properties.json"


def groups(**changes: dict[str, str] | None) -> dict[str, dict[str, str]]:
    """The local groups with some replaced (a dict) or removed (None)."""
    base = read_property_groups(LOCAL)
    for name, props in changes.items():
        if props is None:
            base.pop(name, None)
        else:
            base[name] = props
    return base


def with_keys(group: str, **keys: str) -> dict[str, dict[str, str]]:
    base = read_property_groups(LOCAL)
    props = dict(base.get(group, {}))
    for key, value in keys.items():
        props[key.replace("__", ".").replace("_dash_", "-")] = value
    base[group] = props
    return base


def test_the_local_file_parses_into_typed_settings():
    config = load_config(LOCAL)
    assert config.source.init_position == "TRIM_HORIZON"
    assert config.opensearch.flush_max_actions == 1000
    assert config.analytics == AnalyticsSettings()
    assert (config.runtime.execution_mode, config.runtime.summary_interval_ms) == ("thread", 60_000)


def test_analytics_and_runtime_values_are_typed():
    config = parse_config(groups(
        Analytics={"rsi_period": " 7 ", "volume_spike_z": "2.5", "sma_mid_period": "10"},
        Runtime={"python.execution-mode": "Process", "log.summary.interval": "2s"}))
    assert (config.analytics.rsi_period, config.analytics.volume_spike_z, config.analytics.sma_mid_period) == (7, 2.5, 10)
    assert (config.runtime.execution_mode, config.runtime.summary_interval_ms) == ("process", 2000)


@pytest.mark.parametrize("properties, message", [
    (groups(Analytics={"rsi_period": "x"}), "Analytics.rsi_period must be an integer >= 2, got 'x'"),
    (groups(Analytics={"rsi_period": "1"}), "Analytics.rsi_period must be an integer >= 2, got '1'"),
    (groups(Analytics={"sma_mid_period": "20.5"}), "Analytics.sma_mid_period must be an integer >= 2, got '20.5'"),
    (groups(Analytics={"volume_spike_z": "high"}), "Analytics.volume_spike_z must be a finite number, got 'high'"),
    (groups(Analytics={"bb_stddev": "nan"}), "Analytics.bb_stddev must be a finite number, got 'nan'"),
    (groups(Analytics={"rsi_periods": "14"}), "Analytics has unknown keys: rsi_periods"),
    (groups(Analytics={"ema_fast_period": "30"}), "Analytics: ema_fast_period must be below ema_slow_period"),
    (groups(Analytics={"rsi_lower": "80"}), "Analytics: need 0 <= rsi_lower < rsi_upper <= 100"),
    (groups(Analytics={"bb_stddev": "0"}), "Analytics: bb_stddev, volume_spike_z and price_anomaly_z must be positive"),
    (groups(Analytics={"trend_flat_band": "-1"}), "Analytics: trend_flat_band and cross_tolerance must be >= 0"),
    (groups(Runtime={"python.execution-mode": "loop"}), "Runtime.python.execution-mode must be thread or process, got 'loop'"),
    (groups(Runtime={"log.summary.interval": "soon"}), "Runtime.log.summary.interval must be a positive duration"),
    (groups(Runtime={"log.summary.interval": "0s"}), "Runtime.log.summary.interval must be a positive duration"),
    (groups(Runtime={"parallelism": "2"}), "Runtime has unknown keys: parallelism"),
    (groups(InputStream0=None), "missing property group 'InputStream0'"),
    (with_keys("InputStream0", stream__name=" "), "InputStream0.stream.name is required"),
    (with_keys("OutputStream0", aws__region=""), "OutputStream0.aws.region is required"),
    (with_keys("InputStream0", source__init__position="EARLIEST"),
     "InputStream0.source.init.position must be LATEST or TRIM_HORIZON, got 'EARLIEST'"),
    (groups(OpenSearch0={}), "OpenSearch0.hosts is required"),
    (with_keys("OpenSearch0", bulk__flush__interval="fast"), "OpenSearch0.bulk.flush.interval must be a positive duration"),
    (with_keys("OpenSearch0", bulk__flush__max_dash_actions="0"), "OpenSearch0.bulk.flush.max-actions must be an integer >= 1, got '0'"),
    (with_keys("OpenSearch0", bulk__flush__max_dash_actions="many"), "OpenSearch0.bulk.flush.max-actions must be an integer >= 1"),
])
def test_each_error_names_its_group_and_key(properties, message):
    with pytest.raises(ConfigError) as err:
        parse_config(properties)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("text, message", [
    (None, "properties file not found"),
    ("{not json", "is not valid JSON"),
    ('{"PropertyGroupId": "x"}', "expected a list of PropertyGroupId/PropertyMap objects"),
    ('[{"PropertyGroupId": "x"}]', "every entry needs PropertyGroupId and a PropertyMap object"),
])
def test_an_unreadable_file_is_a_config_error(tmp_path, text, message):
    path = tmp_path / "application_properties.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_property_groups(path)


def test_the_described_configuration_holds_no_secret():
    properties = with_keys("OpenSearch0", username="admin", password="pa55-word-1", hosts="https://u:pa55-url@host:443")
    properties["InputStream0"]["aws.credentials.basic.secretkey"] = "s3cret-key-2"
    properties["InputStream0"]["aws.credentials.session.token"] = "t0ken-3"
    text = json.dumps(describe(parse_config(properties)))
    for secret in ("pa55-word-1", "pa55-url", "s3cret-key-2", "t0ken-3"):
        assert secret not in text
    assert '"username": "admin"' in text and '"rsi_period": 14' in text and "host:443" in text


def test_the_job_exits_with_one_json_line_naming_the_key(tmp_path):
    bad = [{"PropertyGroupId": g, "PropertyMap": m} for g, m in groups(Analytics={"rsi_period": "x"}).items()]
    path = tmp_path / "application_properties.json"
    path.write_text(json.dumps(bad))
    result = subprocess.run([sys.executable, "-m", "flink_job.main", "--properties", str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines] == ["config_error"], result.stderr
    assert lines[0]["error"] == "ConfigError: Analytics.rsi_period must be an integer >= 2, got 'x'"
    assert "Traceback" not in result.stderr
