"""The job's local properties: ``stack/application_properties.json`` with this run's ports filled in.

The file has the shape Managed Flink writes to ``/etc/flink/application_properties.json``; its local
endpoints name the port variables (``${KINESIS_PORT}``, ``${OPENSEARCH_PORT}``), so ports are chosen
in one place (``services.Ports``) and reach the job through the file written here.

    python -m stack.properties [PATH]   # writes PATH (default <run dir>/application_properties.json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from string import Template

from stack.services import ROOT, Ports, StackError, exit_code, run_dir

TEMPLATE = ROOT / "stack" / "application_properties.json"


def local_property_groups(ports: Ports | None = None) -> list[dict]:
    """The property groups with the endpoints of ``ports`` (default: from the environment)."""
    ports = ports or Ports.from_env()
    try:
        text = Template(TEMPLATE.read_text()).substitute(ports.as_env())
    except (KeyError, ValueError) as err:
        raise StackError(f"{TEMPLATE}: unknown or malformed placeholder {err}; "
                         f"known: {', '.join(ports.as_env())}") from None
    return json.loads(text)


def write_local_properties(path: Path | None = None, ports: Ports | None = None) -> Path:
    path = path or run_dir() / "application_properties.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(local_property_groups(ports), indent=2) + "\n")
    return path


def main(argv: list[str]) -> int:
    return exit_code(lambda: print(write_local_properties(Path(argv[0]) if argv else None)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
