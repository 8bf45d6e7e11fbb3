"""Scale-out across TaskManagers: the backtest at parallelism 2 on two TaskManagers against parallelism 1
on one, on standalone clusters (``stack.cluster``), in the same run.

Thread mode runs each TaskManager's Python inside its JVM, one interpreter per JVM, so subtasks in one
TaskManager share one interpreter (the mini-cluster's parallelism 2 was slower than 1); across
TaskManagers they do not. Each setting gets a fresh cluster with as many TaskManagers (one slot each)
as its parallelism, and runs the packaged application's backtest, submitted with ``flink run`` the way
the streaming job is. As in ``throughput``, a tiny input's run is the fixed cost subtracted:

    net bars/s = (bars - tiny bars) / (job duration - tiny job duration)
"""

from __future__ import annotations

import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bench.bardata import CACHE_DIR, bars_file
from bench.stats import summary
from infra import package
from stack.cluster import FlinkCluster
from stack.services import free_port

# Run by `flink run -py` from the unpacked zip: the backtest's own entry point, on the cluster.
ENTRY = """import sys
from flink_job.backtest import main
sys.exit(main(sys.argv[1:]))
"""
SETTINGS = (1, 2)  # parallelism = TaskManagers


@dataclass(frozen=True)
class Options:
    bars: int = 1_000_000
    symbols: int = 500
    tiny_bars: int = 2_000
    reps: int = 2
    seed: int = 1


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def unpacked_app(target: Path) -> Path:
    """The application as ``make package`` builds it, unpacked, plus the backtest entry script."""
    archive = package.write_zip(target / package.FLINK_ZIP, package.flink_entries())
    app = target / "app"
    with zipfile.ZipFile(archive) as z:
        z.extractall(app)
    (app / "backtest_main.py").write_text(ENTRY)
    return app


def job_seconds(cluster: FlinkCluster, app: Path, parallelism: int, input_path: Path, work: Path) -> float:
    """Run the backtest to its end on the cluster; Flink's own duration of the job, in seconds."""
    options = {**cluster_run_options(), "python": "backtest_main.py"}
    job = cluster.submit(app, options, parallelism=parallelism, detached=False, timeout_s=3600,
                         args=("--input", str(input_path), "--output", str(work / "enriched.jsonl"),
                               "--parallelism", str(parallelism), "--cluster"),
                         log=work / f"flink-run-p{parallelism}.log")
    info = cluster.job(job)
    if info["state"] != "FINISHED":
        raise RuntimeError(f"backtest job {job} ended {info['state']}: {cluster.failures(job)[:2]}")
    return info["duration"] / 1000


def cluster_run_options() -> dict[str, str]:
    """The template's run options (the tests pin them to the zip layout)."""
    return {"jarfile": "lib/pyflink-dependencies.jar", "pyFiles": package.FLINK_PYTHON_DIR}


def run(opts: Options) -> dict:
    big_input = bars_file(opts.bars, opts.symbols, opts.seed)
    tiny_input = bars_file(opts.tiny_bars, opts.symbols, opts.seed)
    results: dict[int, list[dict]] = {p: [] for p in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        app = unpacked_app(Path(tmp))
        for rep in range(opts.reps):
            for parallelism in SETTINGS:
                cluster = FlinkCluster(rest_port=free_port(), rpc_port=free_port(),
                                       home=CACHE_DIR / f"cluster-p{parallelism}")
                cluster.start(taskmanagers=parallelism)
                try:
                    work = Path(tempfile.mkdtemp(dir=tmp))
                    tiny = job_seconds(cluster, app, parallelism, tiny_input, work)
                    started = time.monotonic()
                    big = job_seconds(cluster, app, parallelism, big_input, work)
                    wall = time.monotonic() - started
                finally:
                    cluster.stop()
                net = (opts.bars - opts.tiny_bars) / (big - tiny)
                results[parallelism].append({"job_s": big, "tiny_job_s": tiny, "client_wall_s": wall,
                                             "bars_per_s": opts.bars / big, "net_bars_per_s": net})
                log(f"scaleout: rep {rep + 1}/{opts.reps} parallelism {parallelism} on {parallelism} "
                    f"TaskManager(s): job {big:6.1f} s (tiny {tiny:4.1f} s), net {net:9,.0f} bars/s")
    settings = {p: {"net_bars_per_s": summary([r["net_bars_per_s"] for r in reps]),
                    "bars_per_s": summary([r["bars_per_s"] for r in reps]), "reps": reps}
                for p, reps in results.items()}
    ratio = settings[2]["net_bars_per_s"]["median"] / settings[1]["net_bars_per_s"]["median"]
    return {"options": dict(opts.__dict__), "settings": {f"p{p}": v for p, v in settings.items()},
            "ratio_p2_over_p1": ratio, "target": {"ratio_p2_over_p1": 1.6}}
