"""A stand-in for the AWS CLI, for running ``infra/deploy.sh`` without an account.

Run as ``python tests/fake_aws.py SERVICE COMMAND [OPTIONS...]`` through an ``aws`` wrapper first on
PATH (``install``). Each call is appended to ``$FAKE_AWS_CALLS`` as a JSON list of its arguments.
The answer to ``SERVICE COMMAND`` is the canned JSON under that key in ``$FAKE_AWS_ANSWERS`` (``{}``
when none), with ``--query`` applied by jmespath and ``--output text`` formatted as the CLI does
for the shapes the script reads: scalars as they are, ``None`` for null, a list's items joined by
tabs, a list of rows one row a line. An answer made by ``error(...)`` fails the call as the CLI
does (the message on stderr, exit status 254); one made by ``in_turn(...)`` gives its answers one
call after the other (the last one for every call after).
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


def error(message: str) -> dict[str, Any]:
    """An answer that fails the call with ``message``, e.g. the CLI's text for a missing stack."""
    return {"__error__": message}


def in_turn(*answers: Any) -> dict[str, Any]:
    """Answers for successive calls of one command (the last repeats)."""
    return {"__in_turn__": list(answers)}


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
    if isinstance(value, list) and value and all(isinstance(v, (list, dict)) for v in value):
        return "\n".join(_as_text(v) for v in value)
    if isinstance(value, list):
        return "\t".join(_as_text(v) for v in value)
    if isinstance(value, dict):
        return "\t".join(_as_text(v) for v in value.values())
    return str(value)


def main(args: list[str]) -> int:
    calls = Path(os.environ["FAKE_AWS_CALLS"])
    earlier = sum(1 for c in recorded(calls) if c[:2] == args[:2])
    with open(calls, "a") as log:
        log.write(json.dumps(args) + "\n")
    answers = json.loads(Path(os.environ["FAKE_AWS_ANSWERS"]).read_text())
    answer = answers.get(" ".join(args[:2]), {})
    if isinstance(answer, dict) and "__in_turn__" in answer:
        answer = answer["__in_turn__"][min(earlier, len(answer["__in_turn__"]) - 1)]
    if isinstance(answer, dict) and "__error__" in answer:
        print(answer["__error__"], file=sys.stderr)
        return 254
    query = option(args, "--query")
    if query:
        answer = jmespath.search(query, answer)
    print(_as_text(answer) if option(args, "--output") == "text" else json.dumps(answer, indent=4))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
