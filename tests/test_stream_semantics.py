"""Bar validation and per-symbol stream semantics, pure (no Flink): exact outcomes and reasons."""

from __future__ import annotations

import json
from pathlib import Path
from dataclasses import replace

import pytest

from flink_job.core.activity import Activity
from flink_job.core.analyzer import AnalyticsSettings
from flink_job.core.bars import RAW_LIMIT_BYTES, Bar, InvalidBar, clip_utf8, format_ts, parse_bar, parse_keyed
from flink_job.core.rollups import ROLLUP_WINDOWS
from flink_job.core.slots import unpacked
from flink_job.core.symbol_state import STATE_LAYOUT_VERSION, Outcome, SymbolTracker, restore_or_reset
from tests.bar_data import generate_bars, rollup_differences

NOW_MS = 1_710_000_000_000  # 2024-03-09T16:00:00Z
GOOD = {"symbol": "IBM", "ts": "2024-03-08T14:31:00Z", "open": 10.0, "high": 11.0, "low": 9.0,
        "close": 10.5, "volume": 100, "interval": "1min", "source": "alphavantage"}


def variant(**changes) -> str:
    record = dict(GOOD, **changes)
    return json.dumps({k: v for k, v in record.items() if v is not ...})


@pytest.mark.parametrize("raw,reason", [
    ("{not json", "not_json"),
    ("[1, 2]", "not_object"),
    (variant(symbol=...), "missing_field"),
    (variant(close=...), "missing_field"),
    (variant(volume=...), "missing_field"),
    (variant(open="10.0"), "bad_type"),
    (variant(volume=1.5), "bad_type"),
    (variant(volume=True), "bad_type"),
    (variant(high=float("nan")), "non_finite"),
    (variant(low=float("-inf")), "non_finite"),
    (variant(open=0.0, low=0.0), "non_positive_price"),
    (variant(low=-1.0), "non_positive_price"),
    (variant(high=8.0), "high_below_low"),
    (variant(open=12.0), "price_outside_range"),
    (variant(close=8.5), "price_outside_range"),
    (variant(volume=-1), "negative_volume"),
    (variant(volume=10**16), "out_of_range"),
    ('{"symbol": "IBM", "ts": "2024-03-08T14:31:00Z", "open": 1' + "0" * 400 + ', "high": 1, "low": 1, '
     '"close": 1, "volume": 1}', "out_of_range"),
    (variant(open=2e9, high=2e9), "out_of_range"),
    (variant(open=1e-7, low=1e-7), "out_of_range"),
    (variant(ts="1969-12-31T23:59:00Z"), "bad_ts"),
    ("[" * 100_000, "not_json"),
    (variant(ts="2024-03-08 14:31"), "bad_ts"),
    (variant(ts="2024-02-30T14:31:00Z"), "bad_ts"),
    (variant(ts=1709908260), "bad_ts"),
    (variant(ts="2099-01-01T00:00:00Z"), "future_ts"),
    (variant(symbol="ibm"), "bad_symbol"),
    (variant(symbol="ÅAPL"), "bad_symbol"),
    (variant(symbol="X" * 13), "bad_symbol"),
    (variant(symbol=42), "bad_symbol"),
    (variant(basis=-1), "bad_basis"),
    (variant(basis=1.0), "bad_basis"),
    (variant(basis=True), "bad_basis"),
    (variant(basis="2"), "bad_basis"),
    (variant(basis=2**31), "bad_basis"),
])
def test_each_bad_input_class_has_its_reason(raw, reason):
    with pytest.raises(InvalidBar) as err:
        parse_bar(raw, NOW_MS)
    assert err.value.reason == reason


def test_a_good_bar_is_normalised():
    bar = parse_bar(variant(ts="2024-03-08T14:31:00.000+00:00", volume=100.0), NOW_MS)
    assert (bar.ts, bar.ts_ms, bar.volume) == ("2024-03-08T14:31:00Z", 1709908260000, 100)
    assert bar.to_record() == dict(GOOD)


@pytest.fixture
def series():
    return generate_bars(3)[:80]


def run(tracker: SymbolTracker, bars) -> list[tuple[Outcome, dict | None]]:
    return [(o, e.to_record() if e else None) for o, e in map(tracker.offer, bars)]


