"""Settings of the fetcher, read once from the environment into a frozen dataclass.

Why one place: the Lambda and the local entry point must behave identically, and a typo in an
environment variable should fail at start-up with a message naming the variable, not minutes later
deep inside a request. The Alpha Vantage key is held in a ``Secret`` so that printing the settings
(or an exception that includes them) never shows it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from lambda_kit.env import ConfigError, with_renamed
from lambda_kit.env import boolean as _bool
from lambda_kit.env import choice as _choice
from lambda_kit.env import number as _number
from lambda_kit.env import optional as _optional
from lambda_kit.env import text as _text
from lambda_kit.renamed import FETCHER as RENAMED
from lambda_kit.secret import Secret

__all__ = ["ConfigError", "INTERVALS", "OUTPUT_SIZES", "SYMBOL_PATTERN", "Secret", "Settings"]

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9.\-]{1,12}$")
INTERVALS = ("1min", "5min", "15min", "30min", "60min")
OUTPUT_SIZES = ("compact", "full")
# Alpha Vantage's intraday entitlements: what the call asks for with ``entitlement=`` (historical: none).
ENTITLEMENTS = ("realtime", "delayed", "historical")
# How long after a bar's end Alpha Vantage serves it under each entitlement (historical: next day).
ENTITLEMENT_LAG_S = {"realtime": 0, "delayed": 15 * 60, "historical": 0}


@dataclass(frozen=True)
class Settings:
    symbols: tuple[str, ...] = ("IBM",)
    interval: str = "1min"
    extended_hours: bool = True
    adjusted: bool = True
    outputsize: str = "compact"
    stream_name: str = "stock_stream_data"
    cursor_table: str = "stock_fetcher_cursor"
    base_url: str = "https://www.alphavantage.co"
    kinesis_endpoint_url: str | None = None
    dynamodb_endpoint_url: str | None = None
    region: str = "us-east-1"
    secret_arn: str | None = None
    api_key: Secret | None = field(default=None, repr=False)
    # HTTP to Alpha Vantage: per-attempt timeouts and urllib3 Retry parameters.
    connect_timeout_s: float = 3.05
    read_timeout_s: float = 10.0
    http_retries: int = 3
    backoff_factor_s: float = 0.5
    backoff_max_s: float = 8.0
    backoff_jitter_s: float = 0.5
    # Alpha Vantage calls per minute for this API key (5: the free tier; premium plans 75 to 1,200),
    # shared by all symbol groups; and how many requests one invocation keeps in flight at most.
    calls_per_minute: float = 5.0
    fetch_concurrency: int = 16
    # A call starts only if a read of at least this long (or read_timeout_s if shorter) still fits.
    min_read_s: float = 2.0
    # Kinesis PutRecords: attempts per bar in a row before its symbol stops for this run.
    put_attempts: int = 5
    put_backoff_base_s: float = 0.1
    put_backoff_max_s: float = 2.0
    # Time kept back from the invocation's deadline after a symbol's fetch: its put (a Kinesis call
    # takes at most put_call_s, the fetcher's client's timeouts: aws.KINESIS_CALL_S), its cursor
    # commit and the summary.
    safety_margin_s: float = 5.0
    put_call_s: float = 4.0
    # Local runs have no Lambda deadline: this is their per-run time budget (a --month backfill's
    # is the longer one: it puts one bar per symbol per PutRecords round trip).
    local_budget_s: float = 55.0
    backfill_budget_s: float = 3600.0
    # Refetch with outputsize=full when the compact window no longer reaches the cursor.
    catch_up: bool = True
    # Which intraday data the key's plan serves: ``delayed`` (15 minutes behind, the cheapest plan
    # that shows today's market) by default; ``realtime`` needs the realtime add-on; ``historical``
    # (no entitlement sent) never serves today's bars.
    entitlement: str = "delayed"
    # Alpha Vantage calls per day for this key (0: no daily cap): each symbol's share is spread over
    # the session (see ``quota``).
    calls_per_day: int = 0
    # Fetch whatever the clock says (tests, demos on a weekend); normally only while the market can
    # produce bars (see ``market_hours``).
    ignore_market_hours: bool = False
    log_level: str = "INFO"

    @property
    def series_key(self) -> str:
        """The key of the bars in Alpha Vantage's intraday response, e.g. ``Time Series (1min)``."""
        return f"Time Series ({self.interval})"

    @property
    def entitlement_lag_s(self) -> int:
        """Seconds between a bar's end and Alpha Vantage serving it under ``entitlement``."""
        return ENTITLEMENT_LAG_S[self.entitlement]

    @property
    def interval_s(self) -> int:
        """The bar length in seconds (``1min`` = 60)."""
        return int(self.interval.removesuffix("min")) * 60

    @property
    def min_symbol_time_s(self) -> float:
        """Time a symbol needs at least: a connect, a short read and the margin for put and cursor."""
        return self.connect_timeout_s + min(self.read_timeout_s, self.min_read_s) + self.safety_margin_s

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = with_renamed(os.environ if environ is None else environ, RENAMED)
        defaults = cls()
        settings = cls(
            symbols=_symbols(env.get("SYMBOLS"), defaults.symbols),
            interval=_choice(env, "AV_INTERVAL", INTERVALS, defaults.interval),
            extended_hours=_bool(env, "AV_EXTENDED_HOURS", defaults.extended_hours),
            adjusted=_bool(env, "AV_ADJUSTED", defaults.adjusted),
            outputsize=_choice(env, "AV_OUTPUTSIZE", OUTPUT_SIZES, defaults.outputsize),
            stream_name=_text(env, "BARS_STREAM_NAME", defaults.stream_name),
            cursor_table=_text(env, "CURSOR_TABLE_NAME", defaults.cursor_table),
            base_url=_text(env, "AV_BASE_URL", defaults.base_url).rstrip("/"),
            kinesis_endpoint_url=_optional(env, "KINESIS_ENDPOINT_URL"),
            dynamodb_endpoint_url=_optional(env, "DYNAMODB_ENDPOINT_URL"),
            region=_optional(env, "AWS_REGION") or _optional(env, "AWS_DEFAULT_REGION") or defaults.region,
            secret_arn=_optional(env, "AV_SECRET_ARN"),
            api_key=Secret(key) if (key := _optional(env, "AV_API_KEY")) else None,
            connect_timeout_s=_number(env, "AV_CONNECT_TIMEOUT_SECONDS", defaults.connect_timeout_s),
            read_timeout_s=_number(env, "AV_READ_TIMEOUT_SECONDS", defaults.read_timeout_s),
            http_retries=int(_number(env, "AV_RETRIES", defaults.http_retries)),
            calls_per_minute=_number(env, "AV_CALLS_PER_MINUTE", defaults.calls_per_minute, minimum=0.01),
            fetch_concurrency=int(_number(env, "FETCHER_CONCURRENCY", defaults.fetch_concurrency, minimum=1)),
            put_attempts=int(_number(env, "FETCHER_PUT_ATTEMPTS", defaults.put_attempts, minimum=1)),
            local_budget_s=_number(env, "FETCHER_LOCAL_BUDGET_SECONDS", defaults.local_budget_s, minimum=1),
            backfill_budget_s=_number(env, "FETCHER_BACKFILL_BUDGET_SECONDS", defaults.backfill_budget_s, minimum=1),
            catch_up=_bool(env, "FETCHER_CATCH_UP", defaults.catch_up),
            entitlement=_choice(env, "AV_ENTITLEMENT", ENTITLEMENTS, defaults.entitlement),
            calls_per_day=int(_number(env, "AV_CALLS_PER_DAY", defaults.calls_per_day, integer=True)),
            ignore_market_hours=_bool(env, "FETCHER_IGNORE_MARKET_HOURS", defaults.ignore_market_hours),
            log_level=_choice(env, "LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), defaults.log_level,
                              normalise=str.upper),
        )
        if not settings.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"AV_BASE_URL must start with http:// or https://, e.g. https://www.alphavantage.co; "
                f"got {settings.base_url!r}"
            )
        return settings


def _symbols(raw: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if raw is None or not raw.strip():
        return default
    symbols = tuple(dict.fromkeys(s.strip().upper() for s in raw.split(",") if s.strip()))
    bad = [s for s in symbols if not SYMBOL_PATTERN.match(s)]
    if bad or not symbols:
        raise ConfigError(
            f"SYMBOLS must be a comma-separated list of ticker symbols like IBM,AAPL,MSFT; invalid: {bad or raw!r}"
        )
    return symbols
