"""The results as one table (terminal and Markdown), the README sections, and the JSON files."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench import scale
from bench.stats import spread_pct

RESULTS_DIR = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent / "README.md"
MARK_START, MARK_END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"

LABELS = {
    "backtest": "(a) backtest: run_backtest, all outputs + signals",
    "backtest_p2": "(a) at parallelism 2 (one JVM)",
    "sql_sma20": "(b) SQL only: sma_20 OVER window → blackhole",
    "passthrough": "(c) Python keyed pass-through → JSON file",
    "analyze_blackhole": "(a') AnalyzeBars → blackhole sinks",
    "passthrough_blackhole": "(c') pass-through → blackhole",
    "passthrough_state3k": "(c') + a state write of AnalyzeBars's size (~2 kB) per bar",
    "passthrough_wide": "(c') + enriched-shaped output row",
    "analyze_blackhole_process": "(a') in process mode",
    "passthrough_blackhole_process": "(c') in process mode",
    "baseline_backtest": "(a0) the backtest of the --baseline revision",
}
HEADER = ("benchmark", "metric", "median", "spread (min–max)", "target", "status")


def _n(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _spread(stat: dict | None, digits: int = 0) -> str:
    if not stat or stat["n"] < 2:
        return "(1 run)"
    return f"{_n(stat['min'], digits)}–{_n(stat['max'], digits)} (±{spread_pct(stat) / 2:.0f}%)"


def _status(ok: bool | None) -> str:
    return "" if ok is None else ("met" if ok else "MISSED")


def throughput_rows(t: dict) -> list[tuple]:
    rows = []
    for variant, v in t["variants"].items():
        net = v["net_bars_per_s"]
        rows.append(("throughput", f"{LABELS.get(variant, variant)}: net bars/s", _n(net and net["median"]),
                     _spread(net), "", ""))
    for variant, v in t["variants"].items():
        rows.append(("throughput", f"  {variant}: raw bars/s (incl. in-job start-up), cores busy, CPU µs/bar",
                     f"{_n(v['bars_per_s']['median'])} | {v['cores_busy']['median']:.2f} | "
                     f"{v['net_cpu_us_per_bar']['median']:.1f}", "", "", ""))
    for variant, v in t["variants"].items():
        if v.get("operator_us_per_bar"):
            rows.append(("throughput", f"  {variant}: inside AnalyzeBars.process_element, µs/bar (in the job)",
                         _n(v["operator_us_per_bar"]["median"], 1), _spread(v["operator_us_per_bar"], 1), "", ""))
    ratio = t["ratios"]["backtest/passthrough"]
    target = t["target"]["backtest/passthrough"]
    rows.append(("throughput", "(a)/(c) net", _n(ratio, 3), "", f"≥ {target}", _status(ratio and ratio >= target)))
    rows.append(("throughput", "(a)/(b) net", _n(t["ratios"]["backtest/sql_sma20"], 3), "", "", ""))
    rows.append(("throughput", "(a')/(c') net (sinks excluded)",
                 _n(t["ratios"]["analyze_blackhole/passthrough_blackhole"], 3), "", "", ""))
    for name, label in (("baseline_backtest/passthrough", "(a0)/(c) net: the baseline revision"),
                        ("backtest/baseline_backtest", "(a)/(a0) net: this code against the baseline")):
        if t["ratios"].get(name) is not None:
            rows.append(("throughput", label, _n(t["ratios"][name], 3), "", "", ""))
    process = t["ratios"].get("process: analyze_blackhole/passthrough_blackhole")
    if process is not None:
        rows.append(("throughput", "(a')/(c') net in process mode", _n(process, 3), "", "", ""))
    return rows


def profile_rows(p: dict) -> list[tuple]:
    return [
        ("profile", f"AnalyzeBars.process_element, pure Python, {p['bars']:,} bars: µs/bar",
         _n(p["process_element_us_per_bar"], 1), "", "", ""),
        ("profile", "PassThrough.process_element, pure Python: µs/bar", _n(p["passthrough_process_element_us_per_bar"], 2),
         "", "", ""),
        ("profile", "keyed state written per bar: bytes", _n(p["state_bytes_per_update"]), "", "", ""),
    ]


def latency_rows(lat: dict) -> list[tuple]:
    rows = []
    for r in lat["runs"]:
        s = r["setting"]
        rows.append(("latency", f"PutRecords → searchable, flush {s['flush_interval']}, refresh {s['refresh_interval']}: "
                                f"p50 / p95 / p99 s ({r['bars_seen']:,} bars, {r['bars_missing']} missing)",
                     f"{_n(r.get('p50_s'), 3)} / {_n(r.get('p95_s'), 3)} / {_n(r.get('p99_s'), 3)}",
                     f"max {_n(r.get('max_s'), 3)}", "p50 ≤ 1, p99 ≤ 2", _status(r.get("meets_target"))))
        cpu = r["cpu_s"]
        rows.append(("latency", "  CPU s during the run: job / OpenSearch / Kinesis; index refreshes",
                     f"{cpu['job']:.1f} / {cpu['opensearch']:.1f} / {cpu['kinesis']:.1f}; "
                     f"{r['index_counters']['refreshes']}", f"over {r['elapsed_s']:.0f} s", "", ""))
    return rows


def fetcher_rows(f: dict) -> list[tuple]:
    waits = f["cold_waits_s"]
    # Symbols are fetched concurrently: the waits overlap, and only what is left is the fetcher's own.
    own = max(0.0, f["cold_invocation_s"]["median"] - sum(w["median"] for w in waits.values()))
    symbols = f["options"]["symbols"]
    return [
        ("fetcher", f"cold invocation, {symbols} symbols, {f['bars_sent']:,} bars sent: s", _n(f["cold_invocation_s"]["median"], 2),
         _spread(f["cold_invocation_s"], 2), f"< {f['timeout_s']:.0f} (timeout)",
         _status(f["cold_invocation_s"]["max"] < f["timeout_s"] and f["symbols_skipped"] == 0
                 and f["symbols_failed"] == 0)),
        ("fetcher", "  waiting on Kinesis / Alpha Vantage / DynamoDB (summed over threads); rest: s",
         f"{waits['kinesis']['median']:.2f} / {waits['alphavantage']['median']:.2f} / "
         f"{waits['dynamodb']['median']:.2f}; {own:.2f}", "", "", ""),
        ("fetcher", "warm invocation (same container; what the cold one left, else nothing): s",
         _n(f["warm_invocation_s"]["median"], 2),
         _spread(f["warm_invocation_s"], 2), "", ""),
        ("fetcher", "API calls / PutRecords calls (cold); warm", f"{f['api_calls']} / {f['put_records_calls']}; "
                    f"{f['warm_api_calls']} / {f['warm_put_records_calls']}", "", "", ""),
        ("fetcher", "peak RSS of the invocation process: MiB", _n(f["max_rss_mib"]["median"], 0),
         _spread(f["max_rss_mib"], 0), "< 256 (function memory)", _status(f["max_rss_mib"]["max"] < 256)),
        ("fetcher", "cold import of fetcher_lambda.handler (boto3 for comparison): s",
         f"{f['import_handler_s']['median']:.3f} ({f['import_boto3_s']['median']:.3f})",
         _spread(f["import_handler_s"], 3), "", ""),
        *(fetcher_scale_rows(f["scale"]) if f.get("scale") else []),
    ]


def fetcher_scale_rows(s: dict) -> list[tuple]:
    o = s["options"]
    return [
        ("fetcher", f"symbols per invocation ({o['latency_s'] * 1000:.0f} ms per call, {o['calls_per_minute']:,} "
                    f"calls/min, {s['timeout_s']:.0f} s, one new bar each)", _n(s["symbols_ok"]["median"]),
         _spread(s["symbols_ok"]), f"≥ {s['target_symbols']} within {s['timeout_s']:.0f} s, none over budget",
         _status(s["meets_target"])),
        ("fetcher", "  calls in any 60 s at the API (budget); in any 1 s; in flight at most",
         f"{s['max_calls_in_any_60s']:,} ({o['calls_per_minute']:,}); {s['max_calls_in_any_1s']}; "
         f"{s['max_in_flight']['median']:.0f}", "", "", _status(not s["over_budget"])),
        ("fetcher", "  invocation s; CPU s; PutRecords calls; peak RSS MiB",
         f"{s['invocation_s']['median']:.1f}; {s['cpu_s']['median']:.1f}; "
         f"{s['put_records_calls']['median']:.0f}; {s['max_rss_mib']['median']:.0f}", _spread(s["invocation_s"], 1),
         "", ""),
    ]


def scaleout_rows(s: dict) -> list[tuple]:
    p1, p2 = s["settings"]["p1"], s["settings"]["p2"]
    target = s["target"]["ratio_p2_over_p1"]
    return [
        ("scaleout", "backtest on a standalone cluster, parallelism 1 on 1 TaskManager: net bars/s",
         _n(p1["net_bars_per_s"]["median"]), _spread(p1["net_bars_per_s"]), "", ""),
        ("scaleout", "  parallelism 2 on 2 TaskManagers: net bars/s",
         _n(p2["net_bars_per_s"]["median"]), _spread(p2["net_bars_per_s"]), "", ""),
        ("scaleout", "  ratio p2 / p1", _n(s["ratio_p2_over_p1"], 2), "", f"≥ {target}",
         _status(s["ratio_p2_over_p1"] >= target)),
    ]


def table_rows(results: dict) -> list[tuple]:
    rows = []
    for key, build in (("throughput", throughput_rows), ("profile", profile_rows), ("latency", latency_rows),
                       ("fetcher", fetcher_rows), ("scaleout", scaleout_rows)):
        if results.get(key):
            rows += build(results[key])
    return rows


def text_table(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(HEADER), line(tuple("-" * w for w in widths)), *map(line, rows)])


def markdown_table(rows: list[tuple]) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def machine_line(m: dict) -> str:
    return (f"{m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, {m['os']} (kernel {m['kernel']}), "
            f"Python {m['python']}, {m['java']}, apache-flink {m['apache_flink']}; load average at start "
            f"{' / '.join(map(str, m['load_average_at_start']))}, at end {' / '.join(map(str, m['load_average_at_end']))}")


def profile_markdown(p: dict) -> list[str]:
    lines = ["", f"Per-bar Python time outside Flink ({p['bars']:,} bars, µs/bar):", "",
             "| stage | µs/bar |", "|---|---:|"]
    lines += [f"| {stage.strip()} | {us:.1f} |" for stage, us in p["stages_us_per_bar"].items()]
    lines += [f"| **process_element, whole** | **{p['process_element_us_per_bar']:.1f}** |"]
    return lines


def markdown(results: dict) -> str:
    rows = table_rows(results)
    parts = ["## Performance", "",
             f"Measured {results['machine']['date']} by `python -m bench {results['what']}` on: "
             f"{machine_line(results['machine'])}. The machine is shared, so medians of repetitions are shown "
             "with their spread.", "", markdown_table(rows)]
    if results.get("profile"):
        parts += profile_markdown(results["profile"])
    if results.get("errors"):
        parts += ["", "Failed parts: " + "; ".join(f"{k}: {v}" for k, v in results["errors"].items())]
    if results.get("scale"):
        parts += ["", "## Scale", "", *scale.arithmetic(results["scale"])]
    return "\n".join(parts) + "\n"


def write(results: dict, name: str, latest: bool = True) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results = {**results, "table": [dict(zip(HEADER, r)) for r in table_rows(results)]}
    text = json.dumps(results, indent=1, default=str)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(text)
    if latest:  # a re-rendered older run is not the latest measurement
        (RESULTS_DIR / "latest.json").write_text(text)
    (RESULTS_DIR / f"{name}.md").write_text(markdown(results))
    return path


def update_readme(results: dict) -> None:
    """Replace the generated block of ``bench/README.md`` with these results."""
    text = README.read_text()
    block = f"{MARK_START}\n{markdown(results)}{MARK_END}"
    pattern = re.compile(re.escape(MARK_START) + ".*?" + re.escape(MARK_END), re.S)
    README.write_text(pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text}\n{block}\n")
