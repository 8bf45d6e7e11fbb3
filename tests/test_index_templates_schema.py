"""The index templates against what the job writes: every field the job's OpenSearch sinks declare
is mapped with its intended type, and every mapped field is one the job writes.

The fields come from the very DDL ``main.declare_tables`` executes (recorded, not re-typed here).
"""

from __future__ import annotations

import json
import re

import pytest

from flink_job import main
from flink_job.config import load_config
from flink_job.core.patterns import PATTERN_NAMES
from flink_job.schema import BOOLEAN, DOUBLE, LONG, PATTERNS_FIELD, SIGNALS_SQL_TYPE, STRING
from stack.services import ROOT

TEMPLATES = ROOT / "flink_job" / "index_templates"
# SQL type -> mapping type; strings are keywords unless named here.
SQL_TO_MAPPING = {DOUBLE: "double", LONG: "long", STRING: "keyword", BOOLEAN: "boolean"}
STRING_AS = {"ts": "date", "received_at": "date", "window_start": "date", "window_end": "date",
             ("stock-dlq", "raw"): "text", ("stock-dlq", "detail"): "text"}
_COLUMN = re.compile(r"^\s*`(\w+)` (.+?),?$")


class RecordingTableEnvironment:
    """Keeps the statements ``declare_tables`` executes."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def execute_sql(self, statement: str) -> None:
        self.statements.append(statement)


def opensearch_sinks() -> dict[str, list[tuple[str, str]]]:
    """index family -> (column, SQL type) of every OpenSearch sink the job declares."""
    t_env = RecordingTableEnvironment()
    main.declare_tables(t_env, load_config(ROOT / "stack" / "application_properties.json"))
    sinks = {}
    for ddl in t_env.statements:
        if "'connector' = 'opensearch-2'" not in ddl:
            continue
        # The family: the index option names the record's index as '<family>-{index_period}'.
        index = re.search(r"'index' = '([^']+)-\{index_period\}'", ddl).group(1)
        body = ddl[ddl.index("(") + 1:ddl.index(") WITH")]
        sinks[index] = [m.groups() for line in body.splitlines()
                        if (m := _COLUMN.match(line)) and not line.strip().startswith("PRIMARY KEY")]
    return sinks


def intended(index: str, name: str, sql_type: str) -> str:
    if sql_type == STRING:
        return STRING_AS.get((index, name), STRING_AS.get(name, "keyword"))
    return SQL_TO_MAPPING[sql_type]


def mapped(properties: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for name, spec in properties.items():
        out[prefix + name] = spec.get("type", "object")
        out.update(mapped(spec.get("properties", {}), f"{prefix}{name}."))
    return out


SINKS = opensearch_sinks()


def test_the_job_writes_every_index_that_has_a_template():
    assert sorted(SINKS) == sorted(p.stem for p in TEMPLATES.glob("*.json"))


@pytest.mark.parametrize("index", sorted(SINKS))
def test_template_maps_exactly_the_written_fields_with_their_types(index):
    template = json.loads((TEMPLATES / f"{index}.json").read_text())
    mappings = template["template"]["mappings"]
    assert mappings["dynamic"] is False, "unmapped fields would be kept but not searchable"
    expected = {}
    for name, sql_type in SINKS[index]:
        if sql_type == SIGNALS_SQL_TYPE:
            expected[name] = "object"
            for item in re.findall(r"`(\w+)` (\w+)", sql_type):
                expected[f"{name}.{item[0]}"] = intended(index, item[0], item[1])
        elif sql_type == PATTERNS_FIELD[1]:  # a map: one small integer per TA-Lib pattern function
            expected[name] = "object"
            expected.update({f"{name}.{pattern}": "short" for pattern in PATTERN_NAMES})
        else:
            expected[name] = intended(index, name, sql_type)
    actual = mapped(mappings["properties"])
    assert sorted(set(expected) - set(actual)) == [], "written but not mapped"
    assert sorted(set(actual) - set(expected)) == [], "mapped but never written"
    assert {k: actual[k] for k in expected} == expected
