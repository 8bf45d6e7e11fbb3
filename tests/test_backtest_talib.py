"""The backtest on the shipped sample data, checked against TA-Lib itself: every candlestick pattern
of every bar, at parallelism 1 and 4. Zero mismatches.

Restarts expected: none, and none possible (a backtest runs with the restart strategy ``none``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import talib

from fetcher_lambda.replay import load_bars
from flink_job.backtest import main as backtest
from flink_job.core.patterns import PATTERN_NAMES


@pytest.fixture(scope="module")
def sample_lines() -> list[str]:
    return [json.dumps(bar.to_record()) for bar in load_bars()]


def talib_patterns(records: list[dict]) -> list[dict[str, int]]:
    """Per bar, TA-Lib's non-zero outputs of every pattern function over the symbol's bars."""
    o, h, l, c = (np.array([r[f] for r in records], dtype=float) for f in ("open", "high", "low", "close"))
    outputs = {name: getattr(talib, name)(o, h, l, c) for name in PATTERN_NAMES}
    return [{name: int(values[i]) for name, values in outputs.items() if values[i] != 0}
            for i in range(len(records))]


@pytest.mark.jvm  # the backtest runs the real job in a local mini-cluster
@pytest.mark.parametrize("parallelism", [1, 4])
def test_every_pattern_of_the_sample_data_equals_talib(tmp_path, sample_lines, parallelism):
    source, out = tmp_path / "bars.jsonl", tmp_path / "enriched.jsonl"
    source.write_text("\n".join(sample_lines) + "\n")
    assert backtest(["--input", str(source), "--output", str(out), "--parallelism", str(parallelism)]) == 0
    by_symbol: dict[str, list[dict]] = {}
    for line in out.read_text().splitlines():
        record = json.loads(line)
        by_symbol.setdefault(record["symbol"], []).append(record)
    assert sum(map(len, by_symbol.values())) == len(sample_lines), "every sample bar analysed once"
    mismatches, fired = [], 0
    for symbol, records in by_symbol.items():
        for record, want in zip(records, talib_patterns(records), strict=True):
            fired += len(want)
            if record["patterns"] != want:
                mismatches.append((symbol, record["ts"], record["patterns"], want))
    assert mismatches == [], f"{len(mismatches)} bars differ from TA-Lib, e.g. {mismatches[:3]}"
    assert fired > 1000, "the sample data exercises the patterns"
