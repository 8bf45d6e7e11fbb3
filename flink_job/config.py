"""The job's configuration: Managed Flink's property groups, parsed once into frozen dataclasses.

Managed Flink writes ``/etc/flink/application_properties.json``, a list of
``{"PropertyGroupId": ..., "PropertyMap": {...}}``. Local mode reads a file of the same shape
(``stack/application_properties.json``), so one code path serves both.

Groups:
- ``InputStream0``: ``stream.name``, ``aws.region``, optional ``aws.endpoint``,
  ``source.init.position`` (``LATEST`` | ``TRIM_HORIZON``, default ``LATEST``), optional ``scan.*``
  connector options (e.g. ``scan.shard.getrecords.intervalmillis``).
- ``OutputStream0``: ``stream.name``, ``aws.region``, optional ``aws.endpoint``.
- ``OpenSearch0``: ``hosts``, optional ``username`` and ``password``, optional bulk-flush tuning.
- ``Analytics`` (optional): indicator periods and signal thresholds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

MANAGED_PROPERTIES_PATH = Path("/etc/flink/application_properties.json")
# Test-only: where a local standalone cluster's job reads the file Managed Flink would write.
PROPERTIES_PATH_ENV = "FLINK_APPLICATION_PROPERTIES"


class ConfigError(ValueError):
    """The properties file is missing, malformed, or lacks a required group or key."""


@dataclass(frozen=True)
class StreamConfig:
    stream_name: str
    region: str
    endpoint: str | None = None
    init_position: str = "LATEST"
    # Every ``aws.*`` and ``scan.*`` key of the group (region, endpoint, credentials provider, poll
    # interval...), handed to the connector as is, so local mode and Managed Flink differ only in
    # the properties file.
    connector_options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OpenSearchConfig:
    hosts: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    flush_interval: str = "200ms"
    flush_max_actions: int = 1000


@dataclass(frozen=True)
class JobConfig:
    source: StreamConfig
    sink: StreamConfig
    opensearch: OpenSearchConfig
    analytics: Mapping[str, str] = field(default_factory=dict)


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


def _required(groups: Mapping[str, Mapping[str, str]], group: str, key: str) -> str:
    if group not in groups:
        raise ConfigError(f"missing property group {group!r}")
    value = groups[group].get(key, "").strip()
    if not value:
        raise ConfigError(f"property group {group!r} lacks required key {key!r}")
    return value


def _stream(groups: Mapping[str, Mapping[str, str]], group: str) -> StreamConfig:
    props = groups.get(group, {})
    position = props.get("source.init.position", "LATEST").upper()
    if position not in ("LATEST", "TRIM_HORIZON"):
        raise ConfigError(f"{group}: source.init.position must be LATEST or TRIM_HORIZON, not {position!r}")
    return StreamConfig(
        stream_name=_required(groups, group, "stream.name"),
        region=_required(groups, group, "aws.region"),
        endpoint=props.get("aws.endpoint") or None,
        init_position=position,
        connector_options={k: v for k, v in props.items() if k.startswith(("aws.", "scan."))},
    )


def parse_config(groups: Mapping[str, Mapping[str, str]]) -> JobConfig:
    os_props = groups.get("OpenSearch0", {})
    return JobConfig(
        source=_stream(groups, "InputStream0"),
        sink=_stream(groups, "OutputStream0"),
        opensearch=OpenSearchConfig(
            hosts=_required(groups, "OpenSearch0", "hosts"),
            username=os_props.get("username") or None,
            password=os_props.get("password") or None,
            flush_interval=os_props.get("bulk.flush.interval", "200ms"),
            flush_max_actions=int(os_props.get("bulk.flush.max-actions", "1000")),
        ),
        analytics=dict(groups.get("Analytics", {})),
    )


def managed_properties_path() -> Path:
    """Managed Flink's properties file, or the one ``FLINK_APPLICATION_PROPERTIES`` names (tests only)."""
    return Path(os.environ.get(PROPERTIES_PATH_ENV) or MANAGED_PROPERTIES_PATH)


def load_config(path: Path = MANAGED_PROPERTIES_PATH) -> JobConfig:
    return parse_config(read_property_groups(path))