def test_duplicate_produces_nothing_and_changes_nothing(series):
    tracker = SymbolTracker(AnalyticsSettings())
    run(tracker, series[:50])
    assert tracker.offer(series[49]) == (Outcome.DUPLICATE, None)
    assert run(tracker, series[50:]) == run(SymbolTracker(AnalyticsSettings()), series)[50:]


def test_revision_recomputes_from_the_state_before_the_latest_bar(series):
    original = series[49]
    revised = replace(original, high=original.high * 1.01, close=original.high * 1.01, volume=original.volume + 7)
    tracker = SymbolTracker(AnalyticsSettings())
    run(tracker, series[:50])
    outcome, enriched = tracker.offer(revised)
    expected = run(SymbolTracker(AnalyticsSettings()), series[:49] + [revised])
    assert outcome is Outcome.REVISED
    assert enriched.to_record() == expected[-1][1]
    # and the stream continues as if the revised bar had been the original
    assert run(tracker, series[50:]) == run(SymbolTracker(AnalyticsSettings()),
                                            series[:49] + [revised] + series[50:])[50:]


def test_late_bar_is_not_applied(series):
    tracker = SymbolTracker(AnalyticsSettings())
    run(tracker, series[:50])
    assert tracker.offer(series[10]) == (Outcome.LATE, None)
    assert run(tracker, series[50:]) == run(SymbolTracker(AnalyticsSettings()), series)[50:]


def _rebased(bars, factor: float, basis: int):
    return [replace(b, open=b.open / factor, high=b.high / factor, low=b.low / factor, close=b.close / factor,
                    volume=int(b.volume * factor), basis=basis) for b in bars]


def test_a_basis_is_read_and_kept_and_a_version_1_record_has_none():
    assert parse_bar(variant(basis=3), NOW_MS).basis == 3
    assert parse_bar(variant(basis=3), NOW_MS).to_record() == dict(GOOD, basis=3)
    assert parse_bar(variant(basis=None), NOW_MS).to_record() == dict(GOOD)


def test_a_new_basis_restarts_the_analysis_from_its_first_bar(series):
    """A 2:1 split re-sent from the start: the result is that of the adjusted series alone, and the
    old-basis history leaves no trace (no anomaly, no cross at the split)."""
    tracker = SymbolTracker(AnalyticsSettings())
    run(tracker, series[:60])
    adjusted = _rebased(series, 2.0, basis=1)
    outcomes = run(tracker, adjusted)
    assert outcomes[0][0] is Outcome.REBASED
    assert [o for o, _ in outcomes[1:]] == [Outcome.APPLIED] * (len(series) - 1)
    alone = run(SymbolTracker(AnalyticsSettings()), adjusted)
    assert [e for _, e in outcomes] == [e for _, e in alone]
    assert tracker.basis == 1
    # Bars without a basis (version 1) continue the current series; an older basis is stale.
    more = generate_bars(3)[80:82]
    assert tracker.offer(replace(more[0], basis=0)) == (Outcome.STALE_BASIS, None)
    assert tracker.offer(more[0])[0] is Outcome.APPLIED
    assert tracker.offer(replace(more[1], basis=1))[0] is Outcome.APPLIED


def test_the_basis_survives_a_state_round_trip_and_a_version_4_state_reads_at_basis_0(series):
    settings = AnalyticsSettings()
    tracker = SymbolTracker(settings)
    run(tracker, _rebased(series[:40], 2.0, basis=2))
    restored = SymbolTracker.from_state(settings, tracker.to_state(), tracker.candle_state())
    assert restored.basis == 2
    assert run(restored, _rebased(series[40:], 2.0, basis=2)) == run(tracker, _rebased(series[40:], 2.0, basis=2))
    plain = SymbolTracker(settings)
    run(plain, series[:40])
    state = layout_5_state(plain)
    version_4 = [4.0] + state[1:8] + state[9:]  # the layout before the basis: no basis field
    old = SymbolTracker.from_state(settings, version_4)
    assert old.basis == 0
    assert run(old, series[40:]) == run(plain, series[40:])


