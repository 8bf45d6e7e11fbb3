"""Alpha Vantage TIME_SERIES_INTRADAY: the request, the classification of its answer, the parsing.

Alpha Vantage answers almost everything with HTTP 200: a rate-limit notice (``Information`` or
``Note``), a demo-key or premium-only notice, an ``Error Message`` for a bad symbol, all look like
success at the HTTP level, and so does a plan that lacks the ``entitlement`` a live call asks for
(``AV_ENTITLEMENT``: without one Alpha Vantage serves only the days before today). ``classify`` tells
data from those notices; ``parse_intraday`` turns the
data into contract bars. Both are pure (no I/O) so they are tested without a server and reused by the
replay of the shipped sample files. ``AlphaVantageClient`` is the thin I/O shell: requests with
urllib3's ``Retry`` (jittered backoff on connection errors and 5xx) capped by the invocation deadline,
every attempt paced by the calls-per-minute budget (``call_budget``), one session per thread.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from .call_budget import CallBudget
from .config import Settings
from .contract import Bar
from .deadline import Deadline
from .logs import install_redaction, redact

DEFAULT_TIME_ZONE = "US/Eastern"
# Legacy names Alpha Vantage uses, for systems whose tz database omits the "backward" links.
ZONE_ALIASES = {
    "US/Eastern": "America/New_York", "US/Central": "America/Chicago",
    "US/Mountain": "America/Denver", "US/Pacific": "America/Los_Angeles", "UTC": "Etc/UTC",
}
_LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"
_FIELDS = ("1. open", "2. high", "3. low", "4. close")
_VOLUME = "5. volume"
RETRY_STATUSES = frozenset({500, 502, 503, 504})

# What an operator should do about each kind of failure (goes into the warning log line).
HINTS = {
    "rate_limit": "Alpha Vantage rate limit reached: reduce SYMBOLS or the schedule, or use a premium key",
    "demo_key": "the demo key only serves IBM samples: put a real key in the secret (AV_SECRET_ARN)",
    "premium_only": "this request needs a premium plan (e.g. realtime or extended data): check the key's plan",
    "entitlement_refused": "the key's plan does not include the AV_ENTITLEMENT asked for: set AV_ENTITLEMENT to "
                           "what the plan includes (delayed: a premium plan; realtime: the realtime add-on; "
                           "historical: any key, but never today's bars), or upgrade the plan",
    "api_error": "Alpha Vantage rejected the call: check the symbol, AV_INTERVAL and the API key",
    "information": "Alpha Vantage sent a notice instead of data: read its text",
    "note": "Alpha Vantage sent a note instead of data: read its text",
    "missing_series": "the response has no time series for AV_INTERVAL: check the symbol and AV_INTERVAL",
    "malformed_json": "the response is not JSON: Alpha Vantage may be degraded, it is retried next run",
    "malformed_series": "the time series is not shaped as expected: the response is ignored",
    "unknown_time_zone": "Meta Data names a time zone this system does not know: install tz data",
    "http_status": "Alpha Vantage answered with an HTTP error: it is retried next run",
    "timeout": "Alpha Vantage did not answer in time (AV_READ_TIMEOUT_SECONDS): it is retried next run",
    "connection_error": "Alpha Vantage could not be reached: check network/AV_BASE_URL",
    "time_short": "no call of AV_CALLS_PER_MINUTE was left before the deadline: fetched next run; "
                  "raise the plan's budget or split SYMBOLS into more groups",
}


class FetchError(Exception):
    """No usable bars for a symbol. ``kind`` is a stable code (a key of ``HINTS``)."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail

    @property
    def hint(self) -> str:
        return HINTS.get(self.kind, "")


@dataclass(frozen=True)
class Series:
    """Parsed bars of one response, oldest first, and how many entries were unusable."""

    bars: tuple[Bar, ...]
    invalid: int = 0
    invalid_example: str = ""


# ---- pure core -------------------------------------------------------------------------------------

def request_params(settings: Settings, symbol: str, outputsize: str | None = None,
                   month: str | None = None) -> dict[str, str]:
    """Query parameters of a TIME_SERIES_INTRADAY call, without the API key."""
    params = {
        "function": "TIME_SERIES_INTRADAY",
        "symbol": symbol,
        "interval": settings.interval,
        "outputsize": "full" if month else (outputsize or settings.outputsize),
        "extended_hours": str(settings.extended_hours).lower(),
        "adjusted": str(settings.adjusted).lower(),
        "datatype": "json",
    }
    if month:
        params["month"] = month
    else:
        entitlement = sent_entitlement(settings)
        if entitlement:
            params["entitlement"] = entitlement
    return params


def sent_entitlement(settings: Settings) -> str | None:
    """The ``entitlement`` a live call sends: none for ``historical`` (Alpha Vantage's default)."""
    return None if settings.entitlement == "historical" else settings.entitlement


# Words of a notice refusing an entitlement ("... your plan does not include realtime data ...").
_ENTITLEMENT_WORDS = ("entitlement", "premium", "plan", "realtime", "real-time", "delayed")


