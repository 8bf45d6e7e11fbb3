"""Put the job's OpenSearch index templates from inside the VPC: the stack's ``IndexTemplates``.

The domain has no public endpoint, so a laptop cannot reach it. This Lambda function runs in the
stack's private subnets and puts ``flink_job/index_templates/*.json`` (shipped in its zip) as a
CloudFormation custom resource, on every create and update of that resource: the zip's S3 key and
the data node count are its properties, so new templates or a resized domain put them again.
Invoked directly (``infra/deploy.sh index-templates``) it puts them and returns what it did.

Settings come from the function's environment: ``OPENSEARCH_ENDPOINT`` (``https://host`` or a
bare host), ``MASTER_SECRET_ARN`` (``{"username", "password"}``; unset: no authentication, as on
the local OpenSearch), ``DATA_NODES``, ``ISM`` (``true``: put the retention policies) and ``RETENTION_DAYS``
(``family=days,...`` overrides of the defaults in ``flink_job/core/index_lifecycle.py``; empty keeps
them). The template files set
``number_of_replicas`` 0, right for one node; with more data nodes each shard gets one replica on
another node.

Each template covers one family of time-partitioned indices (``stock-indicators-*``) and gives
each an alias of the family's name. The loader also moves the documents of an index that predates
the partitioning (a concrete ``stock-indicators``) into the partitioned indices, since the alias
cannot be created while an index holds its name. On Amazon OpenSearch Service it puts one Index
State Management policy per family that deletes its indices after their retention
(``put_retention_policies``; the local OpenSearch has no ISM, and ``python -m stack.retention``
does the same there).

Talks to the domain with opensearch-py, shipped in the zip with its pure-Python dependencies
(``infra/package.py``); boto3, for the master user's secret, is the Lambda runtime's. The zip also
holds the templates and ``flink_job/core/index_lifecycle.py``. The client makes one attempt per call and
``Domain.call`` retries, so that every call ends before CloudFormation must have its answer.
``load_templates``, ``with_replicas`` and ``put_templates`` do the work and are tested against the
local OpenSearch; ``handler`` adds the custom-resource protocol, whose answer goes to a pre-signed S3
URL with the standard library.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

from opensearchpy import ConnectionError as Unreachable
from opensearchpy import OpenSearch, OpenSearchException, TransportError, helpers

from flink_job.core.index_lifecycle import FAMILIES, RetentionError, ism_policy, ism_policy_id, parse_retention

log = logging.getLogger("index_templates_loader")
log.setLevel(logging.INFO)

HERE = Path(__file__).resolve().parent
# In the Lambda zip the templates sit next to this file; in the repository, in the job's package.
TEMPLATE_DIRS = (HERE / "index_templates", HERE.parent / "flink_job" / "index_templates")
# Kept back from the function's remaining time to send CloudFormation its answer: without one,
# the stack waits an hour for the custom resource.
RESPONSE_MARGIN_S = 10.0
ATTEMPT_TIMEOUT_S = 10.0
RETRY_PAUSE_S = 3.0
# Statuses worth another attempt: the domain is still settling, or busy.
TRANSIENT_STATUSES = {408, 429, 500, 502, 503, 504}
MIGRATE_BATCH = 1000
T = TypeVar("T")


class LoadError(RuntimeError):
    """A template was refused or the domain could not be reached; the message says what to check."""


@dataclass(frozen=True)
class Settings:
    endpoint: str
    secret_arn: str | None
    data_nodes: int
    retention_days: Mapping[str, int] = field(default_factory=lambda: parse_retention(""))
    # Whether the domain has Index State Management (Amazon OpenSearch Service does; the local
    # integration-test distribution does not, and gets `python -m stack.retention` instead).
    ism: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        endpoint = env.get("OPENSEARCH_ENDPOINT", "").strip().rstrip("/")
        if not endpoint:
            raise LoadError("OPENSEARCH_ENDPOINT is not set: the function's environment names the domain")
        if "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        try:
            data_nodes = int(env.get("DATA_NODES", "1"))
        except ValueError:
            raise LoadError(f"DATA_NODES must be a whole number, got {env.get('DATA_NODES')!r}") from None
        try:
            retention = parse_retention(env.get("RETENTION_DAYS"))
        except RetentionError as err:
            raise LoadError(f"RETENTION_DAYS: {err}") from None
        return cls(endpoint, env.get("MASTER_SECRET_ARN") or None, data_nodes, retention,
                   env.get("ISM", "").strip().lower() == "true")


# --- the work ------------------------------------------------------------------------------------


def templates_dir() -> Path:
    for directory in TEMPLATE_DIRS:
        if directory.is_dir():
            return directory
    raise LoadError(f"no index_templates/ next to {HERE}: rebuild the zip with `make package`")


def load_templates(directory: Path | None = None) -> dict[str, dict]:
    """Template name (the file's stem) to body."""
    directory = directory or templates_dir()
    templates = {path.stem: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}
    if not templates:
        raise LoadError(f"{directory} holds no *.json templates: rebuild the zip with `make package`")
    return templates


def replicas_for(data_nodes: int) -> int:
    """One replica as soon as there is a second node to hold it; none on a single node (it could
    never be assigned, and every index would stay yellow)."""
    return 1 if data_nodes > 1 else 0


def with_replicas(templates: Mapping[str, dict], replicas: int) -> dict[str, dict]:
    """Copies of the templates with ``number_of_replicas`` set; the originals are left as they are."""
    result = {}
    for name, body in templates.items():
        body = copy.deepcopy(body)
        body.setdefault("template", {}).setdefault("settings", {})["number_of_replicas"] = replicas
        result[name] = body
    return result


# The client makes one attempt per call: ``Domain.call`` owns the retries, so that together they
# end by the deadline (opensearch-py retries without pause or deadline). Its own log line for each
# failed attempt, a traceback in plain text, would repeat the JSON line ``call`` writes.
logging.getLogger("opensearch").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Domain:
    """The OpenSearch client, the endpoint its errors name, and the deadline every call ends by."""

    client: OpenSearch
    endpoint: str
    deadline: float

    @classmethod
    def connect(cls, endpoint: str, auth: tuple[str, str] | None = None, deadline: float | None = None) -> "Domain":
        client = OpenSearch(hosts=[endpoint], http_auth=auth, timeout=ATTEMPT_TIMEOUT_S, max_retries=0)
        return cls(client, endpoint, time.monotonic() + 60 if deadline is None else deadline)

    def remaining(self) -> float:
        """The time an attempt may take: at least a second, so a last try is a real one."""
        return max(self.deadline - time.monotonic(), 1.0)

    def call(self, what: str, api: Callable[..., T], *, missing_ok: bool = False, **kwargs: Any) -> T | None:
        """``api(**kwargs)``, tried again on connection failures and transient statuses until the
        deadline, each attempt bounded by it; with ``missing_ok`` a 404 returns None. Any other
        refusal raises ``LoadError`` at once."""
        while True:
            try:
                return api(**kwargs, request_timeout=min(ATTEMPT_TIMEOUT_S, self.remaining()))
            except Unreachable as err:  # refused, unreachable, timed out, TLS
                status, detail = None, f"{type(err.info).__name__}: {err.info}"
            except TransportError as err:
                if missing_ok and err.status_code == 404:
                    return None
                status, detail = err.status_code, json.dumps(err.info) if isinstance(err.info, dict) else str(err.info)
                if status in (401, 403):
                    raise LoadError(f"{self.endpoint} refused the master user (HTTP {status}) for {what}: check "
                                    "that the secret holds the domain's master user, then deploy again") from None
                if status not in TRANSIENT_STATUSES:
                    raise LoadError(f"{self.endpoint} rejected {what}: HTTP {status} {detail[:300]}") from None
            if self.deadline - time.monotonic() <= RETRY_PAUSE_S:
                raise LoadError(f"could not reach {self.endpoint} for {what} in time "
                                f"({f'HTTP {status}' if status else detail[:300]}): check that the domain is "
                                "active and its security group admits this function on 443")
            log.info(json.dumps({"event": "retry", "what": what, "status": status, "detail": detail[:200]}))
            time.sleep(RETRY_PAUSE_S)


def put_templates(endpoint: str, templates: Mapping[str, dict], auth: tuple[str, str] | None = None,
                  deadline: float | None = None) -> list[str]:
    """PUT each composable template (PUT replaces: idempotent), after moving an unpartitioned index
    of its family into the partitioned ones (``migrate_unpartitioned``); then give the family's
    existing indices the template's alias and fields: a template applies to new indices only, and a
    field added to it would stay unindexed in the current ones (``dynamic: false``). Mappings only
    ever gain fields; a changed field type is refused (HTTP 400) and needs a new index."""
    domain = Domain.connect(endpoint, auth, deadline)
    indices = domain.client.indices
    for name, body in templates.items():
        template = body.get("template", {})
        for alias in template.get("aliases", {}):
            migrate_unpartitioned(domain, name, body, alias)
        domain.call(f"index template {name}", indices.put_index_template, name=name, body=body)
        fields = template.get("mappings", {}).get("properties")
        for pattern in body.get("index_patterns", []):
            if not concrete_indices(domain, pattern):
                continue
            for alias in template.get("aliases", {}):
                domain.call(f"alias {alias} of {pattern}", indices.put_alias, index=pattern, name=alias)
            if fields:
                domain.call(f"the mapping of indices {pattern}", indices.put_mapping, index=pattern,
                            body={"properties": fields})
    return list(templates)


def concrete_indices(domain: Domain, name: str) -> list[str]:
    """The concrete indices an index name, alias or pattern stands for (none if it does not exist)."""
    found = domain.call(f"indices {name}", domain.client.indices.get_settings, missing_ok=True, index=name,
                        name="index.uuid")
    return sorted(found or {})


def migrate_unpartitioned(domain: Domain, name: str, body: Mapping, alias: str) -> bool:
    """If a concrete index holds the family's name (the layout before time partitioning), copy its
    documents, ids unchanged, into the family's partitioned indices (each document into the index of
    its own time, as the job writes them), then delete it. Safe to repeat after a failure: the old
    index goes only after every document was copied, and copying again overwrites the same ids.
    (A scroll and bulk requests rather than ``_reindex``, which the local OpenSearch lacks and which
    would need a script to route each document by its time.) Returns whether there was one."""
    if alias not in concrete_indices(domain, alias):
        return False  # none, or already an alias
    # The family whose name ends the template's: its time field and period (names may be prefixed).
    fam = next(f for f in sorted(FAMILIES, key=lambda f: -len(f.name)) if name.endswith(f.name))
    # The new indices need the template's mappings, but its alias would collide with the old index.
    without_alias = copy.deepcopy(dict(body))
    without_alias.get("template", {}).pop("aliases", None)
    client = domain.client
    domain.call(f"index template {name}", client.indices.put_index_template, name=name, body=without_alias)

    def copies() -> Iterator[dict]:
        for hit in helpers.scan(client, index=alias, size=MIGRATE_BATCH, scroll="5m",
                                request_timeout=min(ATTEMPT_TIMEOUT_S, domain.remaining())):
            if time.monotonic() > domain.deadline:
                raise LoadError(f"copying {alias} ran out of time; the old index is kept, deploy again")
            yield {"_index": f"{alias}-{fam.period_of(hit['_source'][fam.time_field])}", "_id": hit["_id"],
                   "_source": hit["_source"]}

    try:
        # Any refused document fails the copy (the old index then stays); a busy domain's 429s wait.
        copied, _ = helpers.bulk(client, copies(), chunk_size=MIGRATE_BATCH, max_retries=2, initial_backoff=1,
                                 request_timeout=domain.remaining())
    except helpers.BulkIndexError as err:
        raise LoadError(f"copying {alias}: a document was refused; the old index is kept: "
                        f"{json.dumps(err.errors[0])[:500]}") from None
    except OpenSearchException as err:  # the scroll or a bulk request failed
        raise LoadError(f"copying {alias} failed ({str(err)[:300]}); the old index is kept, deploy again") from None
    domain.call(f"the copies of {alias}", client.indices.refresh, index=f"{alias}-*")
    domain.call(f"the unpartitioned index {alias}", client.indices.delete, index=alias)
    log.info(json.dumps({"event": "index_migrated", "index": alias, "into": f"{alias}-*", "documents": copied}))
    return True


def put_retention_policies(endpoint: str, retention_days: Mapping[str, int], auth: tuple[str, str] | None = None,
                           deadline: float | None = None) -> dict[str, int]:
    """One ISM policy per family (Amazon OpenSearch Service), attached to the family's new indices by
    its ``ism_template`` and here to its existing ones; indices that already follow an older version
    of the policy are moved to this one. Returns the retention days put."""
    domain = Domain.connect(endpoint, auth, deadline)
    ism = domain.client.plugins.index_management
    for fam in FAMILIES:
        policy_id = ism_policy_id(fam)
        current = domain.call(f"ISM policy of {fam.name}", ism.get_policy, missing_ok=True, policy=policy_id)
        # Replacing a policy needs the version it replaces.
        version = {"if_seq_no": current["_seq_no"], "if_primary_term": current["_primary_term"]} if current else {}
        domain.call(f"ISM policy of {fam.name}", ism.put_policy, policy=policy_id,
                    body=ism_policy(fam, retention_days[fam.name]), params=version)
        policy = {"policy_id": policy_id}
        domain.call(f"ISM policy of {fam.pattern}", ism.add_policy, index=fam.pattern, body=policy)
        domain.call(f"ISM policy version of {fam.pattern}", ism.change_policy, index=fam.pattern, body=policy)
    return {fam.name: retention_days[fam.name] for fam in FAMILIES}


def read_master_user(secret_arn: str) -> tuple[str, str]:
    """The master user (name, password) kept in Secrets Manager: HTTP basic authentication."""
    import boto3  # the Lambda runtime has it; imported here so the pure part needs nothing

    value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    try:
        user = json.loads(value)
        return user["username"], user["password"]
    except (ValueError, KeyError, TypeError):
        raise LoadError(f"secret {secret_arn} is not JSON with username and password") from None


def apply(settings: Settings, deadline: float) -> dict:
    replicas = replicas_for(settings.data_nodes)
    auth = read_master_user(settings.secret_arn) if settings.secret_arn else None
    names = put_templates(settings.endpoint, with_replicas(load_templates(), replicas), auth, deadline)
    result = {"Templates": ",".join(names), "Replicas": str(replicas)}
    if settings.ism:
        kept = put_retention_policies(settings.endpoint, settings.retention_days, auth, deadline)
        result["RetentionDays"] = ",".join(f"{name}={days}" for name, days in kept.items())
    return result


# --- the Lambda entry point ----------------------------------------------------------------------


def handler(event: Mapping[str, Any], context: Any) -> dict:
    """Custom resource (an event with ``RequestType``) or direct invocation (any other event)."""
    remaining_s = context.get_remaining_time_in_millis() / 1000
    deadline = time.monotonic() + remaining_s - RESPONSE_MARGIN_S
    if "RequestType" not in event:
        result = apply(Settings.from_env(), deadline)
        log.info(json.dumps({"event": "index_templates", **result}))
        return result

    status, reason, data = "SUCCESS", "", {}
    physical_id = event.get("PhysicalResourceId") or "index-templates"
    try:
        # Deleting leaves the templates: they go with the domain, which the same stack deletes.
        if event["RequestType"] in ("Create", "Update"):
            data = apply(Settings.from_env(), deadline)
    except Exception as err:  # every failure must reach CloudFormation, or the stack hangs
        status = "FAILED"
        reason = f"{err} (log stream {getattr(context, 'log_stream_name', '?')})"
        log.exception("index templates not put")
    log.info(json.dumps({"event": "custom_resource", "request": event["RequestType"], "status": status,
                         "reason": reason, **data}))
    send_response(event, response_body(event, status, reason, data, physical_id))
    return data


def response_body(event: Mapping[str, Any], status: str, reason: str, data: Mapping[str, str],
                  physical_id: str) -> dict:
    return {
        "Status": status,
        # CloudFormation accepts at most 4 KB for the whole answer.
        "Reason": reason[:1000],
        "PhysicalResourceId": physical_id,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": dict(data),
    }


def send_response(event: Mapping[str, Any], body: dict, attempts: int = 3) -> None:
    """PUT the answer to the pre-signed S3 URL (reached through the VPC's S3 gateway endpoint)."""
    payload = json.dumps(body).encode()
    request = urllib.request.Request(event["ResponseURL"], data=payload, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(payload))})
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(request, timeout=ATTEMPT_TIMEOUT_S) as response:
                response.read()
                return
        except OSError as err:
            log.warning(json.dumps({"event": "response_not_sent", "attempt": attempt, "error": str(err)}))
            if attempt == attempts:
                raise
            time.sleep(1)
