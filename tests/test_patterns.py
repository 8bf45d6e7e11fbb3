"""Candlestick patterns against TA-Lib: every function, every bar, exactly.

TA-Lib is the oracle: for each bar, ``CandlePatterns.update`` must return what the last value of
``talib.CDLxxx`` over the bars so far is (0 left out), including inside each function's lookback.
The series mix random bars on a price grid (so ties at the thresholds happen), session gaps, flat
bars (open = high = low = close), runs of identical bars, and handcrafted sequences that make
each pattern fire. ``python -m tests.test_patterns`` prints the firing rates quoted in
``flink_job.core.patterns``.
"""

from __future__ import annotations

import math
import random
from array import array
from collections import Counter
from datetime import date

import numpy as np
import pytest
import talib

from flink_job.core.patterns import (
    DEFAULT_SIGNAL_MIN_STRENGTH, DEFAULT_SIGNAL_PATTERNS, HISTORY, LOOKBACK, PATTERN_NAMES,
    SNAPSHOT_LEN, SNAPSHOT_VERSION, TOTALS, CandlePatterns, _move_all, _MOVES, features, parse_signal_patterns,
    pattern_signals,
)

Row = tuple[float, float, float, float]  # open, high, low, close

# --- handcrafted sequences: 14 ordinary candles (real body 1, range 2), then the pattern ----------

WHITE: Row = (100.0, 101.5, 99.5, 101.0)
BLACK: Row = (101.0, 101.5, 99.5, 100.0)
LONG_BLACK: Row = (102.0, 102.2, 98.8, 99.0)
LONG_WHITE: Row = (99.0, 102.2, 98.8, 102.0)


def context(last_white: bool = True) -> list[Row]:
    """14 alternating candles, the last one white or black: every lookback is covered."""
    return [(WHITE if (i % 2 == 1) == last_white else BLACK) for i in range(14)]


# name, expected TA-Lib output, the colour of the last context candle, the pattern's candles
KNOWN: list[tuple[str, int, bool, list[Row]]] = [
    ("CDLDOJI", 100, True, [(100.5, 101.5, 99.5, 100.55)]),
    ("CDLDRAGONFLYDOJI", 100, True, [(101.4, 101.45, 99.5, 101.4)]),
    ("CDLGRAVESTONEDOJI", 100, True, [(99.6, 101.5, 99.55, 99.6)]),
    ("CDLHAMMER", 100, True, [(99.6, 99.95, 98.5, 99.9)]),
    ("CDLHANGINGMAN", -100, True, [(101.2, 101.55, 100.0, 101.5)]),
    ("CDLINVERTEDHAMMER", 100, True, [(99.5, 101.0, 99.45, 99.8)]),
    ("CDLSHOOTINGSTAR", -100, True, [(101.5, 102.6, 101.15, 101.2)]),
    ("CDLMARUBOZU", 100, True, [(99.0, 102.05, 98.95, 102.0)]),
    ("CDLMARUBOZU", -100, True, [(102.0, 102.05, 98.95, 99.0)]),
    ("CDLENGULFING", 100, False, [(99.8, 101.5, 99.7, 101.3)]),
    ("CDLENGULFING", -100, True, [(101.2, 101.3, 99.6, 99.8)]),
    ("CDLENGULFING", 80, False, [(100.0, 101.4, 99.9, 101.3)]),  # opens at the black's close
    ("CDLHARAMI", 100, True, [LONG_BLACK, (100.0, 100.7, 99.9, 100.5)]),
    ("CDLHARAMI", -100, True, [LONG_WHITE, (100.5, 100.7, 99.9, 100.0)]),
    ("CDLHARAMI", 80, True, [LONG_BLACK, (100.0, 100.2, 99.0, 99.0)]),  # bodies end together
    ("CDLPIERCING", 100, True, [LONG_BLACK, (98.5, 101.2, 98.4, 101.0)]),
    ("CDLDARKCLOUDCOVER", -100, True, [LONG_WHITE, (102.5, 102.6, 100.1, 100.2)]),
    ("CDLMORNINGSTAR", 100, True, [LONG_BLACK, (98.6, 98.7, 98.3, 98.5), (98.8, 101.6, 98.7, 101.5)]),
    ("CDLEVENINGSTAR", -100, True, [LONG_WHITE, (102.4, 102.7, 102.3, 102.5),
                                    (102.2, 102.3, 99.4, 99.5)]),
    ("CDL3WHITESOLDIERS", 100, True, [(100.0, 101.55, 99.9, 101.5), (101.0, 102.65, 100.9, 102.6),
                                      (102.1, 103.85, 102.0, 103.8)]),
    ("CDL3BLACKCROWS", -100, True, [(101.2, 101.3, 99.95, 100.0), (100.8, 100.85, 98.95, 99.0),
                                    (99.6, 99.65, 97.95, 98.0)]),
]


