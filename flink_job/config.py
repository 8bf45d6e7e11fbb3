"""The job's configuration: Managed Flink's property groups, parsed once into frozen dataclasses.

Managed Flink writes ``/etc/flink/application_properties.json``, a list of
``{"PropertyGroupId": ..., "PropertyMap": {...}}``. Local mode reads a file of the same shape
(``stack/application_properties.json``), so one code path serves both.

Groups:
- ``InputStream0``: ``stream.name``, ``aws.region``, optional ``aws.endpoint``,
  ``source.init.position`` (``LATEST`` | ``TRIM_HORIZON``, default ``LATEST``), optional ``scan.*``
  connector options (e.g. ``scan.shard.getrecords.intervalmillis``).
- ``OutputStream0``: ``stream.name``, ``aws.region``, optional ``aws.endpoint``.
- ``OpenSearch0``: ``hosts``, optional ``username`` and ``password``, optional
  ``bulk.flush.interval`` (e.g. ``200ms``) and ``bulk.flush.max-actions`` (a positive integer).
- ``Analytics`` (optional): indicator periods and signal thresholds, keys named as the fields of
  ``AnalyticsSettings``.
- ``Runtime`` (optional): ``python.execution-mode``, ``thread`` (default) or ``process``;
  ``log.summary.interval``, how often each analysis subtask logs its summary line (default ``60s``).

Every problem is a ``ConfigError`` that names the group and the key, raised before any Flink
environment exists, e.g. ``Analytics.rsi_period must be an integer >= 2, got 'x'``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from flink_job.core.indicators import PERIOD_FIELDS, AnalyticsSettings
from flink_job.core.patterns import parse_signal_patterns

MANAGED_PROPERTIES_PATH = Path("/etc/flink/application_properties.json")
# Test-only: where a local standalone cluster's job reads the file Managed Flink would write.
PROPERTIES_PATH_ENV = "FLINK_APPLICATION_PROPERTIES"
EXECUTION_MODES = ("thread", "process")
INIT_POSITIONS = ("LATEST", "TRIM_HORIZON")
# Flink durations as the connector takes them: a number and a unit.
_DURATION = re.compile(r"^(\d+)\s*(ms|s|min)$")
_UNIT_MS = {"ms": 1, "s": 1000, "min": 60_000}
# Keys whose values never appear in the start log line.
_SECRET_KEY = re.compile(r"(?i)(password|secret|token)")

_URL_CREDENTIALS = re.compile(r"//[^/@\s]+@")

Groups = Mapping[str, Mapping[str, str]]


class ConfigError(ValueError):
    """The properties file is missing or malformed, or a group's key is missing or invalid."""


@dataclass(frozen=True)
class StreamConfig:
    stream_name: str
    region: str
    endpoint: str | None = None
    init_position: str = "LATEST"
    # Every ``aws.*`` and ``scan.*`` key of the group (region, endpoint, credentials provider, poll
    # interval...), handed to the connector as is, so local mode and Managed Flink differ only in
    # the properties file.
    connector_options: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class OpenSearchConfig:
    hosts: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    flush_interval: str = "200ms"
    flush_max_actions: int = 1000


@dataclass(frozen=True)
class RuntimeConfig:
    execution_mode: str = "thread"
    summary_interval_ms: int = 60_000


@dataclass(frozen=True)
class JobConfig:
    source: StreamConfig
    sink: StreamConfig
    opensearch: OpenSearchConfig
    analytics: AnalyticsSettings = field(default_factory=AnalyticsSettings)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


def read_property_groups(path: Path) -> dict[str, dict[str, str]]:
    """The file's groups by id. Raises ``ConfigError`` saying what is wrong and where."""
    try:
        groups = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"properties file not found: {path}") from None
    except ValueError as err:
        raise ConfigError(f"properties file {path} is not valid JSON: {err}") from None
    if not isinstance(groups, list):
        raise ConfigError(f"{path}: expected a list of PropertyGroupId/PropertyMap objects")
    try:
        return {g["PropertyGroupId"]: {k: str(v) for k, v in g["PropertyMap"].items()} for g in groups}
    except (KeyError, TypeError, AttributeError):
        raise ConfigError(f"{path}: every entry needs PropertyGroupId and a PropertyMap object") from None


def _invalid(group: str, key: str, requirement: str, value: str) -> ConfigError:
    return ConfigError(f"{group}.{key} must be {requirement}, got {value!r}")


def _required(groups: Groups, group: str, key: str) -> str:
    if group not in groups:
        raise ConfigError(f"missing property group {group!r} (it needs at least {key!r})")
    value = groups[group].get(key, "").strip()
    if not value:
        raise ConfigError(f"{group}.{key} is required")
    return value


def _choice(props: Mapping[str, str], group: str, key: str, choices: tuple[str, ...], default: str,
            normalise=str.strip) -> str:
    value = normalise(props.get(key, default))
    if value not in choices:
        raise _invalid(group, key, " or ".join(choices), props.get(key, ""))
    return value


