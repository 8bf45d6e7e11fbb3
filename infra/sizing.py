"""Does the OpenSearch domain's storage hold the symbols for their retention? ``make deploy`` asks.

    python -m infra.sizing --symbols IBM,AAPL [--volume-gib 10] [--nodes 1] [--retention "stock-dlq=14"]

Prints a warning (and exits 0: the deploy goes on) when the data kept under the retention policies
does not fit below the disk watermarks. The figures per symbol-day were measured through the real
job with the real mappings (``tests/test_lifecycle_e2e.py`` checks them on every run).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from flink_job.core.index_lifecycle import BY_NAME, RetentionError, longest_period_days, parse_retention

TEMPLATE = Path(__file__).resolve().parent / "cloudformation.yaml"
# Bytes on disk (primary, merged segments) per document, measured through the real job with the
# real mappings and rounded up (~700, ~130, 400-560 and ~490 measured; a candle carries its
# indicators), and documents per symbol and trading day at most: every minute 04:00-20:00 New York
# (Alpha Vantage's extended hours), about one signal every three bars, and the rollup windows of
# those 16 hours. Dead letters are left out: a healthy feed has next to none.
# A candle's settled size depends on how many documents each refresh wrote: a merge copies a small
# segment's compressed block as it is. The same candles take ~530 bytes at 20 a refresh and ~720 at
# 4, so the rollups' figure holds from about 20 a refresh up: a minute's bars of 20 or more symbols
# arrive together. Fewer symbols write fewer a refresh, but need far less than the smallest volume.
BYTES_PER_DOCUMENT = {"stock-indicators": 750, "stock-signals": 150, "stock-bars-5m": 650, "stock-bars-15m": 650}
DOCUMENTS_PER_SYMBOL_DAY = {"stock-indicators": 960, "stock-signals": 320, "stock-bars-5m": 192,
                            "stock-bars-15m": 64}
BYTES_PER_SYMBOL_DAY = {f: BYTES_PER_DOCUMENT[f] * DOCUMENTS_PER_SYMBOL_DAY[f] for f in BYTES_PER_DOCUMENT}
TRADING_DAYS_PER_YEAR = 252
# Amazon OpenSearch Service keeps 20% of each node's volume (at most 20 GiB) for itself, and stops
# placing shards on a node above the 85% low watermark (at 95% it blocks writes).
RESERVED_SHARE, RESERVED_MAX_GIB, LOW_WATERMARK = 0.2, 20.0, 0.85
GIB = 1024 ** 3


@dataclass(frozen=True)
class Sizing:
    needed_gib: float
    usable_gib: float

    @property
    def fits(self) -> bool:
        return self.needed_gib <= self.usable_gib


def kept_trading_days(family: str, retention_days: int) -> float:
    """Trading days an index family holds at most: retention plus its longest period (an index goes
    only when its whole period has expired), counted in trading days."""
    return (retention_days + longest_period_days(BY_NAME[family])) * TRADING_DAYS_PER_YEAR / 365


def needed_gib(symbols: int, retention: Mapping[str, int], replicas: int = 0) -> float:
    per_copy = sum(symbols * per_day * kept_trading_days(family, retention[family])
                   for family, per_day in BYTES_PER_SYMBOL_DAY.items())
    return per_copy * (1 + replicas) / GIB


def usable_gib(volume_gib: float, nodes: int) -> float:
    return nodes * (volume_gib - min(RESERVED_SHARE * volume_gib, RESERVED_MAX_GIB)) * LOW_WATERMARK


def check(symbols: int, volume_gib: float, nodes: int, retention: Mapping[str, int]) -> Sizing:
    """Data kept for ``symbols`` (one replica per shard on more than one node) against the storage."""
    return Sizing(needed_gib(symbols, retention, replicas=1 if nodes > 1 else 0), usable_gib(volume_gib, nodes))


def smallest_volume_gib(symbols: int, nodes: int, retention: Mapping[str, int]) -> int:
    """The smallest whole ``OpenSearchVolumeSize`` (at least the template's minimum, 10) that fits."""
    volume = 10
    while not check(symbols, volume, nodes, retention).fits:
        volume += 1
    return volume


def template_default(parameter: str) -> str:
    """A parameter's default in the stack template (what an unset deploy setting means)."""
    match = re.search(rf"^  {parameter}:\n(?:    .*\n)*?    Default: (.+)$", TEMPLATE.read_text(), re.MULTILINE)
    if not match:
        raise KeyError(f"{parameter} has no default in {TEMPLATE}")
    return match.group(1).strip().strip('"')


def warning(symbols: list[str], volume_gib: float, nodes: int, retention: Mapping[str, int]) -> str | None:
    sizing = check(len(symbols), volume_gib, nodes, retention)
    if sizing.fits:
        return None
    return (f"warning: {len(symbols)} symbols kept {retention['stock-indicators']} days need about "
            f"{sizing.needed_gib:.1f} GiB in OpenSearch, but {nodes} x {volume_gib:g} GiB leaves {sizing.usable_gib:.1f} "
            f"GiB below the disk watermark: at 95% OpenSearch blocks every write. Deploy with "
            f"OPENSEARCH_VOLUME_SIZE={smallest_volume_gib(len(symbols), nodes, retention)} or shorter RETENTION_DAYS.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check the OpenSearch volume against symbols and retention")
    parser.add_argument("--symbols", default="", help="comma list (default: the template's)")
    parser.add_argument("--volume-gib", default="", help="GiB per data node (default: the template's)")
    parser.add_argument("--nodes", default="", help="data nodes (default: the template's)")
    parser.add_argument("--retention", default="", help="family=days,... overrides of the defaults")
    args = parser.parse_args(argv)
    try:
        retention = parse_retention(args.retention)
    except RetentionError as err:
        print(f"error: RETENTION_DAYS: {err}", file=sys.stderr)
        return 2
    symbols = (args.symbols or template_default("Symbols")).split(",")
    volume = float(args.volume_gib or template_default("OpenSearchVolumeSize"))
    nodes = int(args.nodes or template_default("OpenSearchInstanceCount"))
    message = warning(symbols, volume, nodes, retention)
    print(message or f"storage: {len(symbols)} symbols fit in {nodes} x {volume:g} GiB "
                     f"({check(len(symbols), volume, nodes, retention).needed_gib:.2f} GiB kept)",
          file=sys.stderr if message else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
