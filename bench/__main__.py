"""``python -m bench [throughput|profile|latency|fetcher|all] [options]``: run, print a table, write JSON.

Results go to ``bench/results/<name>.json`` (and ``latest.json``), with the README sections as
``<name>.md``; ``--update-readme`` also puts them into ``bench/README.md``. A quick run:
``python -m bench all --bars 100000 --reps 1 --latency-rounds 5 --fetcher-reps 1``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from bench import fetcher, latency, machine, pipelines, profile_path, report, scale, scaleout, throughput

WHAT = ("throughput", "profile", "latency", "fetcher", "scaleout", "all")
# In this order: the profile reads the throughput input, and the scale note needs both.
PARTS = ("throughput", "profile", "latency", "fetcher", "scaleout")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", default="all", choices=WHAT,
                   help="throughput includes the profile; all runs everything (default)")
    p.add_argument("--name", help="results file name (default: UTC time and WHAT)")
    p.add_argument("--update-readme", action="store_true", help="write the results into bench/README.md")
    p.add_argument("--from-results", type=Path, metavar="JSON",
                   help="measure nothing: show (and with --update-readme, publish) a saved results file")
    t = p.add_argument_group("throughput")
    t.add_argument("--bars", type=int, default=throughput.Options.bars)
    t.add_argument("--symbols", type=int, default=throughput.Options.symbols)
    t.add_argument("--tiny-bars", type=int, default=throughput.Options.tiny_bars,
                   help="the input whose run time is the fixed cost subtracted for net bars/s")
    t.add_argument("--process-bars", type=int, default=throughput.Options.process_bars,
                   help="the input of the process-mode variants (slower per bar)")
    t.add_argument("--reps", type=int, default=throughput.Options.reps)
    t.add_argument("--variants", default=",".join(throughput.DEFAULT_VARIANTS),
                   help=f"comma list of {', '.join(pipelines.VARIANTS)}")
    t.add_argument("--no-signals", action="store_true", help="backtest without the signals output")
    t.add_argument("--baseline", metavar="REV",
                   help="also run the backtest of this git revision in the same loop (variant baseline_backtest), "
                        "to compare with the current code on the same machine and day")
    t.add_argument("--profile-bars", type=int, default=200_000)
    lat = p.add_argument_group("latency")
    lat.add_argument("--latency-symbols", type=int, default=latency.Options.symbols)
    lat.add_argument("--latency-rounds", type=int, default=latency.Options.rounds,
                     help="measured rounds of one bar per symbol, one round per second")
    lat.add_argument("--latency-warmup-rounds", type=int, default=latency.Options.warmup_rounds)
    lat.add_argument("--latency-parallelism", type=int, default=latency.Options.parallelism)
    lat.add_argument("--latency-setting", action="append", metavar="FLUSH/REFRESH",
                     help="bulk flush and refresh interval to run, e.g. 100ms/500ms (repeatable; default 200ms/1s)")
    lat.add_argument("--sweep", action="store_true", help="also run the candidate settings when the target is met")
    so = p.add_argument_group("scaleout")
    so.add_argument("--scaleout-bars", type=int, default=scaleout.Options.bars)
    so.add_argument("--scaleout-reps", type=int, default=scaleout.Options.reps)
    f = p.add_argument_group("fetcher")
    f.add_argument("--fetcher-symbols", type=int, default=fetcher.Options.symbols)
    f.add_argument("--fetcher-reps", type=int, default=fetcher.Options.reps)
    f.add_argument("--import-reps", type=int, default=fetcher.Options.import_reps)
    args = p.parse_args(argv)
    unknown = set(args.variants.split(",")) - set(pipelines.VARIANTS)
    if unknown:
        p.error(f"unknown variants: {', '.join(sorted(unknown))}")
    return args


def _selected(what: str) -> set[str]:
    return set(PARTS) if what == "all" else ({"throughput", "profile"} if what == "throughput" else {what})


def _scale(results: dict) -> dict | None:
    t, p = results.get("throughput"), results.get("profile")
    if not (t and p and "backtest" in t["variants"] and t["variants"]["backtest"]["net_bars_per_s"]):
        return None
    backtest = t["variants"]["backtest"]
    per_cpu_second = 1e6 / backtest["net_cpu_us_per_bar"]["median"]
    per_core = min(backtest["net_bars_per_s"]["median"], per_cpu_second)
    return scale.plans(per_core, p["bar_bytes"], p["enriched_bytes"], p["state_bytes_per_update"])


def _part(name: str, args: argparse.Namespace) -> dict:
    if name == "throughput":
        return throughput.run(throughput.Options(
            bars=args.bars, symbols=args.symbols, tiny_bars=args.tiny_bars, process_bars=args.process_bars,
            reps=args.reps,
            variants=tuple(args.variants.split(",")), signals=not args.no_signals, baseline=args.baseline))
    if name == "profile":
        return profile_path.run(args.bars, args.symbols, min(args.profile_bars, args.bars))
    if name == "latency":
        settings = tuple(map(latency.parse_setting, args.latency_setting or ())) or (latency.DEFAULT,)
        return latency.run(latency.Options(
            symbols=args.latency_symbols, rounds=args.latency_rounds, warmup_rounds=args.latency_warmup_rounds,
            parallelism=args.latency_parallelism, sweep=args.sweep, settings=settings))
    if name == "scaleout":
        return scaleout.run(scaleout.Options(bars=args.scaleout_bars, symbols=args.symbols, reps=args.scaleout_reps))
    return fetcher.run(fetcher.Options(symbols=args.fetcher_symbols, reps=args.fetcher_reps,
                                       import_reps=args.import_reps))


def run(args: argparse.Namespace, name: str) -> dict:
    """Every selected part; a failed part is recorded and the others still run. The results file is
    rewritten after each part, so a late failure never loses an hour of earlier measurements."""
    results: dict = {"what": args.what, "machine": machine.describe(), "errors": {}}
    for part in (p for p in PARTS if p in _selected(args.what)):
        try:
            results[part] = _part(part, args)
        except Exception as err:  # noqa: BLE001 - recorded in the results and the exit code
            results["errors"][part] = f"{type(err).__name__}: {str(err)[:1000]}"
            print(f"{part}: FAILED: {results['errors'][part]}", file=sys.stderr, flush=True)
        results["scale"] = _scale(results)
        results["machine"]["load_average_at_end"] = machine.load_average()
        report.write(results, name)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_results:
        results = json.loads(args.from_results.read_text())
        name = args.from_results.stem
        report.write(results, name, latest=False)
    else:
        name = args.name or f"{datetime.now(timezone.utc):%Y%m%dT%H%MZ}-{args.what}"
        results = run(args, name)
    print(report.text_table(report.table_rows(results)))
    print(f"\nmachine: {report.machine_line(results['machine'])}\nresults: {report.RESULTS_DIR / name}.json")
    for part, error in results.get("errors", {}).items():
        print(f"{part}: FAILED: {error}")
    if args.update_readme:
        report.update_readme(results)
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
