"""Read infra/cloudformation.yaml as plain data, for the tests that check what the stack deploys.

Short-form intrinsics (``!Ref``, ``!Sub``, ``!GetAtt A.B``...) become their long form
(``{"Ref": ...}``, ``{"Fn::Sub": ...}``, ``{"Fn::GetAtt": [A, B]}``), so tests compare plain dicts.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "infra" / "cloudformation.yaml"
RUN_OPTIONS_GROUP = "kinesis.analytics.flink.run.options"


def load_template(path: Path = TEMPLATE) -> dict:
    import yaml  # comes with cfn-lint

    class CfnLoader(yaml.SafeLoader):
        pass

    def intrinsic(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix == "Ref":
            return {"Ref": value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{suffix}": value}

    CfnLoader.add_multi_constructor("!", intrinsic)
    return yaml.load(path.read_text(), Loader=CfnLoader)


def resources_of(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def property_groups(template: dict) -> dict[str, dict]:
    """The Flink application's property groups by id."""
    (app,) = resources_of(template, "AWS::KinesisAnalyticsV2::Application").values()
    groups = app["Properties"]["ApplicationConfiguration"]["EnvironmentProperties"]["PropertyGroups"]
    return {g["PropertyGroupId"]: g["PropertyMap"] for g in groups}


def condition_holds(template: dict, condition, parameters: dict[str, str]) -> bool:
    """Evaluate a condition of the template (its name or its body) for the given parameter values
    (a parameter left out takes its default)."""
    if isinstance(condition, str):
        return condition_holds(template, template["Conditions"][condition], parameters)
    (function, args), = condition.items()
    if function in ("Condition", "Fn::Condition"):
        return condition_holds(template, args, parameters)
    if function == "Fn::Not":
        return not condition_holds(template, args[0], parameters)
    if function == "Fn::And":
        return all(condition_holds(template, a, parameters) for a in args)
    if function == "Fn::Or":
        return any(condition_holds(template, a, parameters) for a in args)
    if function == "Fn::Equals":
        return _value(template, args[0], parameters) == _value(template, args[1], parameters)
    raise AssertionError(f"condition function {function} not evaluated here")


def _value(template: dict, value, parameters: dict[str, str]) -> str:
    if isinstance(value, dict) and "Ref" in value:
        name = value["Ref"]
        return parameters.get(name, str(template["Parameters"][name].get("Default", "")))
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, items = value["Fn::Join"]
        items = _value(template, items, parameters).split(",") if isinstance(items, dict) else items
        return separator.join(str(i) for i in items)
    return str(value)


def resolve_if(template: dict, value, parameters: dict[str, str]):
    """``value`` with every ``Fn::If`` decided for the given parameter values."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        condition, when_true, when_false = value["Fn::If"]
        return resolve_if(template, when_true if condition_holds(template, condition, parameters) else when_false,
                          parameters)
    if isinstance(value, dict):
        return {k: resolve_if(template, v, parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_if(template, v, parameters) for v in value]
    return value
