"""TA-Lib candlestick patterns, computed per symbol one bar at a time.

``CandlePatterns.update(open, high, low, close)`` gives, for the bar just added, the non-zero outputs
of 16 ``talib.CDL*`` functions, keyed by function name: each equals the last value of ``talib.CDLxxx``
over the symbol's bars so far, with TA-Lib's default candle settings and penetrations, and 0 (left
out) inside the function's lookback.

How TA-Lib decides, and how it is replayed:

* A candle "setting" (BodyLong, BodyShort, BodyDoji, ShadowLong, ShadowVeryShort, Near, Far) compares
  a part of a candle with ``factor * (total / period)``, where ``total`` sums a range (the real body
  or the high-low range) over the ``period`` candles before the one it describes; ShadowLong has
  period 0 and compares with the candle's own real body.
* TA-Lib keeps each total as a running sum: first summed in index order over the window before the
  function's first output (the bar at index ``lookback``), then moved along one bar at a time by
  ``total += range(new) - range(leaving)``. While prices stay on one scale these sums are exact
  (ranges are exact multiples of one ulp), but a jump by orders of magnitude (a split, a bad tick)
  leaves a rounding residue in the total for good, and it decides comparisons at the thresholds.
  So every total here is the same sequence of float operations from the same start, and each
  average is ``factor * (total / period)`` in TA-Lib's order. Totals with the same range, period,
  offset and start are one total, shared by the functions that read them (17 serve the 16).
* The candle's own features (real body, high-low range, shadows, colour) are computed once per bar.

State: the last ``HISTORY`` bars' OHLC, the running totals and a saturating bar count;
``snapshot``/``restore`` round-trip it exactly as ``SNAPSHOT_LEN`` floats. A revised bar is
re-applied to the snapshot taken before it.

Pure: no Flink, no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from flink_job.core.slots import NAN, Slots, check_count

SNAPSHOT_VERSION = 1.0

# TA-Lib's default candle settings (ta_global.c): (range, average period, factor). RB is the real
# body |close - open|, HL the high-low range. BodyVeryLong, ShadowShort and Equal are not read by the
# functions below.
RB, HL = 0, 1
BODY_LONG = (RB, 10, 1.0)
BODY_SHORT = (RB, 10, 1.0)
BODY_DOJI = (HL, 10, 0.1)
SHADOW_LONG = (RB, 0, 1.0)  # period 0: compared with the candle's own real body
SHADOW_VERY_SHORT = (HL, 10, 0.1)
NEAR = (HL, 5, 0.2)
FAR = (HL, 5, 0.6)
# TA-Lib's default penetrations.
DARK_CLOUD_PENETRATION = 0.5
STAR_PENETRATION = 0.3

# Function name -> TA-Lib lookback: the index of its first output.
LOOKBACK = {
    "CDLDOJI": 10, "CDLDRAGONFLYDOJI": 10, "CDLGRAVESTONEDOJI": 10, "CDLHAMMER": 11,
    "CDLHANGINGMAN": 11, "CDLINVERTEDHAMMER": 11, "CDLSHOOTINGSTAR": 11, "CDLMARUBOZU": 10,
    "CDLENGULFING": 2, "CDLHARAMI": 11, "CDLPIERCING": 11, "CDLDARKCLOUDCOVER": 11,
    "CDLMORNINGSTAR": 12, "CDLEVENINGSTAR": 12, "CDL3WHITESOLDIERS": 12, "CDL3BLACKCROWS": 13,
}
PATTERN_NAMES = tuple(LOOKBACK)

# Which outputs become ``candle_pattern`` signals unless configured otherwise: the multi-bar
# reversal patterns, at TA-Lib's full strength (+-100). The single-bar shapes fire far too often on
# 1-minute bars, and so do TA-Lib's weaker +-80 engulfing and harami (one end of the two bodies
# matching): a minute bar mostly opens at the previous close, which meets that condition.
# Firing rates per bar, measured by ``python -m tests.test_patterns`` on the shipped sample data
# (4 symbols, 7,419 bars) / on tests.bar_data.generate_bars (seeds 1 and 2, 10 days, 17,749 bars,
# whose flat runs inflate the doji):
#   signals by default                      not signals by default
#   CDLENGULFING +-100  0.49% / 0           CDLENGULFING +-80   21.2% / 19.6%
#   CDLPIERCING         0.01% / 0           CDLHARAMI +-100     0.65% / 0
#   CDLDARKCLOUDCOVER   0.03% / 0           CDLHARAMI +-80      10.3% / 9.5%
#   CDLMORNINGSTAR      0.03% / 0           CDLDOJI             12.0% / 29.7%
#   CDLEVENINGSTAR      0.05% / 0           CDLMARUBOZU         4.8% / 2.0%
#   CDL3WHITESOLDIERS   0.16% / 0.03%       CDLHAMMER           2.7% / 1.9%
#   CDL3BLACKCROWS      0 / 0               CDLDRAGONFLYDOJI    2.2% / 2.0%
#   together            0.77% / 0.03%       CDLGRAVESTONEDOJI   2.1% / 1.8%
#                                           CDLHANGINGMAN       1.9% / 1.0%
#                                           CDLINVERTEDHAMMER   0.50% / 0
#                                           CDLSHOOTINGSTAR     0.30% / 0
DEFAULT_SIGNAL_PATTERNS = frozenset({
    "CDLENGULFING", "CDLPIERCING", "CDLDARKCLOUDCOVER", "CDLMORNINGSTAR", "CDLEVENINGSTAR",
    "CDL3WHITESOLDIERS", "CDL3BLACKCROWS",
})
DEFAULT_SIGNAL_MIN_STRENGTH = 100  # |output| a signal needs: TA-Lib's outputs are 80 or 100


def parse_signal_patterns(text: str) -> frozenset[str]:
    """A setting's comma-separated TA-Lib function names (any case); empty or "none" for none.
    ValueError names the unknown ones and lists the known."""
    names = {part.strip().upper() for part in text.split(",")} - {""}
    if names == {"NONE"}:
        return frozenset()
    unknown = sorted(names - set(PATTERN_NAMES))
    if unknown:
        raise ValueError(f"unknown candlestick pattern(s) {', '.join(unknown)}: "
                         f"use names among {', '.join(PATTERN_NAMES)}, or none")
    return frozenset(names)


def pattern_signals(outputs: dict[str, int], names: frozenset[str] = DEFAULT_SIGNAL_PATTERNS,
                    min_strength: float = DEFAULT_SIGNAL_MIN_STRENGTH) -> list[tuple[str, int]]:
    """The (function name, output) pairs of ``CandlePatterns.update``'s outputs that are signals:
    named in ``names`` with |output| >= ``min_strength``; in a fixed order. A positive output is
    bullish, a negative one bearish."""
    return [(name, value) for name, value in outputs.items()
            if name in names and (value >= min_strength or value <= -min_strength)]


# The running totals: (range, period, offset, start). At bar ``i >= start`` the total sums the
# range over candles [i - offset - period, i - offset); ``start`` is the lookback of the functions
# reading it, where TA-Lib begins its running sum. Indexes into ``CandlePatterns._totals``.
TOTALS = (
    (HL, 10, 0, 10),  # 0: BodyDoji / ShadowVeryShort of doji, dragonfly, gravestone, marubozu
    (RB, 10, 0, 10),  # 1: BodyLong of marubozu
    (RB, 10, 0, 11),  # 2: BodyShort of the hammers and stars; BodyShort, BodyLong of harami, piercing
    (HL, 10, 0, 11),  # 3: ShadowVeryShort of the hammers and shooting star
    (HL, 5, 1, 11),   # 4: Near (previous candle) of hammer and hanging man
    (RB, 10, 1, 11),  # 5: BodyLong (previous candle) of harami, piercing, dark cloud cover
    (RB, 10, 2, 12),  # 6: BodyLong (first candle) of the morning and evening star
    (RB, 10, 1, 12),  # 7: BodyShort (second candle) of the stars
    (RB, 10, 0, 12),  # 8: BodyShort (third candle) of the stars and three white soldiers
    (HL, 10, 2, 12),  # 9: ShadowVeryShort of three white soldiers, per candle
    (HL, 10, 1, 12),  # 10
    (HL, 10, 0, 12),  # 11
    (HL, 5, 2, 12),   # 12: Near and Far of three white soldiers, per candle
    (HL, 5, 1, 12),   # 13
    (HL, 10, 2, 13),  # 14: ShadowVeryShort of three black crows, per candle
    (HL, 10, 1, 13),  # 15
    (HL, 10, 0, 13),  # 16
)
MAX_LOOKBACK = max(LOOKBACK.values())
# Bars kept: the oldest range a total reads or drops is offset + period bars back.
HISTORY = max(offset + period for _, period, offset, _ in TOTALS) + 1
# Bar counts saturate here: beyond the longest lookback every function is live and nothing else
# depends on the count.
COUNT_CAP = MAX_LOOKBACK + 1
SNAPSHOT_LEN = 2 + len(TOTALS) + 4 * HISTORY  # version, count, totals, OHLC of HISTORY bars

# Per bar, a tuple of its features, computed once: field positions.
O, H, L, C, BODY, RANGE, UPPER, LOWER, WHITE = range(9)
# The range a total sums, by the kind in TOTALS (RB -> BODY, HL -> RANGE).
_FIELD = (BODY, RANGE)
# Per start index, the totals TA-Lib begins summing there: [(slot, field, period, offset)].
_BY_START = {start: [(slot, _FIELD[kind], period, offset)
                     for slot, (kind, period, offset, s) in enumerate(TOTALS) if s == start]
             for start in sorted({t[3] for t in TOTALS})}
# Each total as (slot, field, newest index from the end, leaving index from the end, start): after
# bar i is evaluated, total += range(i - offset) - range(i - offset - period) (``_move_all`` is
# the same, unrolled, once every total is live).
_MOVES = tuple((slot, _FIELD[kind], -1 - offset, -1 - offset - period, start)
               for slot, (kind, period, offset, start) in enumerate(TOTALS))


def features(o: float, h: float, l: float, c: float) -> tuple:
    """(open, high, low, close, real body, high-low range, upper shadow, lower shadow, white), as
    TA-Lib's macros compute them: a candle with close >= open is white."""
    if c >= o:
        return (o, h, l, c, abs(c - o), h - l, h - c, o - l, True)
    return (o, h, l, c, abs(c - o), h - l, h - o, c - l, False)