def test_state_round_trip_continues_exactly(series):
    settings = AnalyticsSettings()
    tracker = SymbolTracker(settings)
    run(tracker, series[:40])
    state, candles = tracker.to_state(), tracker.candle_state()
    restored = SymbolTracker.from_state(settings, state, candles)
    assert restored.offer(series[39]) == (Outcome.DUPLICATE, None)
    assert run(restored, series[40:]) == run(tracker, series[40:])
    # The analysis before the latest bar is stored, the one after it rebuilt: a revision still works.
    revised = replace(series[39], close=series[39].low, volume=series[39].volume + 1)
    expected = run(SymbolTracker(settings), series[:39] + [revised])[-1]
    assert run(SymbolTracker.from_state(settings, state, candles), [revised]) == [(Outcome.REVISED, expected[1])]


# --- restarts whose stored state no longer fits ---------------------------------------------------
def test_changed_periods_restart_the_warm_up_instead_of_failing(series):
    old, new = AnalyticsSettings(), AnalyticsSettings(sma_mid_period=10, rsi_period=7)
    tracker = SymbolTracker(old)
    run(tracker, series[:60])
    restored, reset = restore_or_reset(new, tracker.to_state(), tracker.candle_state())
    assert reset is not None and reset.reason == "periods_changed"
    assert "sma_mid_period" in reset.detail and "rsi_period" in reset.detail
    # The symbol starts afresh under the new periods: exactly a new run from the next bar on.
    assert run(restored, series[60:]) == run(SymbolTracker(new), series[60:])


def test_state_of_an_older_layout_restarts_the_warm_up(series):
    settings = AnalyticsSettings()
    tracker = SymbolTracker(settings)
    run(tracker, series[:60])
    version_1 = tracker.to_state()[1:]  # layout 1 had no version field and began with ts_ms
    assert version_1[0] == series[59].ts_ms
    restored, reset = restore_or_reset(settings, version_1)
    assert reset is not None and reset.reason == "layout_version"
    assert run(restored, series[60:]) == run(SymbolTracker(settings), series[60:])


@pytest.mark.parametrize("damage", [lambda s: s[:5], lambda s: s[:-4], lambda s: [*s, 1.0],
                                    lambda s: s[:7] + [float("nan")] + s[8:], lambda s: []])
def test_malformed_state_restarts_the_warm_up(series, damage):
    tracker = SymbolTracker(AnalyticsSettings())
    run(tracker, series[:30])
    restored, reset = restore_or_reset(AnalyticsSettings(), damage(tracker.to_state()), tracker.candle_state())
    assert reset is not None and reset.reason in ("malformed", "layout_version")
    assert restored.latest is None


def test_changed_thresholds_simply_continue(series):
    tracker = SymbolTracker(AnalyticsSettings())
    run(tracker, series[:60])
    other = AnalyticsSettings(volume_spike_z=2.0, price_anomaly_z=3.0, rsi_upper=60.0, trend_flat_band=0.001)
    restored, reset = restore_or_reset(other, tracker.to_state(), tracker.candle_state())
    assert reset is None
    assert restored.offer(series[59]) == (Outcome.DUPLICATE, None)  # it knows the latest bar
    continued = [e for _, e in run(restored, series[60:])]
    fresh = [e for _, e in run(SymbolTracker(other), series)[60:]]
    indicators = lambda e: {k: v for k, v in e.items() if k != "signals"}  # noqa: E731
    assert [indicators(e) for e in continued] == [indicators(e) for e in fresh]


# --- keying and dead letters ------------------------------------------------------------------------
def test_a_bar_keyed_under_another_symbol_is_ambiguous():
    # Python's JSON takes NaN in an extra field; Flink's JSON_VALUE does not, and keys the record ''.
    raw = variant()[:-1] + ', "note": NaN}'
    assert parse_keyed(raw, "IBM", NOW_MS).symbol == "IBM"
    with pytest.raises(InvalidBar) as err:
        parse_keyed(raw, "", NOW_MS)
    assert err.value.reason == "ambiguous_symbol"


@pytest.mark.parametrize("char", ["a", "é", "€", "💹"])
def test_dead_letter_text_is_cut_at_10_kb_of_utf8_never_inside_a_character(char):
    text = "x" + char * 20_000
    clipped = clip_utf8(text)
    size = len(clipped.encode("utf-8"))
    assert RAW_LIMIT_BYTES - len(char.encode()) < size <= RAW_LIMIT_BYTES == 10 * 1024
    assert text.startswith(clipped)
    assert clip_utf8("short ünïcødé") == "short ünïcødé"


