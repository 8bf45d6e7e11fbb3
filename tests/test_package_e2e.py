"""The built artifacts run, from their own unzipped files, against the real local services.

- ``flink-app.zip``: unzipped, its ``main.py`` runs on a local mini-cluster with a properties file
  shaped as Managed Flink writes it (run options included), from the unzipped directory and with
  the repository off the path. Which ``flink_job`` ran is checked where it is decided: the
  driver's import trace (``python -v``) and the ``PYTHONPATH`` the JVM hands its embedded Python.
- ``fetcher-lambda.zip``: unzipped, its handler runs as the Lambda runtime would run it: the zip
  first on the path, then boto3 and its dependencies only (the runtime's), against the fake Alpha
  Vantage API and the local Kinesis and DynamoDB.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from datetime import date
from pathlib import Path
from typing import Iterable

import pytest

from infra import package
from tests import fake_alphavantage as fake
from tests.bar_data import generate_bars
from tests.cfn_template import RUN_OPTIONS_GROUP, load_template, property_groups
from tests.local_aws import DYNAMODB_URL, KINESIS_URL
from tests.pipeline_harness import JobHarness, unique_symbol, wait_for

ROOT = Path(__file__).resolve().parent.parent
BARS = 50
SMA_PERIOD = 20
# What the Lambda runtime provides besides the standard library: boto3 and what it imports. Not
# urllib3: the zip vendors its own (for requests), and the function's directory comes first.
LAMBDA_RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py")
# `python -v` lines naming the file a module was loaded from.
IMPORT_TRACE = re.compile(r"^# (?:code object from '?|\S+ matches )(\S+?)'?$", re.MULTILINE)
JOB_PACKAGE = ROOT / "flink_job"


@pytest.fixture(scope="module")
def dist(packaged_dist) -> Path:
    return packaged_dist


def unzip(archive: Path, target: Path) -> Path:
    with zipfile.ZipFile(archive) as z:
        z.extractall(target)
    return target


def without_repo(env: dict[str, str]) -> dict[str, str]:
    """The environment minus anything that would put the repository on Python's path."""
    return {k: v for k, v in env.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}


def jvm_pythonpath(session: int) -> list[str]:
    """``PYTHONPATH`` of the JVM the job started (its embedded Python's path): the java process
    of the job's session."""
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or os.getsid(int(proc.name)) != session:
                continue
            if b"java" in (proc / "cmdline").read_bytes().split(b"\0")[0]:
                environ = dict(e.split("=", 1) for e in (proc / "environ").read_text().split("\0") if "=" in e)
                return environ.get("PYTHONPATH", "").split(os.pathsep)
        except OSError:
            continue  # a process that ended meanwhile
    raise AssertionError(f"no java process in session {session}")


def assert_not_the_repository(paths: Iterable[str], what: str) -> None:
    """No file of the repository's job package, and not the repository itself (a path entry from
    which ``import flink_job`` would find that package)."""
    bad = sorted({p for p in paths if p and (Path(p).resolve().is_relative_to(JOB_PACKAGE) or Path(p) == ROOT)})
    assert not bad, f"{what} uses the repository's code: {bad}"


