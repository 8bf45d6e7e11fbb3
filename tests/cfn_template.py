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