# --- the summary log lines --------------------------------------------------------------------------
def test_activity_is_summarised_at_most_once_per_interval():
    activity = Activity(started_ms=0, interval_ms=60_000)
    assert not activity.due(59_999) and activity.due(60_000)
    assert activity.take(60_000, 2) == []  # a quiet interval logs nothing
    for reason in ("late", "not_json", "late"):
        activity.dead_letters[reason] += 1
    activity.late_bars, activity.accepted_bars, activity.duplicate_bars, activity.revised_bars = 2, 7, 1, 1
    activity.state_resets = 1
    for i in range(12):
        activity.restored_symbol(f"S{i}")
    lines = dict(activity.take(125_000, 2))
    assert lines["state_restored"] == {"symbols": 12, "examples": [f"S{i}" for i in range(10)], "layout_version": 2}
    assert lines["summary"] == {"interval_s": 65.0, "accepted_bars": 7, "dead_letters": 3,
                                "dead_letters_by_reason": {"late": 2, "not_json": 1}, "late_bars": 2,
                                "duplicate_bars": 1, "revised_bars": 1, "state_resets": 1}
    assert not activity.due(184_999) and activity.due(185_000) and activity.take(185_000, 2) == []


# --- rollups --------------------------------------------------------------------------------------
def rollup_docs(tracker: SymbolTracker, bars, docs: dict | None = None) -> dict[str, dict]:
    """Per window length, the last document each window got (as the job's SQL makes it from the
    emitted window), offering ``bars`` in order."""
    docs = docs if docs is not None else {name: {} for name in ROLLUP_WINDOWS}
    for bar in bars:
        if tracker.offer(bar)[1] is None:
            continue
        for (name, minutes), w in zip(ROLLUP_WINDOWS.items(), tracker.rollups()):
            if w is not None:
                docs[name][w[0]] = {
                    "symbol": bar.symbol, "window_start": format_ts(int(w[0])),
                    "window_end": format_ts(int(w[0]) + minutes * 60_000), "open": w[1], "high": w[2],
                    "low": w[3], "close": w[4], "volume": int(w[5]), "avg_close": w[6] / w[8],
                    "vwap": w[7] / w[5] if w[5] else None, "bar_count": int(w[8])}
    return docs


def assert_rollups(docs: dict[str, dict], final_bars) -> None:
    records = {final_bars[0].symbol: [b.to_record() for b in final_bars]}
    for name, minutes in ROLLUP_WINDOWS.items():
        assert rollup_differences(list(docs[name].values()), records, minutes) == [], name


def test_rollups_are_the_symbols_own_final_candles_with_a_revision_counted_once(series):
    original = series[52]
    revised = replace(original, high=original.high * 1.01, close=original.high * 1.01, volume=original.volume + 7)
    stream = series[:53] + [series[52], revised, series[20]] + series[53:]  # duplicate, revision, late
    assert_rollups(rollup_docs(SymbolTracker(AnalyticsSettings()), stream), series[:52] + [revised] + series[53:])


def test_the_open_window_grows_with_each_bar(series):
    tracker = SymbolTracker(AnalyticsSettings())
    starts = set()
    for bar in series[:12]:
        tracker.offer(bar)
        five, fifteen = tracker.rollups()
        assert all(type(x) is float for x in five + fifteen), "the windows cross into Java as DOUBLE[]"
        starts.add(five[0])
        in_window = [b for b in series[:12] if b.ts_ms - b.ts_ms % 300_000 == five[0] and b.ts_ms <= bar.ts_ms]
        assert (five[4], five[5], five[8]) == (bar.close, sum(b.volume for b in in_window), len(in_window))
    assert len(starts) > 1


@pytest.mark.parametrize("cut", [37, 40, 41])
def test_state_round_trip_keeps_the_open_windows(series, cut):
    settings = AnalyticsSettings()
    tracker = SymbolTracker(settings)
    docs = rollup_docs(tracker, series[:cut])
    restored = SymbolTracker.from_state(settings, tracker.to_state(), tracker.candle_state())
    assert_rollups(rollup_docs(restored, series[cut:], docs), series)