def test_packaged_flink_app_runs_end_to_end(dist, tmp_path):
    app = unzip(dist / package.FLINK_ZIP, tmp_path / "app")
    run_options = property_groups(load_template())[RUN_OPTIONS_GROUP]
    entry, jar = app / run_options["python"], app / run_options["jarfile"]
    assert entry.is_file() and jar.is_file(), f"the run options point outside the zip: {run_options}"

    harness = JobHarness(tmp_path, parallelism=1)
    # Managed Flink's file: every group of the application, the run options among them.
    groups = json.loads(harness.properties.read_text())
    groups.append({"PropertyGroupId": RUN_OPTIONS_GROUP, "PropertyMap": run_options})
    harness.properties.write_text(json.dumps(groups, indent=2))

    symbol = unique_symbol("PKG")
    bars = [b.to_record() for b in generate_bars(11, days=(date(2024, 3, 8),), symbol=symbol)[:BARS]]
    flink_log = tmp_path / "flink-log"
    # -v on the driver only: in the environment (PYTHONVERBOSE) it would also garble the output of
    # the interpreter probe the JVM runs to find libpython.
    harness.start(command=[sys.executable, "-v", str(entry)], cwd=app,
                  env={**without_repo(dict(os.environ)), "FLINK_LOG_DIR": str(flink_log)})
    try:
        harness.put_bars(bars)
        try:
            wait_for(lambda: len(harness.docs_for("stock-indicators", [symbol])) >= BARS, 75,
                     f"{BARS} bars of {symbol} in stock-indicators", harness)
        except AssertionError as err:
            errors = [line for f in flink_log.glob("*.log") for line in f.read_text(errors="replace").splitlines()
                      if " ERROR " in line or "Exception" in line]
            raise AssertionError(f"{err}; Flink's log ({flink_log}): {errors[:10]}") from None
        embedded_path = jvm_pythonpath(harness.proc.pid)
    finally:
        harness.stop()

    docs = sorted(harness.docs_for("stock-indicators", [symbol]), key=lambda d: d["ts"])
    assert [d["ts"] for d in docs] == [b["ts"] for b in bars]
    assert [d["sma_20"] is not None for d in docs] == [i + 1 >= SMA_PERIOD for i in range(BARS)]
    assert docs[SMA_PERIOD - 1]["sma_20"] == pytest.approx(
        sum(b["close"] for b in bars[:SMA_PERIOD]) / SMA_PERIOD, rel=1e-9)

    loaded = IMPORT_TRACE.findall(harness.log.read_text(errors="replace"))
    assert f"{app}/flink_job/operators.py" in loaded, "the driver did not load the job from the zip"
    assert_not_the_repository(loaded, "the driver")
    # The embedded Python finds the job through this path: the zip's directory, not the repository.
    assert str(app) in embedded_path, embedded_path
    assert_not_the_repository(embedded_path, "the job's embedded Python")


@pytest.fixture
def lambda_runtime(tmp_path) -> Path:
    """A directory with boto3 and its dependencies only, as the Lambda runtime provides them."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for name in LAMBDA_RUNTIME_PACKAGES:
        assert (site / name).exists(), f"{name} not in {site}: run `make setup`"
        (runtime / name).symlink_to(site / name)
    return runtime


HANDLER_RUN = """
import json, sys, time
import boto3, requests, urllib3
from fetcher_lambda.handler import lambda_handler

class Context:
    aws_request_id = "package-e2e"
    def __init__(self):
        self.end = time.monotonic() + 30
    def get_remaining_time_in_millis(self):
        return int((self.end - time.monotonic()) * 1000)

summary = lambda_handler({}, Context())
modules = {m.__name__: m.__file__ for m in (sys.modules["fetcher_lambda.handler"], requests, urllib3, boto3)}
print(json.dumps({"summary": summary, "modules": modules, "path": sys.path}))
"""


def test_packaged_lambda_handler_puts_bars_on_the_stream(dist, tmp_path, lambda_runtime, fake_alphavantage,
                                                        kinesis_stream, cursor_table, read_stream):
    function = unzip(dist / package.LAMBDA_ZIP, tmp_path / "function")
    symbol = unique_symbol("LMB")
    rows = fake.minute_rows("2024-03-08 10:00", 12)
    fake_alphavantage.set_series(symbol, rows)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # The function's directory first, as /var/task precedes the runtime's packages in Lambda.
        "PYTHONPATH": os.pathsep.join([str(function), str(lambda_runtime)]),
        "SYMBOLS": symbol, "STREAM_NAME": kinesis_stream, "CURSOR_TABLE": cursor_table,
        "ALPHAVANTAGE_BASE_URL": fake_alphavantage.url, "ALPHAVANTAGE_API_KEY": fake.TEST_API_KEY,
        "KINESIS_ENDPOINT_URL": KINESIS_URL, "DYNAMODB_ENDPOINT_URL": DYNAMODB_URL,
        "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
    }
    # -S: no site-packages, so nothing of the venv but the interpreter and the standard library.
    result = subprocess.run([sys.executable, "-S", "-c", HANDLER_RUN], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(result.stdout.strip().splitlines()[-1])

    modules = {name: Path(file) for name, file in run["modules"].items()}
    assert all(modules[m].is_relative_to(function) for m in ("fetcher_lambda.handler", "requests", "urllib3")), \
        modules
    assert modules["boto3"].is_relative_to(lambda_runtime), modules
    assert not [p for p in run["path"] if "site-packages" in p], run["path"]

    assert run["summary"]["symbols_ok"] == 1 and run["summary"]["bars_sent"] == len(rows), run["summary"]
    records = read_stream(kinesis_stream)
    assert [key for key, _ in records] == [symbol] * len(rows)
    assert [r["ts"] for _, r in records] == [f"2024-03-08T15:{m:02d}:00Z" for m in range(len(rows))]
    assert fake.TEST_API_KEY not in result.stdout + result.stderr