def _notice_kind(key: str, text: str, entitlement: str | None = None) -> str:
    lowered = text.lower()
    if "rate limit" in lowered or "call frequency" in lowered or "requests per day" in lowered:
        return "rate_limit"
    if "demo" in lowered:
        return "demo_key"
    # With an entitlement asked for, a premium or plan notice answers that: the call is otherwise free.
    if entitlement and any(word in lowered for word in _ENTITLEMENT_WORDS):
        return "entitlement_refused"
    if "premium" in lowered:
        return "premium_only"
    return "note" if key == "Note" else "information"


def classify(payload: Any, series_key: str, entitlement: str | None = None) -> FetchError | None:
    """``None`` when ``payload`` carries the series, else the reason it is not data.

    ``entitlement``: what the call asked for; a plan notice then means the plan lacks it.
    """
    if not isinstance(payload, dict):
        return FetchError("malformed_json", "the response is not a JSON object")
    if "Error Message" in payload:
        return FetchError("api_error", str(payload["Error Message"])[:300])
    for key in ("Information", "Note"):
        if key in payload and series_key not in payload:
            text = str(payload[key])
            return FetchError(_notice_kind(key, text, entitlement), text[:300])
    if series_key not in payload:
        return FetchError("missing_series", f"no {series_key!r}; keys: {sorted(payload)[:5]}")
    if not isinstance(payload[series_key], dict):
        return FetchError("malformed_series", f"{series_key!r} is not an object")
    return None


def resolve_zone(name: str) -> ZoneInfo:
    for candidate in (name, ZONE_ALIASES.get(name)):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    raise FetchError("unknown_time_zone", name)


def to_utc(local: str, zone: ZoneInfo) -> str:
    """Alpha Vantage's naive local ``YYYY-MM-DD HH:MM:SS`` to the contract's UTC ``...Z``.

    zoneinfo applies the offset in force at that instant, so bars either side of a DST change get
    their own offset (09:30 New York is 14:30Z in winter and 13:30Z in summer).
    """
    naive = datetime.strptime(local, _LOCAL_FORMAT)
    return naive.replace(tzinfo=zone).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _price(values: dict, field: str) -> float:
    price = float(values[field])
    if not math.isfinite(price):
        raise ValueError(f"{field} is not finite")
    return price


def _volume(values: dict) -> int:
    volume = float(values[_VOLUME])
    if not math.isfinite(volume) or not volume.is_integer() or volume < 0:
        raise ValueError(f"{_VOLUME} is not a non-negative integer")
    return int(volume)


def parse_bar(symbol: str, interval: str, local_ts: str, values: Any, zone: ZoneInfo) -> Bar:
    """One series entry to a ``Bar``; ``ValueError``/``KeyError``/``TypeError`` when malformed."""
    if not isinstance(values, dict):
        raise TypeError("bar values are not an object")
    o, h, l, c = (_price(values, f) for f in _FIELDS)
    return Bar(symbol, to_utc(local_ts, zone), o, h, l, c, _volume(values), interval)


def parse_intraday(payload: Any, symbol: str, interval: str, entitlement: str | None = None) -> Series:
    """An Alpha Vantage intraday response to contract bars, oldest first.

    Raises ``FetchError`` when the payload is not data. Single malformed entries are dropped and
    counted rather than failing the symbol: the rest of the window is still good data. Only the
    Meta Data's time zone is read: its other entries differ between entitlements (a delayed answer's
    "1. Information" says "DATA DELAYED BY 15 MINUTES") and between releases.
    """
    series_key = f"Time Series ({interval})"
    problem = classify(payload, series_key, entitlement)
    if problem is not None:
        raise problem
    meta = payload.get("Meta Data")
    zone_name = meta.get("6. Time Zone", DEFAULT_TIME_ZONE) if isinstance(meta, dict) else DEFAULT_TIME_ZONE
    zone = resolve_zone(str(zone_name))
    bars: list[Bar] = []
    invalid, example = 0, ""
    for local_ts, values in payload[series_key].items():
        try:
            bars.append(parse_bar(symbol, interval, local_ts, values, zone))
        except (KeyError, TypeError, ValueError) as err:
            invalid += 1
            example = example or f"{local_ts!r}: {type(err).__name__}: {err}"
    bars.sort(key=lambda bar: bar.ts)
    return Series(tuple(bars), invalid, example[:200])