def older_layout_state(tracker: SymbolTracker, with_windows: bool = True) -> list[float]:
    """The tracker's state in layout 3 (or 2, without the open windows): a header of 9 floats
    (version, latest bar, revision, length of the analysis before the latest bar), the windows, then
    the analysis before and after the latest bar."""
    before, after = unpacked(tracker.before), tracker.analyzer.snapshot()
    windows = [x for w in tracker.windows for x in w] if with_windows else []
    return [3.0 if with_windows else 2.0, *tracker.latest, float(tracker.revision), float(len(before)),
            *windows, *before, *after]


def layout_5_state(tracker: SymbolTracker) -> list[float]:
    """The tracker's state in layout 5: version, latest bar, revision, basis, the open windows, then
    the analysis before the latest bar (layout 6 adds the candle indicators before that analysis,
    layout 7 is layout 5 with the candle indicators stored apart)."""
    return [5.0, *tracker.latest, float(tracker.revision), float(tracker.basis),
            *(x for w in tracker.windows for x in w), *unpacked(tracker.before)]


@pytest.mark.parametrize("cut", [1, 41, 53])
def test_a_layout_3_state_continues_exactly(series, cut):
    settings = AnalyticsSettings()
    tracker = SymbolTracker(settings)
    docs = rollup_docs(tracker, series[:cut])
    original = series[cut - 1]
    revised = replace(original, close=original.high, volume=original.volume + 3)
    stream = [revised] + series[cut:]  # a revision of the latest bar first: it needs the analysis before it
    stored = older_layout_state(tracker)
    restored, reset = restore_or_reset(settings, stored)
    assert reset is None
    assert_rollups(rollup_docs(restored, stream, docs), series[:cut - 1] + stream)
    assert run(SymbolTracker.from_state(settings, stored), stream) == run(tracker, stream)


def test_a_layout_2_state_continues_without_the_window_it_cannot_know(series):
    settings = AnalyticsSettings()
    tracker = SymbolTracker(settings)
    run(tracker, series[:41])
    version_2 = older_layout_state(tracker, with_windows=False)
    restored, reset = restore_or_reset(settings, version_2)
    assert reset is None
    assert run(restored, series[41:]) == run(tracker, series[41:])  # the analysis goes on exactly
    restored = SymbolTracker.from_state(settings, version_2)
    docs = rollup_docs(restored, series[41:])
    for name, minutes in ROLLUP_WINDOWS.items():
        open_at_restore = series[40].ts_ms - series[40].ts_ms % (minutes * 60_000)
        later = [b for b in series if b.ts_ms - b.ts_ms % (minutes * 60_000) > open_at_restore]
        assert open_at_restore not in docs[name], "a window missing its earlier bars must not be written"
        assert rollup_differences(list(docs[name].values()), {later[0].symbol: [b.to_record() for b in later]},
                                  minutes) == [], name


def test_a_layout_6_state_of_the_release_before_continues_exactly():
    """``data/state_layout_6.json`` holds a state as the release before layout 7 wrote it (its
    analysis snapshot of version 3, its candle snapshots of version 1, all length-prefixed windows),
    the bars that followed (a revision of the latest bar first) and what that release made of them:
    the same outcomes, enriched records, final candles and open windows, to the last bit."""
    fixture = json.loads((Path(__file__).parent / "data" / "state_layout_6.json").read_text())
    assert fixture["state"][0] == 6.0
    restored, reset = restore_or_reset(AnalyticsSettings(), fixture["state"])
    assert reset is None
    for record, want in zip(fixture["bars"], fixture["expected"], strict=True):
        bar = Bar(record["symbol"], record["ts"], record["ts_ms"], record["open"], record["high"], record["low"],
                  record["close"], record["volume"], record["interval"], record["source"])
        outcome, enriched = restored.offer(bar)
        got = {"outcome": outcome.value, "enriched": enriched.to_record(),
               "closed": [c.to_record(bar.symbol) for c in restored.closed_candles() if c is not None],
               "rollups": restored.rollups()}
        assert json.dumps(got) == json.dumps(want), record["ts"]
    assert sum(bool(want["closed"]) for want in fixture["expected"]) >= 5
    assert restored.to_state()[0] == STATE_LAYOUT_VERSION == 7
    assert restored.take_candle_state() is not None, "the candle indicators read from layout 6 are stored apart"
