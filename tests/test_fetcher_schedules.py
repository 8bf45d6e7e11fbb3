"""The fetcher's part of infra/cloudformation.yaml: one schedule per symbol group, each passing its
group, and together covering every symbol once (cfn-lint and checkov run in tests/test_infra.py)."""

from __future__ import annotations

import json

import pytest

from fetcher_lambda.config import Settings
from fetcher_lambda.groups import Group
from tests.cfn_template import load_template, resources_of


@pytest.fixture(scope="module")
def template() -> dict:
    pytest.importorskip("yaml", reason="PyYAML comes with cfn-lint: pip install cfn-lint")
    return load_template()


def holds(condition, template: dict, parameters: dict[str, str]) -> bool:
    """Evaluate a condition of the template for the given parameter values."""
    if isinstance(condition, str):
        return holds(template["Conditions"][condition], template, parameters)
    (function, args), = condition.items()
    if function in ("Condition", "Fn::Condition"):  # the loader spells the short form !Condition so
        return holds(args, template, parameters)
    if function == "Fn::Not":
        return not holds(args[0], template, parameters)
    if function == "Fn::And":
        return all(holds(arg, template, parameters) for arg in args)
    if function == "Fn::Or":
        return any(holds(arg, template, parameters) for arg in args)
    if function == "Fn::Equals":
        values = [parameters[a["Ref"]] if isinstance(a, dict) else str(a) for a in args]
        return values[0] == values[1]
    raise AssertionError(f"condition function {function} not evaluated here")


def deployed(template: dict, kind: str, parameters: dict[str, str]) -> dict[str, dict]:
    return {name: r for name, r in resources_of(template, kind).items()
            if "Condition" not in r or holds(r["Condition"], template, parameters)}


def sub(value, parameters: dict[str, str]) -> str:
    text = value["Fn::Sub"]
    for name, parameter in parameters.items():
        text = text.replace("${" + name + "}", parameter)
    return text


def test_group_parameter_gives_one_schedule_per_group_covering_every_symbol(template):
    function = template["Resources"]["FetcherFunction"]["Properties"]
    allowed = template["Parameters"]["FetcherGroups"]["AllowedValues"]
    assert allowed == list(range(1, len(allowed) + 1)) and len(allowed) > 1
    symbols = tuple(f"S{i:03d}" for i in range(10))
    for count in allowed:
        parameters = {"FetcherGroups": str(count), "NamePrefix": "dev-"}
        rules = deployed(template, "AWS::Events::Rule", parameters)
        ours = {name: rule["Properties"] for name, rule in rules.items()
                if any(t["Arn"] == {"Fn::GetAtt": ["FetcherFunction", "Arn"]} for t in rule["Properties"]["Targets"])}
        groups = []
        for rule in ours.values():
            assert rule["ScheduleExpression"] == "rate(1 minute)" and rule["State"] == "ENABLED"
            (target,) = rule["Targets"]
            groups.append(Group.from_event(json.loads(sub(target["Input"], parameters))))
        assert sorted(groups, key=lambda g: g.number) == [Group(n, count) for n in range(1, count + 1)], \
            f"{count} groups: {groups}"
        assert len({sub(rule["Name"], parameters) for rule in ours.values()}) == count, "names must differ"
        assert sum((g.select(symbols) for g in sorted(groups, key=lambda g: g.number)), ()) == symbols
        permissions = deployed(template, "AWS::Lambda::Permission", parameters)
        allowed_sources = {json.dumps(p["Properties"]["SourceArn"]) for p in permissions.values()
                           if p["Properties"]["FunctionName"] == {"Ref": "FetcherFunction"}}
        assert allowed_sources == {json.dumps({"Fn::GetAtt": [name, "Arn"]}) for name in ours}, \
            "every schedule, and only those, may invoke the fetcher"
    # Every group's invocation may run at the same time (nothing reserved by default), and all share
    # the key's budget.
    assert "FetcherGroups" not in json.dumps(function.get("ReservedConcurrentExecutions"))
    env = function["Environment"]["Variables"]
    assert env["AV_CALLS_PER_MINUTE"] == {"Ref": "AlphaVantageCallsPerMinute"}
    budget = template["Parameters"]["AlphaVantageCallsPerMinute"]
    assert str(budget["Default"]) == f"{Settings().calls_per_minute:g}" == "5"
    assert Settings.from_env({"AV_CALLS_PER_MINUTE": str(budget["MaxValue"])}).calls_per_minute == 1200
