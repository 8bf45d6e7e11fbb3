"""The fetcher's part of infra/cloudformation.yaml: one EventBridge Scheduler schedule per symbol
group, in New York time, each passing its group, together covering every symbol once, with a role
that may invoke the fetcher only (cfn-lint and checkov run in tests/test_infra.py)."""

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
    assert not resources_of(template, "AWS::Events::Rule") and not resources_of(template, "AWS::Lambda::Permission")
    for count in allowed:
        parameters = {"FetcherGroups": str(count), "NamePrefix": "dev-"}
        schedules = deployed(template, "AWS::Scheduler::Schedule", parameters)
        ours = {name: s["Properties"] for name, s in schedules.items()
                if s["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": ["FetcherFunction", "Arn"]}}
        assert ours == {name: s["Properties"] for name, s in schedules.items()}
        groups = []
        for schedule in ours.values():
            assert schedule["State"] == "ENABLED" and schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
            assert schedule["ScheduleExpressionTimezone"] == "America/New_York"
            assert schedule["ScheduleExpression"] == {"Fn::If": [
                "IsExtendedHours", "cron(* 4-20 ? * MON-FRI *)", "cron(* 9-16 ? * MON-FRI *)"]}
            target = schedule["Target"]
            assert target["RoleArn"] == {"Fn::GetAtt": ["FetcherSchedulerRole", "Arn"]}
            # A retried minute would only spend Alpha Vantage calls; the next one catches up.
            assert target["RetryPolicy"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
            groups.append(Group.from_event(json.loads(sub(target["Input"], parameters))))
        assert sorted(groups, key=lambda g: g.number) == [Group(n, count) for n in range(1, count + 1)], \
            f"{count} groups: {groups}"
        assert len({sub(s["Name"], parameters) for s in ours.values()}) == count, "names must differ"
        assert sum((g.select(symbols) for g in sorted(groups, key=lambda g: g.number)), ()) == symbols
    # The schedules' role may invoke the fetcher and nothing else, and only Scheduler of this account
    # may take it.
    role = template["Resources"]["FetcherSchedulerRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    assert [(s["Effect"], s["Action"], s["Resource"]) for s in statements] == \
        [("Allow", "lambda:InvokeFunction", {"Fn::GetAtt": ["FetcherFunction", "Arn"]})]
    assert "ManagedPolicyArns" not in role
    # Every group's invocation may run at the same time (nothing reserved by default), and all share
    # the key's budget.
    assert "FetcherGroups" not in json.dumps(function.get("ReservedConcurrentExecutions"))
    env = function["Environment"]["Variables"]
    assert env["AV_CALLS_PER_MINUTE"] == {"Ref": "AlphaVantageCallsPerMinute"}
    budget = template["Parameters"]["AlphaVantageCallsPerMinute"]
    assert str(budget["Default"]) == f"{Settings().calls_per_minute:g}" == "5"
    assert Settings.from_env({"AV_CALLS_PER_MINUTE": str(budget["MaxValue"])}).calls_per_minute == 1200
