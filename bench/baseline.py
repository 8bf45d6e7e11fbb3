"""An earlier revision of the job, to measure in the same throughput run as the current one.

``python -m bench throughput --baseline REV`` adds the variant ``baseline_backtest``: the backtest of
revision ``REV`` (any git revision of this repository), run exactly as ``backtest`` is, in the same
repetition-major loop, so that both share the machine's drift and the same pass-through to be compared
with. The revision's files are extracted once (``git archive``) into the benchmark's cache and its own
connector jar is built there with Maven; its Python code runs from that tree, on this environment.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

from bench.bardata import CACHE_DIR
from stack.services import ROOT

VARIANT = "baseline_backtest"
RUNS_AS = "backtest"  # the variant of the baseline's own bench.jobrunner


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve(rev: str) -> str:
    """The commit ``rev`` names; ValueError saying what to do when it names none."""
    done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"--baseline {rev!r} is no commit of this repository: give a hash, tag or branch "
                         "(`git log --oneline` lists them)")
    return done.stdout.strip()


def prepare(rev: str) -> Path:
    """The tree of revision ``rev``, extracted and with its connector jar built (once per commit)."""
    commit = resolve(rev)
    tree = CACHE_DIR / f"baseline-{commit[:12]}"
    jar = tree / "flink_job" / "target" / "pyflink-dependencies.jar"
    if not (tree / "bench" / "jobrunner.py").is_file():
        _log(f"baseline: extracting {commit[:12]} into {tree}")
        archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        tree.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
    if not jar.is_file():
        _log(f"baseline: building {commit[:12]}'s connector jar (Maven, about a minute)")
        done = subprocess.run(["mvn", "--batch-mode", "--quiet", "--no-transfer-progress", "package"],
                              cwd=tree / "flink_job", capture_output=True, text=True)
        if done.returncode != 0 or not jar.is_file():
            raise RuntimeError(f"baseline: Maven could not build {jar}; its output:\n{done.stdout[-3000:]}"
                               f"{done.stderr[-2000:]}")
    return tree