def talib_outputs(rows: list[Row]) -> dict[str, np.ndarray]:
    """Each function's TA-Lib output over the whole series."""
    o, h, l, c = np.array(rows, dtype=float).reshape(-1, 4).T
    return {name: getattr(talib, name)(o, h, l, c) for name in PATTERN_NAMES}


def run(rows: list[Row]) -> list[dict[str, int]]:
    patterns = CandlePatterns()
    return [patterns.update(*row) for row in rows]


def assert_matches_talib(rows: list[Row], outputs: list[dict[str, int]]) -> dict[str, np.ndarray]:
    """Every function's output on every bar equals TA-Lib's; returns TA-Lib's outputs."""
    assert len(outputs) == len(rows)
    reference = talib_outputs(rows)
    for name in PATTERN_NAMES:
        got = np.array([out.get(name, 0) for out in outputs])
        want = reference[name].astype(int)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, (f"{name}: {bad.size} bars differ from TA-Lib, first bar {bad[0]}: "
                               f"{got[bad[0]]} vs {want[bad[0]]}, bars {rows[max(0, bad[0] - 3):bad[0] + 1]}")
    assert all(0 not in out.values() for out in outputs), "a zero output was returned"
    return reference


@pytest.mark.parametrize("name, expected, last_white, candles", KNOWN,
                         ids=[f"{k[0]}{k[1]:+d}" for k in KNOWN])
def test_known_values(name, expected, last_white, candles):
    rows = context(last_white) + candles
    assert talib_outputs(rows)[name][-1] == expected  # the oracle agrees with the hand analysis
    assert run(rows)[-1].get(name, 0) == expected


def test_known_values_cover_every_pattern_and_value():
    assert {k[0] for k in KNOWN} == set(PATTERN_NAMES)
    assert {(k[0], k[1]) for k in KNOWN} >= {("CDLENGULFING", 80), ("CDLHARAMI", 80),
                                             ("CDLMARUBOZU", -100), ("CDLHARAMI", -100)}


def test_nothing_inside_the_lookback():
    """Each pattern's sequence cut so that it ends one bar inside the function's lookback gives 0,
    as TA-Lib does, although the same candles fire once the lookback is covered."""
    for name, _expected, last_white, candles in KNOWN:
        rows = (context(last_white) + candles)[-LOOKBACK[name]:]
        assert talib_outputs(rows)[name][-1] == 0
        assert name not in run(rows)[-1]


# --- generated series ----------------------------------------------------------------------------