def parse_response(body: bytes | str, symbol: str, interval: str, entitlement: str | None = None) -> Series:
    """Raw response body to bars; ``FetchError('malformed_json')`` when it does not decode."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise FetchError("malformed_json", "the body is not valid JSON") from None
    return parse_intraday(payload, symbol, interval, entitlement)


# ---- I/O shell -------------------------------------------------------------------------------------

class DeadlineRetry(Retry):
    """urllib3 ``Retry`` that also stops once the next attempt could not start before a deadline,
    takes every retry's slot from the calls-per-minute budget (a retried request is a call too),
    and counts the retries it allowed (``counter`` is shared by the copies urllib3 makes)."""

    def __init__(self, *args: Any, deadline: float | None = None, counter: list[int] | None = None,
                 budget: CallBudget | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self.counter = counter if counter is not None else [0]
        self.budget = budget

    def new(self, **kwargs: Any) -> "DeadlineRetry":
        return super().new(**{"deadline": self.deadline, "counter": self.counter, "budget": self.budget,
                              **kwargs})

    def is_exhausted(self) -> bool:
        if super().is_exhausted():
            return True
        if self.deadline is None:
            return False
        earliest = time.monotonic() if self.budget is None else self.budget.next_slot()
        return earliest + self.get_backoff_time() >= self.deadline

    def increment(self, *args: Any, **kwargs: Any) -> "DeadlineRetry":
        retry = super().increment(*args, **kwargs)
        self.counter[0] += 1
        return retry

    def sleep(self, response: Any = None) -> None:
        super().sleep(response)
        if self.budget is not None and not self.budget.acquire(latest=self.deadline or float("inf")):
            # Other threads took the slots ``is_exhausted`` counted on: give up like an exhausted retry.
            raise FetchError("time_short", "no call left in the budget before the deadline")


def _request_error_kind(err: requests.RequestException) -> str:
    reason = err.args[0] if err.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    if isinstance(err, requests.Timeout) or isinstance(reason, ReadTimeoutError):
        return "timeout"
    if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
        return "timeout"
    return "connection_error"


class CallTally(Protocol):
    """Where ``fetch`` adds the calls and retries it made (e.g. a symbol's result)."""

    api_calls: int
    http_retries: int


class AlphaVantageClient:
    """Fetches intraday series; one instance per invocation (it holds its deadline and budget).

    Safe to use from several threads at once: each thread gets its own ``requests`` session (and
    so its own connections and retry counter), and every call, retries included, first takes a
    slot from the shared ``CallBudget``.
    """

    def __init__(self, settings: Settings, api_key: str, deadline: Deadline, budget: CallBudget | None = None):
        install_redaction()
        self.settings = settings
        self.deadline = deadline
        self.budget = budget or CallBudget(settings.calls_per_minute)
        self._api_key = api_key
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[tuple[requests.Session, list[int]]] = []
        self._calls = 0
        # The last moment a call may start: one connect, a short read and the margin must still fit.
        self._last_call_start = deadline.expires_at - settings.min_symbol_time_s

    @property
    def api_calls(self) -> int:
        with self._lock:
            return self._calls

    @property
    def http_retries(self) -> int:
        with self._lock:
            return sum(counter[0] for _, counter in self._sessions)

    def close(self) -> None:
        with self._lock:
            for session, _ in self._sessions:
                session.close()

    def _thread_session(self) -> tuple[requests.Session, list[int]]:
        """This thread's session and retry counter, created on first use."""
        if not hasattr(self._local, "session"):
            settings = self.settings
            counter = [0]
            session = requests.Session()
            session.headers["User-Agent"] = "stock-analytics-fetcher/1.0"
            retry = DeadlineRetry(
                total=settings.http_retries, connect=settings.http_retries, read=settings.http_retries,
                status=settings.http_retries, other=0, redirect=2,
                status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET"}),
                backoff_factor=settings.backoff_factor_s, backoff_max=settings.backoff_max_s,
                backoff_jitter=settings.backoff_jitter_s,
                # A Retry-After header could ask for longer than the invocation has left.
                respect_retry_after_header=False, raise_on_status=False,
                deadline=self.deadline.expires_at - settings.safety_margin_s - settings.connect_timeout_s
                - settings.read_timeout_s,
                counter=counter, budget=self.budget,
            )
            adapter = HTTPAdapter(max_retries=retry)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session, self._local.counter = session, counter
            with self._lock:
                self._sessions.append((session, counter))
        return self._local.session, self._local.counter

    def fetch(self, symbol: str, outputsize: str | None = None, month: str | None = None,
              tally: CallTally | None = None) -> Series:
        """The symbol's bars, oldest first; raises ``FetchError`` (never with the key in it).

        ``FetchError('time_short')``: no slot of the budget is left early enough to finish a call
        before the deadline; nothing was sent.
        """
        settings = self.settings
        session, counter = self._thread_session()
        if not self.budget.acquire(latest=self._last_call_start):
            raise FetchError("time_short", "no call left in the budget before the deadline")
        params = {**request_params(settings, symbol, outputsize, month), "apikey": self._api_key}
        read_timeout = min(settings.read_timeout_s,
                           max(0.1, self.deadline.remaining_s() - settings.safety_margin_s))
        retries_before = counter[0]
        with self._lock:
            self._calls += 1
        try:
            response = session.get(f"{settings.base_url}/query", params=params,
                                   timeout=(settings.connect_timeout_s, read_timeout))
        except requests.RequestException as err:
            # ``from None``: the chained urllib3 error would carry the URL, key included.
            raise FetchError(_request_error_kind(err), redact(str(err))[:300]) from None
        finally:
            if tally is not None:
                tally.api_calls += 1
                tally.http_retries += counter[0] - retries_before
        if response.status_code != 200:
            raise FetchError("http_status", f"HTTP {response.status_code} after {counter[0] - retries_before} retries")
        return parse_response(response.content, symbol, settings.interval, params.get("entitlement"))
