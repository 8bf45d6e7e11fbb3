"""A local Alpha Vantage stand-in on a real socket, for the fetcher tests.

Serves ``GET /query?function=TIME_SERIES_INTRADAY...`` from per-symbol bar series (compact = latest
100 bars, full = all, ``month`` = that month) and lets a test queue one-shot replies per symbol
first: rate-limit and demo-key notices, ``Note``, ``Error Message``, a missing series, malformed
JSON, HTTP 500s, or a reply delayed past the client's read timeout. Every request's query is
recorded so tests can check what was asked (and that the key was sent), and so is when it arrived
at the socket and when its answer was written (``timings``): what rate and concurrency tests
measure. ``latency_s`` delays every series reply, as a real API's response time would.

It follows Alpha Vantage's entitlement rule against its own clock (``set_clock``/``advance``; the
real time when unset), in New York time: without ``entitlement`` it serves only bars of days before
today (historical); with ``entitlement=delayed`` also today's bars that ended at least 15 minutes
ago, its Meta Data saying "DATA DELAYED BY 15 MINUTES"; with ``entitlement=realtime`` today's bars
that ended by its clock. Bars after that are stored but not served yet, so a test can lay out a
whole session and let the clock uncover it. A key whose plan (``entitlements``) lacks the one asked
for gets Alpha Vantage's HTTP 200 notice instead. ``rebase`` scales a symbol's stored history, as
Alpha Vantage's adjusted series does after a split or dividend.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable
from urllib.parse import parse_qs, urlparse

from fetcher_lambda.alphavantage import resolve_zone
from fetcher_lambda.samples import Row, av_payload

COMPACT_BARS = 100
TEST_API_KEY = "TESTKEY-5e3c9d1a"  # made up; tests assert it never shows in logs or errors

RATE_LIMIT = {"Information": "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests "
                             "per day. Please subscribe to any of the premium plans at "
                             "https://www.alphavantage.co/premium/ to instantly remove all daily rate limits."}
NOTE = {"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute "
                "and 500 calls per day."}
ERROR_MESSAGE = {"Error Message": "Invalid API call. Please retry or visit the documentation "
                                  "(https://www.alphavantage.co/documentation/) for TIME_SERIES_INTRADAY."}
DEMO_KEY = {"Information": "The **demo** API key is for demo purposes only. Please claim your free API key at "
                           "(https://www.alphavantage.co/support/#api-key) to explore our full API offerings."}
PREMIUM = {"Information": "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to "
                          "any of the premium plans at https://www.alphavantage.co/premium/ to instantly "
                          "unlock all premium endpoints"}
MISSING_SERIES = {"Meta Data": {"1. Information": "Intraday (1min)", "2. Symbol": "IBM",
                                "6. Time Zone": "US/Eastern"}}
MALFORMED_JSON = b'{"Meta Data": {"1. Information": "Intraday (1min)'
ENTITLEMENT_LAG = {"realtime": timedelta(0), "delayed": timedelta(minutes=15)}
DELAYED_INFORMATION = "Intraday ({interval}) open, high, low, close prices and volume (DATA DELAYED BY 15 MINUTES)"


def entitlement_refused(entitlement: str) -> dict:
    """Alpha Vantage's answer when the key's plan lacks the entitlement asked for (HTTP 200)."""
    kind = "realtime" if entitlement == "realtime" else "15-minute delayed"
    return {"Information": f"Thank you for using Alpha Vantage! Your API key is not entitled to {kind} US market "
                           f"data (entitlement={entitlement}). This is a premium feature: please subscribe to a "
                           "premium plan with real-time or 15-minute delayed US stock data at "
                           "https://www.alphavantage.co/premium/ to access it."}


@dataclass(frozen=True)
class Reply:
    body: dict | bytes | str
    status: int = 200
    delay_s: float = 0.0

    def encoded(self) -> bytes:
        if isinstance(self.body, dict):
            return json.dumps(self.body, indent=4).encode()
        return self.body.encode() if isinstance(self.body, str) else self.body


def minute_rows(start_local: str, count: int, price: float = 100.0, step: float = 0.01) -> list[Row]:
    """``count`` consecutive 1-minute bars from ``start_local`` (``YYYY-MM-DD HH:MM``), simple values."""
    start = datetime.strptime(start_local, "%Y-%m-%d %H:%M")
    rows = []
    for i in range(count):
        o = round(price + i * step, 4)
        c = round(o + step, 4)
        rows.append(Row((start + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S"),
                        o, round(c + 0.02, 4), round(o - 0.02, 4), c, 1000 + i))
    return rows


@dataclass(frozen=True)
class Timing:
    """One request as the server saw it (``time.monotonic()`` of this process)."""

    symbol: str
    arrived: float
    answered: float


def max_in_flight(timings: Iterable[Timing]) -> int:
    """The most requests the server was handling at the same moment."""
    edges = sorted([(t.arrived, 1) for t in timings] + [(t.answered, -1) for t in timings])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def max_in_window(timings: Iterable[Timing], window_s: float) -> int:
    """The most requests that arrived within any half-open window of ``window_s`` seconds."""
    arrivals = sorted(t.arrived for t in timings)
    most, first = 0, 0
    for last, arrived in enumerate(arrivals):
        while arrivals[first] <= arrived - window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


class FakeAlphaVantage:
    def __init__(self, latency_s: float = 0.0, entitlements: Iterable[str] = ("realtime", "delayed")) -> None:
        self.latency_s = latency_s
        self.entitlements = set(entitlements)  # what the test key's plan includes
        self._now: datetime | None = None
        self._series: dict[str, list[Row]] = {}
        self._time_zone: dict[str, str] = {}
        self._queued: dict[str, deque[Reply]] = defaultdict(deque)
        self._delay: dict[str, float] = {}
        self._lock = threading.Lock()
        self.requests: list[dict[str, str]] = []
        self.request_clock: list[datetime] = []  # the server's clock at each request
        self.timings: list[Timing] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-alphavantage", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeAlphaVantage":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ---- what to serve ----

    def set_series(self, symbol: str, rows: Iterable[Row], time_zone: str = "US/Eastern",
                   delay_s: float = 0.0) -> None:
        with self._lock:
            self._series[symbol] = sorted(rows, key=lambda row: row.local_ts)
            self._time_zone[symbol] = time_zone
            self._delay[symbol] = delay_s

    def add_rows(self, symbol: str, rows: Iterable[Row]) -> None:
        with self._lock:
            self._series[symbol] = sorted([*self._series.get(symbol, []), *rows], key=lambda row: row.local_ts)

    def set_clock(self, now: datetime | None) -> None:
        """The server's time (timezone-aware); None: the real time."""
        with self._lock:
            self._now = now

    def advance(self, minutes: float = 1) -> datetime:
        with self._lock:
            self._now = (self._now or datetime.now(timezone.utc)) + timedelta(minutes=minutes)
            return self._now

    def now(self) -> datetime:
        with self._lock:
            return self._clock()

    def _clock(self) -> datetime:
        return self._now or datetime.now(timezone.utc)

    def rebase(self, symbol: str, factor: float, before_local_ts: str | None = None) -> None:
        """Scale the stored prices of bars before ``before_local_ts`` (all: None) by ``factor`` and
        their volumes by 1/factor, as Alpha Vantage's adjusted history after a split (2:1 = 0.5) or a
        dividend (e.g. 0.99)."""
        def scaled(row: Row) -> Row:
            if before_local_ts is not None and row.local_ts >= before_local_ts:
                return row
            o, h, l, c = (round(price * factor, 4) for price in (row.open, row.high, row.low, row.close))
            return Row(row.local_ts, o, h, l, c, int(round(row.volume / factor)))

        with self._lock:
            self._series[symbol] = [scaled(row) for row in self._series[symbol]]

    def queue(self, symbol: str, *replies: Reply | dict | bytes) -> None:
        """One-shot replies served (in order) before the symbol's series."""
        with self._lock:
            self._queued[symbol].extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def calls(self, symbol: str | None = None) -> list[dict[str, str]]:
        with self._lock:
            return [r for r in self.requests if symbol is None or r.get("symbol") == symbol]

    # ---- serving ----

    def reply_for(self, query: dict[str, str]) -> Reply:
        symbol = query.get("symbol", "")
        with self._lock:
            self.requests.append(query)
            self.request_clock.append(self._clock())
            if self._queued[symbol]:
                return self._queued[symbol].popleft()
            rows = self._series.get(symbol)
            if rows is None or query.get("function") != "TIME_SERIES_INTRADAY" or not query.get("apikey"):
                return Reply(ERROR_MESSAGE)
            entitlement = query.get("entitlement")
            if entitlement is not None and entitlement not in self.entitlements:
                return Reply(entitlement_refused(entitlement))
            rows = self._served(rows, self._time_zone[symbol], entitlement, query.get("interval", "1min"))
            if "month" in query:
                rows = [row for row in rows if row.local_ts.startswith(query["month"])]
            elif query.get("outputsize", "compact") == "compact":
                rows = rows[-COMPACT_BARS:]
            size = "Full size" if query.get("outputsize") == "full" else "Compact"
            payload = av_payload(symbol, rows, query.get("interval", "1min"), size, self._time_zone[symbol])
            if entitlement == "delayed":
                payload["Meta Data"]["1. Information"] = DELAYED_INFORMATION.format(
                    interval=query.get("interval", "1min"))
            return Reply(payload, delay_s=self._delay.get(symbol, 0.0) or self.latency_s)

    def _served(self, rows: list[Row], time_zone: str, entitlement: str | None, interval: str) -> list[Row]:
        """The rows the entitlement may see at the server's clock: days before today, and of today
        (historical: none) those that ended ``ENTITLEMENT_LAG`` or more before the clock."""
        local_now = self._clock().astimezone(resolve_zone(time_zone))
        today = local_now.strftime("%Y-%m-%d")
        if entitlement in ENTITLEMENT_LAG:
            length = timedelta(minutes=int(interval.removesuffix("min") or 1))
            last_start = (local_now - ENTITLEMENT_LAG[entitlement] - length).strftime("%Y-%m-%d %H:%M:%S")
        else:
            last_start = ""  # no bar of today
        return [row for row in rows if row.local_ts[:10] < today or (row.local_ts[:10] == today
                                                                   and row.local_ts <= last_start)]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parsed = urlparse(self.path)
                if parsed.path != "/query":
                    self.send_error(404)
                    return
                arrived = time.monotonic()
                query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
                reply = fake.reply_for(query)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                body = reply.encoded()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (read timeout): expected in the slow-reply tests
                with fake._lock:
                    fake.timings.append(Timing(query.get("symbol", ""), arrived, time.monotonic()))

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
                pass  # request lines carry the API key; tests check it appears nowhere

        return Handler