def generated_bars(seed: int, count: int, price: float = 100.0, digits: int = 5) -> list[Row]:
    """Random bars quoted to ``digits`` significant digits (a grid, so ties at the thresholds
    happen) with what a feed holds: gaps between sessions, two splits (the price divided by 1000 a
    third of the way in, multiplied by 100 at two thirds), flat bars and runs of them, bars that
    open away from the last close, bars without shadows, and, now and then, one of the handcrafted
    pattern sequences scaled to the current price."""
    rng = random.Random(seed)
    rows: list[Row] = []
    splits = {count // 3: 1e-3, 2 * count // 3: 100.0}

    def put(o: float, h: float, l: float, c: float) -> None:
        places = digits - 1 - math.floor(math.log10(max(o, c)))
        o, c = round(o, places), round(c, places)
        rows.append((o, max(round(h, places), o, c), min(round(l, places), o, c), c))

    while len(rows) < count:
        roll = rng.random()
        last = rows[-1][3] if rows else price
        split = next((factor for at, factor in splits.items() if len(rows) >= at), None)
        if split is not None:
            splits = {at: f for at, f in splits.items() if f != split}
            put(*[last * split] * 4)
        elif roll < 0.004:  # a new session: the price jumps
            put(*[last * math.exp(rng.gauss(0.0, 0.03))] * 4)
        elif roll < 0.010:  # flat bars
            level = last * (1 + rng.choice((-1, 0, 0, 1)) * 10.0 ** (1 - digits))
            for _ in range(rng.choice((1, 1, 2, 5, 20))):
                put(level, level, level, level)
        elif roll < 0.016:  # a pattern sequence, scaled
            _, _, last_white, candles = rng.choice(KNOWN)
            scale = last / 100.0
            for bar in context(last_white)[-rng.randint(2, 14):] + candles:
                put(*(v * scale for v in bar))
        else:
            o = last if rng.random() < 0.7 else last * math.exp(rng.gauss(0.0, 0.001))
            c = o * math.exp(rng.gauss(0.0, 0.002))
            top, bottom = max(o, c), min(o, c)
            h = top * (1 + abs(rng.gauss(0.0, 0.001))) if rng.random() < 0.8 else top
            l = bottom * (1 - abs(rng.gauss(0.0, 0.001))) if rng.random() < 0.8 else bottom
            put(o, h, l, c)
    return rows[:count]


SERIES = {
    "5_digits_from_100": dict(seed=7, count=30_000, price=100.0),
    "4_digits_from_0.5": dict(seed=8, count=30_000, price=0.5, digits=4),
    "6_digits_from_5000": dict(seed=9, count=30_000, price=5000.0, digits=6),
}


@pytest.fixture(scope="module", params=sorted(SERIES))
def series(request) -> list[Row]:
    return generated_bars(**SERIES[request.param])


def test_every_bar_equals_talib(series):
    reference = assert_matches_talib(series, run(series))
    fired = {name for name, values in reference.items() if np.any(values != 0)}
    assert fired == set(PATTERN_NAMES), f"never fired: {set(PATTERN_NAMES) - fired}"
    both_signs = {"CDLMARUBOZU", "CDLENGULFING", "CDLHARAMI"}
    for name in both_signs:
        assert {int(v) for v in np.unique(reference[name])} >= {-100, 100}, name
    for name in ("CDLENGULFING", "CDLHARAMI"):
        assert {80, -80} <= {int(v) for v in np.unique(reference[name])}, name
    flat = [i for i, (o, h, l, c) in enumerate(series) if o == h == l == c]
    gaps = [i for i in range(1, len(series)) if abs(series[i][0] / series[i - 1][3] - 1) > 0.01]
    splits = [i for i in gaps if abs(math.log10(series[i][0] / series[i - 1][3])) > 1.5]
    assert len(flat) > 100 and len(gaps) > 10 and len(splits) == 2  # what the series claims to hold


def test_revised_bars_recompute():
    """Every 20th bar first arrives provisional, then revised: the state before it is restored and
    the final bar applied. The provisional outputs are TA-Lib's over the provisional series, and
    every final output is TA-Lib's over the final series."""
    rows = generated_bars(seed=11, count=4000)
    rng = random.Random(12)
    patterns = CandlePatterns()
    outputs: list[dict[str, int]] = []
    provisional_outputs: dict[int, dict[str, int]] = {}
    for i, row in enumerate(rows):
        if i % 20 == 7:
            before = patterns.snapshot()
            o, h, l, c = row
            provisional = (o, h * 1.002, l, c + (h - l) * rng.choice((-0.5, 0.5)))
            provisional = (o, max(provisional[1], provisional[3]), min(l, provisional[3]), provisional[3])
            got = patterns.update(*provisional)
            want = talib_outputs(rows[:i] + [provisional])
            assert got == {n: int(v[-1]) for n, v in want.items() if v[-1] != 0}, i
            patterns = CandlePatterns.restore(before)
            provisional_outputs[i] = got
        outputs.append(patterns.update(*row))
    assert_matches_talib(rows, outputs)
    changed = sum(outputs[i] != got for i, got in provisional_outputs.items())
    assert changed > len(provisional_outputs) // 10  # the revisions did change patterns


def test_snapshot_restore_at_every_bar_continues_exactly():
    rows = generated_bars(seed=13, count=3000, price=20.0, digits=4)
    straight = CandlePatterns()
    hopping = CandlePatterns()
    for i, row in enumerate(rows):
        snapshot = hopping.snapshot()
        assert len(snapshot) == SNAPSHOT_LEN and snapshot[0] == SNAPSHOT_VERSION
        packed = array("d", snapshot).tobytes()  # as the operator stores state
        hopping = CandlePatterns.restore(array("d", packed).tolist())
        assert np.array_equal(hopping.snapshot(), snapshot, equal_nan=True), i
        assert hopping.update(*row) == straight.update(*row), i
    assert np.array_equal(hopping.snapshot(), straight.snapshot(), equal_nan=True)


def test_state_is_bounded():
    patterns = CandlePatterns()
    for row in generated_bars(seed=14, count=5000):
        patterns.update(*row)
    assert len(patterns.snapshot()) == SNAPSHOT_LEN == 2 + 17 + 4 * HISTORY
    assert HISTORY == 13


def test_unrolled_moves_equal_the_generic_loop():
    """Once every total is live, ``update`` moves them with unrolled code: it must do exactly what
    the loop over ``TOTALS`` does."""
    patterns = CandlePatterns()
    totals_at, end = 2, SNAPSHOT_LEN
    for row in generated_bars(seed=16, count=2000):
        patterns.update(*row)
        state = patterns.snapshot()
        if state[1] >= HISTORY:
            bars = [features(*state[i:i + 4]) for i in range(end - 4 * HISTORY, end, 4)]
            generic = state[totals_at:totals_at + len(TOTALS)]
            for slot, field, new, old, _ in _MOVES:
                generic[slot] += bars[new][field] - bars[old][field]
            totals = state[totals_at:totals_at + len(TOTALS)]
            _move_all(totals, state[end - 4 * HISTORY:end])
            assert totals == generic


@pytest.mark.parametrize("snapshot, message", [
    ([SNAPSHOT_VERSION, 0.0], "values, expected"),
    ([2.0] + [0.0] * (SNAPSHOT_LEN - 1), "version"),
    ([SNAPSHOT_VERSION, math.nan] + [0.0] * (SNAPSHOT_LEN - 2), "bar count"),
    ([SNAPSHOT_VERSION, 3.5] + [0.0] * (SNAPSHOT_LEN - 2), "bar count"),
    ([SNAPSHOT_VERSION, 99.0] + [0.0] * (SNAPSHOT_LEN - 2), "bar count"),
    ([SNAPSHOT_VERSION, 14.0] + [0.0] * (SNAPSHOT_LEN - 3) + [math.nan], "missing price"),
])
def test_restore_refuses_what_is_not_a_snapshot(snapshot, message):
    with pytest.raises(ValueError, match=message):
        CandlePatterns.restore(snapshot)


def talib_running_total(ranges: list[float], start: int, period: int, offset: int) -> dict[int, float]:
    """TA-Lib's loop for one candle-setting total, as read at each bar i >= ``start``: summed in index
    order over the candles [start - offset - period, start - offset), then moved along by
    ``total += range(i - offset) - range(i - offset - period)`` after each bar."""
    total, read = 0.0, {}
    for j in range(start - offset - period, start - offset):
        total += ranges[j]
    for i in range(start, len(ranges)):
        read[i] = total
        total += ranges[i - offset] - ranges[i - offset - period]
    return read


def test_the_running_sum_residue_decides():
    """Where TA-Lib's running total and the exact window sum put "near the prior low" on different
    floats, a hammer built on that boundary follows the running total, in TA-Lib and here. Prices
    on one scale leave no residue (their ranges and sums are exact multiples of one ulp); the split
    in the series does, and TA-Lib's totals keep it."""
    rows = generated_bars(seed=15, count=20_000)
    ranges = [h - l for _, h, l, _ in rows]
    lookback = LOOKBACK["CDLHAMMER"]
    running = talib_running_total(ranges, lookback, 5, 1)  # Near: high-low, 5 candles, previous
    found = 0
    for n in range(lookback, len(rows)):
        low = rows[n - 1][2]
        by_talib = low + 0.2 * (running[n] / 5)
        exact = low + 0.2 * (math.fsum(ranges[n - 6:n - 1]) / 5)
        if by_talib == exact:
            continue
        bottom = max(by_talib, exact)  # the body's bottom: near the prior low by one sum only
        hammer = (bottom, bottom + 1e-9 * bottom, bottom - 0.05 * bottom, bottom + 1e-9 * bottom)
        series = rows[:n] + [hammer]
        expected = 100 if bottom <= by_talib else 0
        assert talib_outputs(series)["CDLHAMMER"][-1] == expected
        assert run(series)[-1].get("CDLHAMMER", 0) == expected
        found += 1
        if found == 6:
            break
    assert found == 6  # enough boundaries both ways to tell the two sums apart


# --- the shipped sample data ---------------------------------------------------------------------


def sample_series() -> dict[str, list[Row]]:
    from fetcher_lambda.replay import load_bars  # the test reads the samples as the replay does
    by_symbol: dict[str, list[Row]] = {}
    for bar in load_bars():
        by_symbol.setdefault(bar.symbol, []).append((bar.open, bar.high, bar.low, bar.close))
    return by_symbol


def test_sample_data_equals_talib_per_symbol():
    by_symbol = sample_series()
    assert sorted(by_symbol) == ["AAPL", "IBM", "MSFT", "SPY"]
    for symbol, rows in by_symbol.items():
        assert len(rows) > 1000, symbol
        assert_matches_talib(rows, run(rows))


# --- which patterns are signals --------------------------------------------------------------------


def firing_rates(all_series: list[list[Row]]) -> tuple[int, Counter, int]:
    """(bars, bars per (function, output), bars with a default signal) over the series."""
    bars, fired, signalled = 0, Counter(), 0
    for rows in all_series:
        for out in run(rows):
            bars += 1
            fired.update(out.items())
            signalled += bool(pattern_signals(out))
    return bars, fired, signalled


def test_default_signals_keep_the_feed_readable():
    bars, fired, signalled = firing_rates(list(sample_series().values()))
    assert signalled / bars < 0.01  # under 1% of the sample's bars carry a pattern signal
    assert signalled > 0
    single_bar = sum(fired[(n, 100)] for n in ("CDLDOJI", "CDLHAMMER", "CDLDRAGONFLYDOJI"))
    assert single_bar / bars > 0.1  # what the default leaves out would swamp the feed
    assert (fired[("CDLENGULFING", 80)] + fired[("CDLENGULFING", -80)]) / bars > 0.1


def test_pattern_signals_pick_named_full_strength_outputs():
    out = {"CDLDOJI": 100, "CDLENGULFING": -100, "CDLHARAMI": 80, "CDLMORNINGSTAR": 100}
    assert pattern_signals(out) == [("CDLENGULFING", -100), ("CDLMORNINGSTAR", 100)]
    assert pattern_signals({"CDLENGULFING": 80}) == []
    assert pattern_signals(out, frozenset({"CDLHARAMI"}), 80) == [("CDLHARAMI", 80)]
    assert DEFAULT_SIGNAL_MIN_STRENGTH == 100 and DEFAULT_SIGNAL_PATTERNS <= set(PATTERN_NAMES)


def test_parse_signal_patterns():
    assert parse_signal_patterns(" cdlEngulfing, CDLDOJI ,") == {"CDLENGULFING", "CDLDOJI"}
    assert parse_signal_patterns("") == frozenset() == parse_signal_patterns("none")
    with pytest.raises(ValueError, match="CDLNOPE.*CDLDOJI"):
        parse_signal_patterns("CDLDOJI,CDLNOPE")


def main() -> None:
    """Print the firing rates per bar quoted in flink_job.core.patterns."""
    from tests.bar_data import generate_bars, trading_days

    generated = [[(b.open, b.high, b.low, b.close) for b in generate_bars(s, trading_days(date(2024, 3, 4), 10))]
                 for s in (1, 2)]
    for label, all_series in (("sample data", list(sample_series().values())),
                              ("tests.bar_data.generate_bars", generated)):
        bars, fired, signalled = firing_rates(all_series)
        print(f"{label}: {bars} bars, default signals on {100 * signalled / bars:.2f}%")
        for name in PATTERN_NAMES:
            rates = ", ".join(f"{value:+d}: {100 * fired[(name, value)] / bars:.3f}%"
                              for value in (-100, -80, 80, 100) if fired[(name, value)])
            print(f"  {name:18} {rates or '0'}")


if __name__ == "__main__":
    main()