def _move_all(totals: list[float], b: list[float]) -> None:
    """Every total's move once all are live, given the OHLC of the last ``HISTORY`` bars, oldest
    first (``b``; the bar ``k`` back from the newest, 1, starts at ``b[52 - 4k]``): the generic loop of
    ``update`` unrolled, each range difference computed once for the totals sharing it (the same float
    operations per total)."""
    # High-low range of the bar k back: b[53 - 4k] - b[54 - 4k]; real body: |b[55 - 4k] - b[52 - 4k]|.
    r1, r2, r3 = b[49] - b[50], b[45] - b[46], b[41] - b[42]
    r7, r8 = b[25] - b[26], b[21] - b[22]
    r11, r12, r13 = b[9] - b[10], b[5] - b[6], b[1] - b[2]
    d = r1 - r11  # high-low, period 10, this candle
    totals[0] += d
    totals[3] += d
    totals[11] += d
    totals[16] += d
    d = r2 - r12  # high-low, period 10, previous candle
    totals[10] += d
    totals[15] += d
    d = r3 - r13  # high-low, period 10, the one before
    totals[9] += d
    totals[14] += d
    d = r2 - r7  # high-low, period 5, previous candle
    totals[4] += d
    totals[13] += d
    totals[12] += r3 - r8  # high-low, period 5, the one before
    d = abs(b[51] - b[48]) - abs(b[11] - b[8])  # real body, period 10, this candle
    totals[1] += d
    totals[2] += d
    totals[8] += d
    d = abs(b[47] - b[44]) - abs(b[7] - b[4])  # real body, period 10, previous candle
    totals[5] += d
    totals[7] += d
    totals[6] += abs(b[43] - b[40]) - abs(b[3] - b[0])  # real body, period 10, the one before


