"""Alert rules: which signals become alerts, parsed and validated once at start.

One JSON document (``ALERTS_RULES``, inline or a file path)::

    {"rules": [
        {"name": "golden and death crosses", "types": ["sma_cross"], "cooldown_minutes": 60},
        {"name": "big volume", "types": ["volume_spike"], "symbols": ["IBM"], "min_strength": 5},
        {"name": "bullish engulfing", "types": ["candle_pattern"], "patterns": ["CDLENGULFING"],
         "directions": ["up"]},
        {"name": "15-minute MACD", "types": ["macd_cross"], "timeframes": ["15m"]}
    ]}

``patterns`` (TA-Lib function names, with ``candle_pattern`` only) and ``timeframes`` (``1m``, ``5m``,
``15m``) narrow a rule further; left out, a rule takes every pattern and every timeframe.

A signal alerts under the first rule that matches its symbol, type and direction and whose
``min_strength`` its strength reaches. The rule's ``cooldown_minutes`` then keeps further alerts of
the same (symbol, signal) quiet for that long in bar time. Pure: no I/O besides reading the file.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_RULES_FILE = Path(__file__).resolve().parent / "rules.json"
SYMBOL = re.compile(r"^[A-Z0-9.\-]{1,12}$")  # the bar contract's symbol
# Signal types and their directions, as the job emits them (README, "What the job emits").
DIRECTIONS: dict[str, tuple[str, ...]] = {
    "sma_cross": ("up", "down"), "macd_cross": ("up", "down"), "rsi_zone": ("up", "down"),
    "bb_breakout": ("up", "down"), "volume_spike": ("up",), "price_anomaly": ("up", "down"),
    "trend_change": ("up", "down", "flat"), "candle_pattern": ("up", "down"),
}
TIMEFRAMES = ("1m", "5m", "15m")
# The candlestick patterns the job computes (flink_job/core/patterns.py, PATTERN_NAMES).
PATTERNS = frozenset({
    "CDLDOJI", "CDLDRAGONFLYDOJI", "CDLGRAVESTONEDOJI", "CDLHAMMER", "CDLHANGINGMAN", "CDLINVERTEDHAMMER",
    "CDLSHOOTINGSTAR", "CDLMARUBOZU", "CDLENGULFING", "CDLHARAMI", "CDLPIERCING", "CDLDARKCLOUDCOVER",
    "CDLMORNINGSTAR", "CDLEVENINGSTAR", "CDL3WHITESOLDIERS", "CDL3BLACKCROWS",
})
RULE_KEYS = {"name", "types", "symbols", "directions", "min_strength", "cooldown_minutes", "patterns", "timeframes"}


class RuleError(ValueError):
    """The rules are invalid; the message names the rule and the key."""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    types: frozenset[str]
    symbols: frozenset[str] | None = None  # None: every symbol
    directions: frozenset[str] | None = None  # None: every direction
    min_strength: float = 0.0
    cooldown_ms: int = 0
    patterns: frozenset[str] | None = None  # None: every candlestick pattern
    timeframes: frozenset[str] | None = None  # None: every candle length

    def matches(self, symbol: str, signal_type: str, direction: str, strength: float | None,
                detail: str = "", timeframe: str = "1m") -> bool:
        return (signal_type in self.types
                and (self.symbols is None or symbol in self.symbols)
                and (self.directions is None or direction in self.directions)
                and (self.patterns is None or signal_type != "candle_pattern" or detail in self.patterns)
                and (self.timeframes is None or timeframe in self.timeframes)
                and (self.min_strength <= 0 or (strength is not None and strength >= self.min_strength)))


def strength(value: float | None) -> float | None:
    """A signal's strength is the magnitude of its value: the volume z-score of a volume_spike,
    the return z-score of a price_anomaly, the RSI of an rsi_zone, the SMA 20 - SMA 50 gap of an
    sma_cross, the MACD histogram of a macd_cross, the close of a bb_breakout, the relative slope of
    a trend_change."""
    return None if value is None or not math.isfinite(value) else abs(value)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]

    def match(self, symbol: str, signal_type: str, direction: str, value: float | None, detail: str = "",
              timeframe: str = "1m") -> Rule | None:
        """The first rule under which this signal alerts, or None."""
        level = strength(value)
        return next((r for r in self.rules if r.matches(symbol, signal_type, direction, level, detail, timeframe)),
                    None)


def load_rules(value: str | None) -> RuleSet:
    """``value`` is the JSON document itself (starts with ``{``), a path to a file holding it, or
    empty for the shipped defaults (``alerts/rules.json``)."""
    value = (value or "").strip()
    if not value:
        return parse_rules(DEFAULT_RULES_FILE.read_text(), str(DEFAULT_RULES_FILE))
    if value.startswith("{"):
        return parse_rules(value, "ALERTS_RULES")
    path = Path(value)
    try:
        text = path.read_text()
    except OSError as err:
        raise RuleError(f"ALERTS_RULES: cannot read the rules file {path} ({err.strerror}); give a JSON "
                        "document or the path of a file holding one") from None
    return parse_rules(text, str(path))


def parse_rules(text: str, source: str = "rules") -> RuleSet:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise RuleError(f"{source}: not JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    if not isinstance(document, dict) or set(document) != {"rules"} or not isinstance(document["rules"], list):
        raise RuleError(f'{source}: must be an object with one key, "rules", holding a list of rules')
    if not document["rules"]:
        raise RuleError(f"{source}: the rules list is empty; with no rule nothing would ever alert")
    rules = [_rule(raw, f"{source}: rule #{i + 1}") for i, raw in enumerate(document["rules"])]
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise RuleError(f"{source}: rule {rule.name!r}: another rule has the same name")
        seen.add(rule.name)
    return RuleSet(tuple(rules))


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: must be an object with at least a name and types")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RuleError(f"{where}: 'name' is required, a short text such as \"golden crosses\"")
    where = f"{where} {name!r}"
    unknown = sorted(set(raw) - RULE_KEYS)
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(RULE_KEYS)}")
    types = _names(raw, "types", where, required=True)
    bad = sorted(types - set(DIRECTIONS))
    if bad:
        raise RuleError(f"{where}: unknown signal type(s) {bad}; known: {sorted(DIRECTIONS)}")
    symbols = _names(raw, "symbols", where)
    if symbols is not None and (bad := sorted(s for s in symbols if not SYMBOL.match(s))):
        raise RuleError(f"{where}: invalid symbol(s) {bad}; symbols are upper case, e.g. IBM or BRK.B")
    directions = _names(raw, "directions", where)
    if directions is not None:
        possible = {d for t in types for d in DIRECTIONS[t]}
        if bad := sorted(directions - possible):
            raise RuleError(f"{where}: direction(s) {bad} never occur for {sorted(types)}; "
                            f"possible: {sorted(possible)}")
    patterns = _names(raw, "patterns", where)
    if patterns is not None:
        if "candle_pattern" not in types:
            raise RuleError(f"{where}: 'patterns' needs the type candle_pattern in 'types'")
        if bad := sorted(patterns - PATTERNS):
            raise RuleError(f"{where}: unknown candlestick pattern(s) {bad}; known: {sorted(PATTERNS)}")
    timeframes = _names(raw, "timeframes", where)
    if timeframes is not None and (bad := sorted(timeframes - set(TIMEFRAMES))):
        raise RuleError(f"{where}: unknown timeframe(s) {bad}; known: {list(TIMEFRAMES)}")
    return Rule(name.strip(), types, symbols, directions, _number(raw, "min_strength", where),
                round(_number(raw, "cooldown_minutes", where) * 60_000), patterns, timeframes)


def _names(raw: dict, key: str, where: str, required: bool = False) -> frozenset[str] | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise RuleError(f"{where}: '{key}' must be a non-empty list of names"
                        + ("" if required else " (leave it out to mean all)"))
    return frozenset(value)


def _number(raw: dict, key: str, where: str) -> float:
    value = raw.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise RuleError(f"{where}: '{key}' must be a number >= 0; got {value!r}")
    return float(value)
