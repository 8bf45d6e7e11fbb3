"""A stand-in for the AWS CLI, for running ``infra/deploy.sh`` without an account.

Run as ``python tests/fake_aws.py SERVICE COMMAND [OPTIONS...]`` through an ``aws`` wrapper first on
PATH (``install``). Each call is appended to ``$FAKE_AWS_CALLS`` as a JSON list of its arguments.
The answer to ``SERVICE COMMAND`` is the canned JSON under that key in ``$FAKE_AWS_ANSWERS`` (``{}``
when none), with ``--query`` applied by jmespath and ``--output text`` formatted as the CLI does
for the shapes the script reads: scalars as they are, ``None`` for null, lists joined by tabs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import jmespath


def install(directory: Path, calls: Path, answers: dict[str, Any]) -> dict[str, str]:
    """Write an ``aws`` executable into ``directory``; returns the environment that puts it first
    on PATH and points it at ``calls`` and at a file holding ``answers``."""
    directory.mkdir(parents=True, exist_ok=True)
    answers_file = directory / "answers.json"
    answers_file.write_text(json.dumps(answers))
    wrapper = directory / "aws"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
    wrapper.chmod(0o755)
    return {
        "PATH": f"{directory}{os.pathsep}{os.environ['PATH']}",
        "FAKE_AWS_CALLS": str(calls),
        "FAKE_AWS_ANSWERS": str(answers_file),
    }


def recorded(calls: Path) -> list[list[str]]:
    """The argument lists of every call so far, in order."""
    if not calls.exists():
        return []
    return [json.loads(line) for line in calls.read_text().splitlines()]


def option(args: list[str], name: str) -> str | None:
    """The value after ``name`` in one call's arguments, or None."""
    return args[args.index(name) + 1] if name in args else None


def _as_text(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, list):
        return "\t".join(_as_text(v) for v in value)
    if isinstance(value, dict):
        return "\t".join(_as_text(v) for v in value.values())
    return str(value)


def main(args: list[str]) -> int:
    with open(os.environ["FAKE_AWS_CALLS"], "a") as log:
        log.write(json.dumps(args) + "\n")
    answers = json.loads(Path(os.environ["FAKE_AWS_ANSWERS"]).read_text())
    answer = answers.get(" ".join(args[:2]), {})
    query = option(args, "--query")
    if query:
        answer = jmespath.search(query, answer)
    print(_as_text(answer) if option(args, "--output") == "text" else json.dumps(answer, indent=4))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
