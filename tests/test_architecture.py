"""The architecture's rules are contracts that ``lint-imports`` checks (``pyproject.toml``). Each is
broken here on purpose, in a copy of the code, and must fail; the untouched copy must keep them all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("flink_job", "fetcher_lambda", "alerts", "lambda_kit", "stack", "dashboards", "infra", "bench", "docs_tools", "tests")

# (file, line added to it, the import lint-imports must report, the contract it breaks)
BREAKS = [
    ("flink_job/core/bars.py", "import pyflink.common", "flink_job.core.bars -> pyflink", "pure-core"),
    ("flink_job/core/rollups.py", "import urllib.request", "flink_job.core.rollups -> urllib", "pure-core"),
    # A core module added later is held to the rule by where it is put, with no change to the contract.
    ("flink_job/core/patterns.py", "from flink_job import operators", "flink_job.core.patterns -> flink_job.operators",
     "pure-core"),
    ("flink_job/main.py", "import fetcher_lambda.config", "flink_job.main -> fetcher_lambda.config", "job-alone"),
    ("flink_job/operators.py", "from stack import services", "flink_job.operators -> stack.services", "job-alone"),
    ("dashboards/live/params.py", "from flink_job.core import bars", "dashboards.live.params -> flink_job.core.bars",
     "dashboards-read-outputs"),
    ("alerts/rules.py", "import flink_job.tables", "alerts.rules -> flink_job.tables", "lambdas-without-shell"),
    ("fetcher_lambda/samples.py", "from flink_job import pipeline", "fetcher_lambda.samples -> flink_job.pipeline",
     "lambdas-without-shell"),
]


def copy_of_the_code(target: Path) -> Path:
    """The project's Python files and its pyproject.toml, nothing installed or built."""
    for package in PACKAGES:
        for source in (ROOT / package).rglob("*.py"):
            if "node_modules" in source.parts:
                continue
            destination = target / source.relative_to(ROOT)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
    shutil.copyfile(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} is missing: import-linter comes with requirements.txt (make setup)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the copy alone, from its own directory
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_code_keeps_every_contract(tmp_path):
    result = lint_imports(copy_of_the_code(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_breaking_a_rule_on_purpose_fails_its_contract(tmp_path):
    root = copy_of_the_code(tmp_path)
    for path, line, _, _ in BREAKS:
        with (root / path).open("a") as source:
            source.write(f"\n{line}\n")
    result = lint_imports(root)
    assert result.returncode == 1, result.stdout + result.stderr
    report = result.stdout
    for path, _, reported, _ in BREAKS:
        assert f"-   {reported} (l." in report, f"{path}: {reported} not reported:\n{report}"
    broken = {contract for _, _, _, contract in BREAKS}
    assert f"Contracts: 0 kept, {len(broken)} broken." in report, report
