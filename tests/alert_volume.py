"""How many alerts the default rules send on the shipped sample data, per symbol and trading day.

    .venv/bin/python -m tests.alert_volume [RULES]

The job's pure core (``SymbolTracker``, as the Flink operator uses it) turns the sample bars into
enriched records; the alerts' own record parser and rule engine pick the signals that alert, and
the cooldown is applied as the alerts table applies it (per symbol and type, in bar time).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import datetime

from alerts.message import NEW_YORK
from alerts.records import parse_record
from alerts.rules import RuleSet, load_rules
from fetcher_lambda.replay import load_bars
from flink_job.core.analyzer import AnalyticsSettings
from flink_job.core.bars import validate_record
from flink_job.core.symbol_state import SymbolTracker
from tests.bar_data import stream_record


def enriched_sample_records() -> list[bytes]:
    """The enriched records of the sample data set, as JSON bytes, in stream order."""
    trackers: dict[str, SymbolTracker] = {}
    out = []
    for bar in load_bars():
        parsed = validate_record(bar.to_record(), now_ms=2**62)
        tracker = trackers.setdefault(parsed.symbol, SymbolTracker(AnalyticsSettings()))
        _, enriched = tracker.offer(parsed)
        if enriched is not None:
            out.append(json.dumps(stream_record(tracker, enriched)).encode())
    return out


def alerts_per_symbol_day(rules: RuleSet, records: list[bytes]) -> tuple[Counter, Counter]:
    """(alerts, signals) per (symbol, New York date)."""
    last_sent: dict[tuple[str, str], int] = {}
    alerts: Counter = Counter()
    signals: Counter = Counter()
    for data in records:
        record = parse_record(data)
        day = datetime.fromtimestamp(record.ts_ms / 1000, NEW_YORK).date().isoformat()
        for signal in record.signals:
            signals[(record.symbol, day)] += 1
            rule = rules.match(record.symbol, signal.type, signal.direction, signal.value)
            key = (record.symbol, signal.type)
            if rule is None or (key in last_sent and last_sent[key] > record.ts_ms - rule.cooldown_ms):
                continue
            last_sent[key] = record.ts_ms
            alerts[(record.symbol, day)] += 1
    return alerts, signals


def main(argv: list[str]) -> int:
    rules = load_rules(argv[0] if argv else None)
    alerts, signals = alerts_per_symbol_day(rules, enriched_sample_records())
    for key in sorted(signals):
        print(f"{key[0]:6} {key[1]}  signals {signals[key]:4}  alerts {alerts[key]:3}")
    days = len(signals)
    print(f"{days} symbol-days: {sum(signals.values()) / days:.0f} signals and {sum(alerts.values()) / days:.1f} "
          f"alerts per symbol and day on average, at most {max(alerts.values(), default=0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