def _range_at(b: list[float], back: int, field: int) -> float:
    """The real body (``BODY``) or high-low range (``RANGE``) of the bar ``back`` bars from the
    newest (1) in the OHLC of the last ``HISTORY`` bars, oldest first (``b``)."""
    at = 4 * (HISTORY - back)
    if field == BODY:
        return abs(b[at + 3] - b[at])
    return b[at + 1] - b[at + 2]


class CandlePatterns(Slots):
    """The 16 patterns of one symbol's bar stream, with bounded state (see the module docstring).

    Slots (``SNAPSHOT_LEN``, the snapshot's layout): version, bar count (saturating at
    ``COUNT_CAP``), the running totals, then the OHLC of the last ``HISTORY`` bars, oldest first,
    NaN where fewer bars were seen.
    """

    __slots__ = ("_t", "_end", "_recent")

    def __init__(self, state: list[float] | None = None) -> None:
        super().__init__(state, [SNAPSHOT_VERSION, 0.0] + [0.0] * len(TOTALS) + [NAN] * (4 * HISTORY))
        self._t = self.o + 2  # the first total
        self._end = self.o + SNAPSHOT_LEN  # one past the newest bar's close
        # The features of the last bars the patterns compare with, derived from the slots (``check``
        # rebuilds them after a restore) so that they are computed once per bar.
        self._recent: deque[tuple] = deque(maxlen=4)

    def update(self, o: float, h: float, l: float, c: float) -> dict[str, int]:
        """Add a bar; the non-zero pattern outputs for it, by TA-Lib function name."""
        s, t, end = self.s, self._t, self._end
        del s[end - 4 * HISTORY:end - 4 * HISTORY + 4]  # the oldest bar leaves, this one joins
        s[end - 4:end - 4] = (o, h, l, c)
        cur = features(o, h, l, c)
        recent = self._recent
        recent.append(cur)
        n = int(s[t - 1])  # this bar's index, or COUNT_CAP once past every lookback
        b = s[end - 4 * HISTORY:end]  # local copies read faster than offsets into the slots
        totals = s[t:t + len(TOTALS)]
        if n < COUNT_CAP:
            s[t - 1] = n + 1.0
            begin = _BY_START.get(n)
            if begin is not None:  # TA-Lib's initial sums, oldest candle first
                for slot, field, period, offset in begin:
                    total = 0.0
                    for k in range(offset + period, offset, -1):
                        total += _range_at(b, k + 1, field)
                    totals[slot] = s[t + slot] = total
            if n < 2:
                return {}
        out: dict[str, int] = {}
        p1 = recent[-2]
        body = cur[BODY]
        white = cur[WHITE]

        # CDLENGULFING (lookback 2): the two real bodies of opposite colours, one end may match
        # (then 80).
        if white != p1[WHITE]:
            po, pc = p1[O], p1[C]
            if white:
                hit = (c >= po and o < pc) or (c > po and o <= pc)
            else:
                hit = (o >= pc and c < po) or (o > pc and c <= po)
            if hit:
                strength = 100 if o != pc and c != po else 80
                out["CDLENGULFING"] = strength if white else -strength
        if n < 10:
            return out

        # Lookback 10: doji family and marubozu, over the 10 candles before this one.
        doji = 0.1 * (totals[0] / 10)  # BodyDoji and ShadowVeryShort: same range, period, factor
        upper, lower = cur[UPPER], cur[LOWER]
        if body <= doji:
            out["CDLDOJI"] = 100
            if upper < doji and lower > doji:
                out["CDLDRAGONFLYDOJI"] = 100
            if upper > doji and lower < doji:
                out["CDLGRAVESTONEDOJI"] = 100
        if body > totals[1] / 10 and upper < doji and lower < doji:
            out["CDLMARUBOZU"] = 100 if white else -100

        if n >= 11:
            self._two_bar(out, cur, p1, totals)
            if n >= 12:
                p2 = recent[-3]
                self._three_bar(out, cur, p1, p2, totals)
                if n >= 13:
                    self._crows(out, cur, p1, p2, recent[0], totals)

        # Move the totals along, after this bar's decisions, as TA-Lib's loops do.
        if n < COUNT_CAP:
            for slot, field, new, old, start in _MOVES:
                if n >= start:
                    totals[slot] += _range_at(b, -new, field) - _range_at(b, -old, field)
        else:
            _move_all(totals, b)
        s[t:t + len(TOTALS)] = totals
        return out

    @staticmethod
    def _two_bar(out: dict[str, int], cur: tuple, p1: tuple, totals: list[float]) -> None:
        """Lookback 11: the hammers, shooting star, harami, piercing and dark cloud cover."""
        body = cur[BODY]
        short = totals[2] / 10  # BodyShort (and BodyLong of this candle)
        very_short = 0.1 * (totals[3] / 10)
        upper, lower = cur[UPPER], cur[LOWER]
        o, c = cur[O], cur[C]
        if body < short:
            # ShadowLong: a shadow longer than the real body.
            if lower > body and upper < very_short:
                bottom = o if o < c else c
                near = 0.2 * (totals[4] / 5)
                if bottom <= p1[L] + near:
                    out["CDLHAMMER"] = 100
                if bottom >= p1[H] - near:
                    out["CDLHANGINGMAN"] = -100
            if upper > body and lower < very_short:
                po, pc = p1[O], p1[C]
                if (o if o > c else c) < (po if po < pc else pc):
                    out["CDLINVERTEDHAMMER"] = 100
                elif (o if o < c else c) > (po if po > pc else pc):
                    out["CDLSHOOTINGSTAR"] = -100
        pbody = p1[BODY]
        if pbody > totals[5] / 10:  # previous candle long
            po, pc = p1[O], p1[C]
            ptop, pbottom = (pc, po) if p1[WHITE] else (po, pc)
            if body <= short:
                top, bottom = (c, o) if cur[WHITE] else (o, c)
                if top < ptop and bottom > pbottom:
                    out["CDLHARAMI"] = -100 if p1[WHITE] else 100
                elif top <= ptop and bottom >= pbottom:
                    out["CDLHARAMI"] = -80 if p1[WHITE] else 80
            if p1[WHITE]:
                if (not cur[WHITE] and o > p1[H] and c > po
                        and c < pc - pbody * DARK_CLOUD_PENETRATION):
                    out["CDLDARKCLOUDCOVER"] = -100
            elif (cur[WHITE] and body > short and o < p1[L] and c < po
                  and c > pc + pbody * 0.5):
                out["CDLPIERCING"] = 100

    @staticmethod
    def _three_bar(out: dict[str, int], cur: tuple, p1: tuple, p2: tuple,
                   totals: list[float]) -> None:
        """Lookback 12: morning and evening star, three white soldiers."""
        body = cur[BODY]
        c = cur[C]
        short3 = totals[8] / 10
        if body > short3 and p2[BODY] > totals[6] / 10 and p1[BODY] <= totals[7] / 10:
            p1o, p1c, p2o, p2c = p1[O], p1[C], p2[O], p2[C]
            if cur[WHITE]:
                if (not p2[WHITE] and (p1o if p1o > p1c else p1c) < (p2o if p2o < p2c else p2c)
                        and c > p2c + p2[BODY] * STAR_PENETRATION):
                    out["CDLMORNINGSTAR"] = 100
            elif (p2[WHITE] and (p1o if p1o < p1c else p1c) > (p2o if p2o > p2c else p2c)
                  and c < p2c - p2[BODY] * STAR_PENETRATION):
                out["CDLEVENINGSTAR"] = -100
        if (cur[WHITE] and p1[WHITE] and p2[WHITE]
                and p2[UPPER] < 0.1 * (totals[9] / 10)
                and p1[UPPER] < 0.1 * (totals[10] / 10)
                and cur[UPPER] < 0.1 * (totals[11] / 10)
                and c > p1[C] > p2[C]
                and p1[O] > p2[O] and p1[O] <= p2[C] + 0.2 * (totals[12] / 5)
                and cur[O] > p1[O] and cur[O] <= p1[C] + 0.2 * (totals[13] / 5)
                and p1[BODY] > p2[BODY] - 0.6 * (totals[12] / 5)
                and body > p1[BODY] - 0.6 * (totals[13] / 5)
                and body > short3):
            out["CDL3WHITESOLDIERS"] = 100

    @staticmethod
    def _crows(out: dict[str, int], cur: tuple, p1: tuple, p2: tuple, p3: tuple,
               totals: list[float]) -> None:
        """Lookback 13: three black crows after a white candle."""
        if (p3[WHITE] and not p2[WHITE] and not p1[WHITE] and not cur[WHITE]
                and p2[LOWER] < 0.1 * (totals[14] / 10)
                and p1[LOWER] < 0.1 * (totals[15] / 10)
                and cur[LOWER] < 0.1 * (totals[16] / 10)
                and p2[C] < p1[O] < p2[O] and p1[C] < cur[O] < p1[O]
                and p3[H] > p2[C] and p2[C] > p1[C] > cur[C]):
            out["CDL3BLACKCROWS"] = -100

    def snapshot(self) -> list[float]:
        """The state as ``SNAPSHOT_LEN`` floats (the slots' layout, see the class)."""
        return self.s[self.o:self._end]

    def check(self) -> None:
        """ValueError unless the slots hold a state of this layout: the version, a bar count in
        0..COUNT_CAP and a price for each kept bar."""
        s, o = self.s, self.o
        if s[o] != SNAPSHOT_VERSION:
            raise ValueError(f"pattern snapshot version {s[o]!r}, expected {SNAPSHOT_VERSION!r}")
        count = check_count(s[o + 1], COUNT_CAP, "pattern bar")
        kept = min(count, HISTORY)
        if any(v != v for v in s[self._end - 4 * kept:self._end]):
            raise ValueError("pattern snapshot has a missing price in its kept bars")
        self._recent.clear()
        for at in range(self._end - 4 * min(kept, 4), self._end, 4):
            self._recent.append(features(*s[at:at + 4]))

    @classmethod
    def restore(cls, snapshot: Iterable[float]) -> CandlePatterns:
        """The instance a ``snapshot`` was taken from; ValueError if it is not one of this layout."""
        values = list(snapshot)
        if len(values) != SNAPSHOT_LEN:
            raise ValueError(f"pattern snapshot has {len(values)} values, expected {SNAPSHOT_LEN}")
        patterns = cls()
        patterns.s[:] = values
        patterns.check()
        return patterns
