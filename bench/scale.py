"""Sizing from the measured figures: Kinesis shards and Managed Flink KPUs for N symbols of 1-minute
bars, with the arithmetic spelled out so the assumptions can be checked and changed.

Limits used: a shard takes 1 MB/s or 1,000 records/s of writes; a KPU is 1 vCPU and 4 GB, and the
application runs one parallel subtask per KPU (Managed Flink's default ParallelismPerKPU), plus one
KPU Managed Flink adds per application for orchestration.
"""

from __future__ import annotations

import math

SHARD_BYTES_PER_S = 1_000_000
SHARD_RECORDS_PER_S = 1_000
KPU_MEMORY_BYTES = 4 * 1024 ** 3
# Per-core rate measured on the backtest divided by this: x1.5 because the streaming job has more
# sinks than the backtest (Kinesis, five OpenSearch indices, two rollup windows), x2 headroom for
# catch-up after a restart, checkpoints and GC.
SAFETY_FACTOR = 3.0
SIZES = (100, 1_000, 10_000)


def _shards(records_per_s: float, bytes_per_s: float) -> int:
    return max(1, math.ceil(records_per_s / SHARD_RECORDS_PER_S), math.ceil(bytes_per_s / SHARD_BYTES_PER_S))


def plan(symbols: int, per_core_bars_per_s: float, bar_bytes: float, enriched_bytes: float,
         state_bytes: float) -> dict:
    steady = symbols / 60  # one bar per symbol per minute
    usable = per_core_bars_per_s / SAFETY_FACTOR
    return {
        "symbols": symbols,
        "bars_per_s": steady,
        "input_bytes_per_s": steady * bar_bytes,
        "input_shards": _shards(steady, steady * bar_bytes),
        # If a minute's bars of all symbols land within one second:
        "input_shards_burst": _shards(symbols, symbols * bar_bytes),
        "output_shards": _shards(steady, steady * enriched_bytes),
        "output_shards_burst": _shards(symbols, symbols * enriched_bytes),
        "usable_bars_per_s_per_kpu": usable,
        "kpu_steady": max(1, math.ceil(steady / usable)),
        # Working the whole minute's burst off within one second (the latency target's scale):
        "kpu_burst_1s": max(1, math.ceil(symbols / usable)),
        "state_bytes": symbols * state_bytes,
        "state_share_of_one_kpu": symbols * state_bytes / KPU_MEMORY_BYTES,
    }


def plans(per_core_bars_per_s: float, bar_bytes: float, enriched_bytes: float, state_bytes: float) -> dict:
    return {
        "assumptions": {"per_core_bars_per_s": per_core_bars_per_s, "safety_factor": SAFETY_FACTOR,
                        "bar_bytes": bar_bytes, "enriched_bytes": enriched_bytes, "state_bytes_per_symbol": state_bytes,
                        "shard_limits": "1 MB/s or 1,000 records/s written", "kpu": "1 vCPU + 4 GB, +1 per application"},
        "sizes": [plan(n, per_core_bars_per_s, bar_bytes, enriched_bytes, state_bytes) for n in SIZES],
    }


def arithmetic(result: dict) -> list[str]:
    """Markdown lines showing each figure's derivation."""
    a = result["assumptions"]
    usable = a["per_core_bars_per_s"] / a["safety_factor"]
    lines = [
        f"- Per-core rate: {a['per_core_bars_per_s']:,.0f} bars/s (backtest, parallelism 1, the lower of net bars/s "
        f"and bars per CPU-second) ÷ safety factor {a['safety_factor']:g} = **{usable:,.0f} bars/s per KPU**.",
        f"- Record sizes: bar {a['bar_bytes']:.0f} B (benchmark input), enriched record {a['enriched_bytes']:.0f} B "
        f"(JSON of the published fields), keyed state {a['state_bytes_per_symbol']:,.0f} B per symbol.",
        "",
        "| symbols | bars/s (N/60) | input MB/s | input shards (steady / 1-s burst) | output shards (steady / burst) "
        "| KPUs (steady / 1-s burst) | state |",
        "|---:|---:|---:|---|---|---|---:|",
    ]
    for s in result["sizes"]:
        lines.append(
            f"| {s['symbols']:,} | {s['bars_per_s']:,.1f} | {s['input_bytes_per_s'] / 1e6:.4f} "
            f"| {s['input_shards']} / {s['input_shards_burst']} | {s['output_shards']} / {s['output_shards_burst']} "
            f"| {s['kpu_steady']} (+1) / {s['kpu_burst_1s']} (+1) | {s['state_bytes'] / 1e6:.1f} MB |")
    big = result["sizes"][-1]
    lines += [
        "",
        f"- Steady state, {big['symbols']:,} symbols: {big['symbols']:,}/60 = {big['bars_per_s']:,.0f} records/s "
        f"× {a['bar_bytes']:.0f} B = {big['input_bytes_per_s'] / 1e3:,.1f} kB/s: "
        f"max(⌈{big['bars_per_s']:,.0f}/1,000⌉, ⌈{big['input_bytes_per_s'] / 1e6:.3f}/1⌉) = 1 shard; "
        f"{big['bars_per_s']:,.0f} / {usable:,.0f} = {big['bars_per_s'] / usable:.2f} → 1 KPU.",
        f"- Burst: the shipped fetcher sends symbol after symbol over its run, but a faster producer (parallel "
        f"fetches, bulk quotes) may deliver a whole minute at once. If all {big['symbols']:,} land within one second, "
        f"⌈{big['symbols']:,}/1,000⌉ = {big['input_shards_burst']} shards take them unthrottled (or 1 shard and "
        f"PutRecords retries spread them over ~{math.ceil(big['symbols'] / SHARD_RECORDS_PER_S)} s), and "
        f"⌈{big['symbols']:,}/{usable:,.0f}⌉ = {big['kpu_burst_1s']} KPUs work them off within a second.",
        "- Managed Flink adds one KPU per application; parallelism = KPUs (one subtask per KPU).",
        "- KPUs add Python throughput only while each Python subtask has an interpreter of its own: in thread "
        "mode the Python subtasks of one TaskManager share one interpreter and its GIL (the opt-in "
        "`backtest_p2` variant measures parallelism 2 in one JVM).",
    ]
    return lines