def _unknown_keys(props: Mapping[str, str], group: str, known: set[str]) -> None:
    unknown = sorted(set(props) - known)
    if unknown:
        raise ConfigError(f"{group} has unknown keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _stream(groups: Groups, group: str) -> StreamConfig:
    props = groups.get(group, {})
    return StreamConfig(
        stream_name=_required(groups, group, "stream.name"),
        region=_required(groups, group, "aws.region"),
        endpoint=props.get("aws.endpoint") or None,
        init_position=_choice(props, group, "source.init.position", INIT_POSITIONS, "LATEST",
                              lambda v: v.strip().upper()),
        connector_options={k: v for k, v in props.items() if k.startswith(("aws.", "scan."))},
    )


def _opensearch(groups: Groups) -> OpenSearchConfig:
    group = "OpenSearch0"
    props = groups.get(group, {})
    _duration_ms(props, group, "bulk.flush.interval", "200ms")
    max_actions = props.get("bulk.flush.max-actions", "1000").strip()
    if not max_actions.isdigit() or int(max_actions) < 1:
        raise _invalid(group, "bulk.flush.max-actions", "an integer >= 1", max_actions)
    return OpenSearchConfig(
        hosts=_required(groups, "OpenSearch0", "hosts"),
        username=props.get("username") or None,
        password=props.get("password") or None,
        flush_interval=props.get("bulk.flush.interval", "200ms").strip(),
        flush_max_actions=int(max_actions),
    )


def _analytics_value(name: str, text: str) -> Any:
    group = "Analytics"
    if name == "signal_patterns":
        try:
            return parse_signal_patterns(text)
        except ValueError as err:
            raise ConfigError(f"{group}.{name}: {err}") from None
    if name in PERIOD_FIELDS:
        try:
            value = int(text.strip())
        except ValueError:
            raise _invalid(group, name, "an integer >= 2", text) from None
        if value < 2:
            raise _invalid(group, name, "an integer >= 2", text)
        return value
    try:
        value = float(text.strip())
    except ValueError:
        raise _invalid(group, name, "a finite number", text) from None
    if not math.isfinite(value):
        raise _invalid(group, name, "a finite number", text)
    return value


def parse_analytics(groups: Groups) -> AnalyticsSettings:
    """The ``Analytics`` group as settings; absent keys keep their defaults."""
    props = groups.get("Analytics", {})
    _unknown_keys(props, "Analytics", {f.name for f in fields(AnalyticsSettings)})
    values = {name: _analytics_value(name, text) for name, text in props.items()}
    try:
        return AnalyticsSettings(**values)
    except ValueError as err:  # a rule between keys, e.g. ema_fast_period < ema_slow_period
        raise ConfigError(f"Analytics: {err}") from None


def _duration_ms(props: Mapping[str, str], group: str, key: str, default: str) -> int:
    text = props.get(key, default).strip()
    match = _DURATION.match(text)
    if not match or int(match.group(1)) < 1:
        raise _invalid(group, key, "a positive duration such as 200ms, 1s or 1min", text)
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def _runtime(groups: Groups) -> RuntimeConfig:
    props = groups.get("Runtime", {})
    _unknown_keys(props, "Runtime", {"python.execution-mode", "log.summary.interval"})
    return RuntimeConfig(
        execution_mode=_choice(props, "Runtime", "python.execution-mode", EXECUTION_MODES, "thread",
                               lambda v: v.strip().lower()),
        summary_interval_ms=_duration_ms(props, "Runtime", "log.summary.interval", "60s"),
    )


def parse_config(groups: Groups) -> JobConfig:
    """Every group, typed and checked. Raises ``ConfigError`` naming the group and key."""
    return JobConfig(
        source=_stream(groups, "InputStream0"),
        sink=_stream(groups, "OutputStream0"),
        opensearch=_opensearch(groups),
        analytics=parse_analytics(groups),
        runtime=_runtime(groups),
    )


def managed_properties_path() -> Path:
    """Managed Flink's properties file, or the one ``FLINK_APPLICATION_PROPERTIES`` names (tests only)."""
    return Path(os.environ.get(PROPERTIES_PATH_ENV) or MANAGED_PROPERTIES_PATH)


def load_config(path: Path = MANAGED_PROPERTIES_PATH) -> JobConfig:
    return parse_config(read_property_groups(path))


def _plain(value: Any) -> Any:
    return sorted(value) if isinstance(value, frozenset) else value


def describe(config: JobConfig) -> dict[str, Any]:
    """The configuration as plain values for the start log line: secrets are masked."""

    def stream(s: StreamConfig) -> dict[str, Any]:
        return {"stream.name": s.stream_name, "aws.region": s.region, "source.init.position": s.init_position,
                **{k: ("***" if _SECRET_KEY.search(k) else v) for k, v in sorted(s.connector_options.items())}}

    os_config = config.opensearch
    return {
        "InputStream0": stream(config.source),
        "OutputStream0": {k: v for k, v in stream(config.sink).items() if k != "source.init.position"},
        "OpenSearch0": {"hosts": _URL_CREDENTIALS.sub("//***@", os_config.hosts), "username": os_config.username,
                        "password": "***" if os_config.password else None,
                        "bulk.flush.interval": os_config.flush_interval,
                        "bulk.flush.max-actions": os_config.flush_max_actions},
        "Analytics": {f.name: _plain(getattr(config.analytics, f.name)) for f in fields(AnalyticsSettings)},
        "Runtime": {"python.execution-mode": config.runtime.execution_mode,
                    "log.summary.interval": f"{config.runtime.summary_interval_ms}ms"},
    }
