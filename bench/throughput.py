"""Throughput of the backtest pipeline against a SQL-only and a Python pass-through pipeline.

Each run is its own process and JVM (``jobrunner``). Per repetition and pipeline, a tiny input runs
first, then the full one; the tiny run's execution time is the fixed cost inside ``run_s`` (task
deployment, Python start-up in the task, job finish), so

    net bars/s = (bars - tiny bars) / (run_s - tiny run_s)

is the steady-state rate, the figure that scales. Raw ``bars / run_s`` is reported too. Medians over
repetitions, with min-max spread, because the machine is shared.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import baseline
from bench.bardata import CACHE_DIR, bars_file
from bench.stats import summary
from stack.services import ROOT

# (a), (b), (c) of the comparison; the blackhole variants split sink cost from operator cost.
DEFAULT_VARIANTS = ("backtest", "sql_sma20", "passthrough", "analyze_blackhole", "passthrough_blackhole",
                    "passthrough_state3k", "passthrough_wide", "analyze_blackhole_process",
                    "passthrough_blackhole_process")
PROCESS_SUFFIX = "_process"  # process-mode variants run on ``Options.process_bars``: ~3x slower per bar
LOG_DIR = CACHE_DIR / "logs"


@dataclass(frozen=True)
class Options:
    bars: int = 1_000_000
    symbols: int = 500
    tiny_bars: int = 2_000
    process_bars: int = 200_000
    reps: int = 3
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    signals: bool = True
    seed: int = 1
    baseline: str | None = None  # a git revision whose backtest runs too (``baseline``)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_job(variant: str, input_path: Path, signals: bool, timeout_s: float, cwd: Path = ROOT) -> dict:
    """One ``jobrunner`` process (of the code in ``cwd``); its timings plus the whole process's wall
    time."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"bench-{variant}-") as work:
        result = Path(work) / "result.json"
        log_path = LOG_DIR / f"{variant}.log"
        cmd = [sys.executable, "-m", "bench.jobrunner", variant, "--input", str(input_path),
               "--out-dir", str(Path(work) / "out"), "--result", str(result)] + (["--signals"] if signals else [])
        started = time.monotonic()
        with log_path.open("wb") as out:
            code = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s).returncode
        if code != 0:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{variant} on {input_path.name} exited with {code}; log {log_path}:\n{tail}")
        return {**json.loads(result.read_text()), "process_s": time.monotonic() - started}


def _rep(big: dict, tiny: dict, bars: int, tiny_bars: int) -> dict:
    extra_s = big["run_s"] - tiny["run_s"]
    extra_cpu = big["cpu_run_s"] - tiny["cpu_run_s"]
    return {
        "big": big, "tiny": tiny,
        "bars_per_s": bars / big["run_s"],
        "net_bars_per_s": (bars - tiny_bars) / extra_s if extra_s > 0 else None,
        "net_cpu_us_per_bar": 1e6 * extra_cpu / (bars - tiny_bars),
        "cores_busy": big["cpu_run_s"] / big["run_s"],
        "operator_us_per_bar": big.get("operator_time", {}).get("us_per_call"),
    }


def _variant_summary(reps: list[dict]) -> dict:
    def of(key, source=None):
        values = [(r[source][key] if source else r[key]) for r in reps]
        values = [v for v in values if v is not None]
        return summary(values) if values else None

    return {
        "bars_per_s": of("bars_per_s"), "net_bars_per_s": of("net_bars_per_s"),
        "net_cpu_us_per_bar": of("net_cpu_us_per_bar"), "cores_busy": of("cores_busy"),
        "operator_us_per_bar": of("operator_us_per_bar"),
        "run_s": of("run_s", "big"), "tiny_run_s": of("run_s", "tiny"),
        "gateway_s": of("gateway_s", "big"), "setup_s": of("setup_s", "big"), "submit_s": of("submit_s", "big"),
        "post_s": of("post_s", "big"), "process_s": of("process_s", "big"),
        "outputs": reps[-1]["big"]["outputs"], "reps": reps,
    }


def _ratio(variants: dict, top: str, bottom: str, key: str = "net_bars_per_s") -> float | None:
    if top in variants and bottom in variants and variants[top][key] and variants[bottom][key]:
        return variants[top][key]["median"] / variants[bottom][key]["median"]
    return None


def run(opts: Options) -> dict:
    big_input = bars_file(opts.bars, opts.symbols, opts.seed)
    tiny_input = bars_file(opts.tiny_bars, opts.symbols, opts.seed)
    process_bars = min(opts.bars, opts.process_bars)
    process_input = bars_file(process_bars, opts.symbols, opts.seed)
    timeout_s = 600 + opts.bars / 500  # bounded: far above the slowest pipeline's expected time
    variants = opts.variants
    baseline_tree = None
    if opts.baseline:
        baseline_tree = baseline.prepare(opts.baseline)
        variants = (*variants, baseline.VARIANT)
    reps: dict[str, list[dict]] = {v: [] for v in variants}
    for rep in range(opts.reps):
        # Repetition-major order: slow drift of the machine's load spreads over all pipelines.
        for variant in variants:
            bars, path = (process_bars, process_input) if variant.endswith(PROCESS_SUFFIX) else (opts.bars, big_input)
            runs_as, cwd = (baseline.RUNS_AS, baseline_tree) if variant == baseline.VARIANT else (variant, ROOT)
            tiny = run_job(runs_as, tiny_input, opts.signals, timeout_s, cwd)
            big = run_job(runs_as, path, opts.signals, timeout_s, cwd)
            reps[variant].append(_rep(big, tiny, bars, opts.tiny_bars))
            r = reps[variant][-1]
            log(f"throughput: rep {rep + 1}/{opts.reps} {variant:22s} run {big['run_s']:7.1f} s "
                f"(tiny {tiny['run_s']:4.1f} s): {r['bars_per_s']:9,.0f} bars/s, net {r['net_bars_per_s'] or 0:9,.0f}")
    variants = {v: _variant_summary(r) for v, r in reps.items()}
    return {
        "options": {**opts.__dict__, "variants": list(variants), "input": big_input.name,
                    "baseline_commit": baseline.resolve(opts.baseline) if opts.baseline else None,
                    "process_input": process_input.name,
                    "input_bytes": big_input.stat().st_size, "tiny_input": tiny_input.name},
        "variants": variants,
        "ratios": {
            "backtest/passthrough": _ratio(variants, "backtest", "passthrough"),
            "backtest/sql_sma20": _ratio(variants, "backtest", "sql_sma20"),
            "analyze_blackhole/passthrough_blackhole": _ratio(variants, "analyze_blackhole", "passthrough_blackhole"),
            "process: analyze_blackhole/passthrough_blackhole": _ratio(
                variants, "analyze_blackhole_process", "passthrough_blackhole_process"),
            "raw backtest/passthrough": _ratio(variants, "backtest", "passthrough", "bars_per_s"),
            "baseline_backtest/passthrough": _ratio(variants, baseline.VARIANT, "passthrough"),
            "backtest/baseline_backtest": _ratio(variants, "backtest", baseline.VARIANT),
        },
        "target": {"backtest/passthrough": 0.6, "stretch": 0.8},
    }

