"""The live local dashboard in a real headless Chromium, against the real local OpenSearch.

The backend runs as ``make run`` starts it (``python -m dashboards.live.server``) and reads the real
indices; the test owns its data through a symbol of its own: enriched bars computed by the job's own
analyzer, indexed with the bulk API. Chromium is Debian's (/usr/bin/chromium), driven by Playwright
without any browser download. With ``DASHBOARD_SCREENSHOT=PATH`` (``make screenshot``) it also saves
the populated page there, the README's docs/dashboard.png; otherwise the tree is left as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
import requests
from opensearchpy import TransportError

from flink_job.core.analyzer import Analyzer
from flink_job.core.index_lifecycle import BY_NAME
from stack import resources
from tests.bar_data import generate_bars
from tests.local_aws import OPENSEARCH_URL, opensearch_client
from tests.pipeline_harness import unique_symbol

INDICATORS, SIGNALS = BY_NAME["stock-indicators"], BY_NAME["stock-signals"]

ROOT = Path(__file__).resolve().parent.parent
OPENSEARCH = OPENSEARCH_URL
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = os.environ.get("DASHBOARD_SCREENSHOT")
CANDLES = 150
PATTERN_BAR = 40  # the bar of the series that carries a candlestick pattern
WAIT_MS = 10_000  # generous for slow machines; every wait ends as soon as the DOM condition holds


# --- data ------------------------------------------------------------------------------------------
def last_weekday() -> date:
    """Recent data keeps the test's signals at the top of the all-symbol feed."""
    day = datetime.now(timezone.utc).date() - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def enriched_series(symbol: str) -> list[dict]:
    """CANDLES + 1 consecutive regular-hours enriched bars, as the job writes them; the last one has
    signals and is held back to arrive while the page is open."""
    mapped = set(resources.index_templates()["stock-indicators"]["template"]["mappings"]["properties"])
    analyzer = Analyzer()
    records = [analyzer.update(bar).to_record() for bar in generate_bars(8, days=(last_weekday(),), symbol=symbol)]
    regular = [i for i, r in enumerate(records) if r["session"] == "regular" and r["sma_50"] is not None]
    # A window of moving prices (the generator also makes flat runs) followed by a bar with signals
    end = next(i for i in regular[CANDLES:] if records[i]["signals"] and records[i - CANDLES]["session"] == "regular"
               and all(r["high"] > r["low"] for r in records[i - CANDLES:i]))
    chosen = [{k: v for k, v in r.items() if k in mapped} for r in records[end - CANDLES:end + 1]]
    # A candlestick pattern that is a signal, on a bar the page draws from the start.
    marked = chosen[PATTERN_BAR]
    marked["patterns"] = {"CDLENGULFING": 100, "CDLDOJI": 100}
    marked["signals"] = [*marked["signals"], {"type": "candle_pattern", "direction": "up", "value": 100.0,
                                              "detail": "CDLENGULFING", "timeframe": "1m"}]
    return chosen


def bulk_index(docs: list[dict]) -> None:
    """Enriched bars and their signals into the real indices, ids and index names as the job writes
    them, then refresh."""
    lines = []
    for doc in docs:
        lines += [{"index": {"_index": INDICATORS.index_for(doc["ts"]), "_id": f"{doc['symbol']}|{doc['ts']}"}}, doc]
        for signal in doc["signals"]:
            lines += [{"index": {"_index": SIGNALS.index_for(doc["ts"]),
                                 "_id": f"{doc['symbol']}|{doc['ts']}|{signal_key(signal)}"}},
                      {"symbol": doc["symbol"], "ts": doc["ts"], **signal}]
    send_bulk(lines)


def unindex(docs: list[dict]) -> None:
    """Take documents indexed by ``bulk_index`` out again."""
    lines = []
    for doc in docs:
        lines.append({"delete": {"_index": INDICATORS.index_for(doc["ts"]), "_id": f"{doc['symbol']}|{doc['ts']}"}})
        lines += [{"delete": {"_index": SIGNALS.index_for(doc["ts"]),
                              "_id": f"{doc['symbol']}|{doc['ts']}|{signal_key(s)}"}} for s in doc["signals"]]
    send_bulk(lines)


def signal_key(signal: dict) -> str:
    """The last part of a signal's document id, as the job makes it (schema.SIGNAL_KEY_SQL)."""
    if signal["type"] == "candle_pattern":
        return f"candle_pattern:{signal['detail']}"
    timeframe = signal.get("timeframe", "1m")
    return signal["type"] if timeframe == "1m" else f"{signal['type']}:{timeframe}"


def five_minute_candles(bars: list[dict]) -> list[dict]:
    """The bars' 5-minute candles as the job's rollup documents: OHLCV, final ones with an RSI."""
    windows: dict[str, list[dict]] = {}
    for bar in bars:
        start = datetime.fromisoformat(bar["ts"].replace("Z", "+00:00"))
        start -= timedelta(minutes=start.minute % 5)
        windows.setdefault(start.strftime("%Y-%m-%dT%H:%M:%SZ"), []).append(bar)
    candles = []
    for i, (start, group) in enumerate(sorted(windows.items())):
        last = i == len(windows) - 1
        candles.append({"symbol": group[0]["symbol"], "window_start": start,
                        "window_end": (datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(minutes=5))
                        .strftime("%Y-%m-%dT%H:%M:%SZ"), "timeframe": "5m", "open": group[0]["open"],
                        "high": max(b["high"] for b in group), "low": min(b["low"] for b in group),
                        "close": group[-1]["close"], "volume": sum(b["volume"] for b in group),
                        "bar_count": len(group), "provisional": last, "rsi_14": None if last else 40.0 + i % 20})
    return candles


def send_bulk(lines: list[dict]) -> None:
    answer = opensearch_client().bulk(body=lines, refresh=True)
    assert not answer["errors"], json.dumps(answer)[:1000]


@pytest.fixture(scope="module")
def opensearch() -> str:
    try:
        opensearch_client(timeout_s=5).cluster.health()
    except TransportError as err:
        pytest.fail(f"local OpenSearch is not reachable at {OPENSEARCH} ({err}); "
                    "start it with: .venv/bin/python -m stack.services start opensearch")
    resources.ensure_index_templates(OPENSEARCH)  # a fresh cluster maps the test's documents like the job's
    return OPENSEARCH


@pytest.fixture(scope="module")
def series(opensearch) -> Iterator[tuple[str, list[dict]]]:
    """(symbol, bars): the first CANDLES bars are indexed, the last one is for the test to add."""
    symbol = unique_symbol("DSH")
    bars = enriched_series(symbol)
    bulk_index(bars[:-1])
    yield symbol, bars
    remove_symbol(symbol)


def remove_symbol(symbol: str) -> None:
    """Every document of the symbol out of the shared indices (the local distribution has no
    _delete_by_query: search the ids, then delete them in bulk)."""
    lines = []
    for index in ("stock-indicators", "stock-signals"):
        answer = opensearch_client().search(index=index, body={
            "query": {"term": {"symbol": symbol}}, "size": 10_000, "_source": False})
        lines += [{"delete": {"_index": hit["_index"], "_id": hit["_id"]}} for hit in answer["hits"]["hits"]]
    if lines:
        send_bulk(lines)


# --- servers ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Backend:
    """``python -m dashboards.live.server`` on a free port, as ``make run`` starts it."""

    def __init__(self, opensearch: str, *extra: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dashboards.live.server", "--port", "0", "--opensearch", opensearch, *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        assert "http://" in line, f"the dashboard server did not start: {line}{self.proc.stdout.read()}"
        self.url = line.split()[3]
        # Keep draining its output so a chatty server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def backend_factory() -> Iterator:
    started: list[Backend] = []

    def start(opensearch: str = OPENSEARCH, *extra: str) -> Backend:
        started.append(Backend(opensearch, *extra))
        return started[-1]

    yield start
    for backend in started:
        backend.stop()


class TcpRelay:
    """A port that refuses connections until ``open``, then relays them to OpenSearch: the cluster
    going away and coming back, as the backend sees it."""

    def __init__(self, port: int, upstream: tuple[str, int]):
        self.port, self.upstream = port, upstream
        self.listener: socket.socket | None = None

    def open(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def close(self) -> None:
        if self.listener:
            self.listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


# --- browser ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: apt-get install -y chromium (see the Makefile's setup)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, viewport={"width": 1440, "height": 900})
        yield context
        context.close()


@pytest.fixture
def page(browser_context):
    page = browser_context.new_page()
    page.problems = []
    page.on("pageerror", lambda err: page.problems.append(f"page error: {err}"))
    page.on("console", lambda msg: msg.type == "error" and page.problems.append(f"console: {msg.text}"))
    yield page
    page.close()


def wait_state(page, condition: str, arg=None) -> None:
    """Wait until ``condition`` (a JS function of (state, arg)) holds for window.dashboardState."""
    page.wait_for_function(f"(arg) => window.dashboardState && ({condition})(window.dashboardState, arg)",
                           arg=arg, timeout=WAIT_MS)


def state(page) -> dict:
    return page.evaluate("() => window.dashboardState")


# --- tests -----------------------------------------------------------------------------------------
def test_the_page_draws_the_symbols_candles_indicators_and_signals(page, series, backend_factory, tmp_path):
    symbol, bars = series
    backend = backend_factory()
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{backend.url}?symbol={symbol}")
    wait_state(page, "(s, n) => s.status === 'ok' && s.candles === n && s.feed > 0", CANDLES)

    assert page.locator("#chart").get_attribute("data-candles") == str(CANDLES)
    assert page.locator("#symbol-picker").input_value() == symbol
    assert symbol in page.locator("#symbol-picker option").all_inner_texts()
    latest = bars[CANDLES - 1]
    assert page.locator("#quote strong").inner_text() == f"{latest['close']:,.2f}"
    indicators = dict(zip(page.locator("#indicators dt").all_inner_texts(),
                          page.locator("#indicators dd").all_inner_texts()))
    assert indicators["SMA 20"] == f"{latest['sma_20']:,.2f}" and indicators["RSI 14"] == f"{latest['rsi_14']:,.2f}"
    assert indicators["VWAP"] == f"{latest['vwap']:,.2f}"
    assert page.locator("#signal-feed tr").count() > 0
    assert page.locator("#error-banner").is_hidden() and page.locator("#empty-state").is_hidden()
    assert state(page)["lastBarTime"] == int(datetime.fromisoformat(latest["ts"].replace("Z", "+00:00")).timestamp())
    assert page.problems == []
    assert all(url.startswith(backend.url) or url.startswith("data:") for url in requested), (
        "the page must talk only to its backend")

    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")  # painted
    page.screenshot(path=str(tmp_path / "dashboard.png"))
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000, "the screenshot is (nearly) empty"
    if SCREENSHOT:
        shutil.copyfile(tmp_path / "dashboard.png", SCREENSHOT)


def test_a_new_bar_appears_without_a_reload(page, series, backend_factory):
    symbol, bars = series
    backend = backend_factory()
    page.goto(f"{backend.url}?symbol={symbol}")
    wait_state(page, "(s, n) => s.status === 'ok' && s.candles === n", CANDLES)
    page.evaluate("() => { window.sameDocument = true; }")

    new_bar = bars[CANDLES]
    started = time.monotonic()
    bulk_index([new_bar])
    try:
        wait_state(page, "(s, n) => s.candles === n", CANDLES + 1)
        arrived_s = time.monotonic() - started
        check_new_bar_shown(page, symbol, new_bar)
    finally:
        unindex([new_bar])  # the other tests expect the series as the fixture indexed it
    assert arrived_s < 5, f"the new bar took {arrived_s:.1f}s to appear"
    assert page.problems == []


def check_new_bar_shown(page, symbol: str, new_bar: dict) -> None:
    """The chart, the quote and the signal feed all show the bar that arrived."""
    assert page.evaluate("() => window.sameDocument") is True, "the page reloaded"
    assert page.locator("#chart").get_attribute("data-candles") == str(CANDLES + 1)
    assert page.locator("#quote strong").inner_text() == f"{new_bar['close']:,.2f}"
    signal = new_bar["signals"][0]["type"].replace("_", " ")
    shown_time = new_bar["ts"][5:16].replace("T", " ")  # the feed's "MM-DD HH:MM"
    row = page.locator("#signal-feed tr", has_text=symbol).filter(has_text=signal).filter(has_text=shown_time)
    row.first.wait_for(timeout=WAIT_MS)


def test_an_unknown_symbol_shows_an_empty_state(page, series, backend_factory):
    backend = backend_factory()
    missing = unique_symbol("NONE")
    page.goto(f"{backend.url}?symbol={missing}")
    wait_state(page, "(s) => s.status === 'empty' && s.symbols.length > 0")
    assert page.locator("#empty-state").is_visible()
    assert page.locator("#empty-title").inner_text() == f"Unknown symbol {missing}"
    assert state(page)["candles"] == 0
    assert page.locator("#indicators dd").first.inner_text() == "—"


def test_no_data_at_all_shows_an_empty_state(page, opensearch, backend_factory):
    backend = backend_factory(opensearch, "--index-prefix", f"absent-{uuid.uuid4().hex[:8]}-")
    page.goto(backend.url)
    wait_state(page, "(s) => s.status === 'empty'")
    assert page.locator("#empty-title").inner_text() == "No data yet"
    assert "make run" in page.locator("#empty-text").inner_text()
    assert page.locator("#symbol-picker option").count() == 0
    assert page.locator("#feed-empty").is_visible()
    assert page.problems == []


def test_opensearch_down_shows_an_error_and_the_page_recovers_by_itself(page, series, backend_factory):
    symbol, _ = series
    relay = TcpRelay(free_port(), ("127.0.0.1", int(OPENSEARCH.rsplit(":", 1)[1])))
    backend = backend_factory(f"http://127.0.0.1:{relay.port}")
    try:
        page.goto(f"{backend.url}?symbol={symbol}")
        wait_state(page, "(s) => s.status === 'error'")
        banner = page.locator("#error-banner")
        assert banner.is_visible() and "OpenSearch is unreachable" in banner.inner_text()
        assert page.locator("#live-text").inner_text().startswith("disconnected")

        relay.open()
        wait_state(page, "(s, n) => s.status === 'ok' && s.candles === n", CANDLES)
        assert banner.is_hidden()
    finally:
        relay.close()


# --- the API without a browser ---------------------------------------------------------------------
def test_the_api_is_read_only_validates_its_input_and_answers_json(series, backend_factory):
    symbol, bars = series
    url = backend_factory().url
    get = lambda path: requests.get(url + path.lstrip("/"), timeout=10)  # noqa: E731

    assert get("/api/health").json()["status"] == "ok"
    assert symbol in [s["symbol"] for s in get("/api/symbols").json()["symbols"]]
    assert len(get(f"/api/bars?symbol={symbol}&limit=10").json()["bars"]) == 10
    after = get(f"/api/bars?symbol={symbol}&after={bars[CANDLES - 3]['ts']}").json()["bars"]
    assert [b["ts"] for b in after] == [b["ts"] for b in bars[CANDLES - 3:CANDLES]]
    signals = get(f"/api/signals?symbol={symbol}&limit=5").json()["signals"]
    assert signals and all(s["symbol"] == symbol for s in signals)
    assert get("/vendor/lightweight-charts.standalone.production.js").text.count("LightweightCharts") > 0

    for path, status in [("/api/bars", 400), ("/api/bars?symbol=ibm", 400), (f"/api/bars?symbol={symbol}&limit=0", 400),
                         (f"/api/bars?symbol={symbol}&limit=99999", 400), (f"/api/bars?symbol={symbol}&after=soon", 400),
                         ("/api/signals?since=yesterday", 400), ("/api/nothing", 404), ("/static/../server.py", 404)]:
        response = get(path)
        assert response.status_code == status, path
        assert response.headers["Content-Type"] == "application/json" and response.json()["error"]
    refused = requests.post(url + "api/bars", timeout=10)
    assert refused.status_code == 405 and refused.headers["Allow"] == "GET"


def test_each_symbols_freshness_is_shown_beside_the_picker(page, series, backend_factory):
    """Stale (the fixture's bars are from the last weekday), live (a bar that ended a minute ago) and
    replay (sample data put by the replay) as the page shows them."""
    symbol, bars = series
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    live, replay = unique_symbol("LIV"), unique_symbol("RPL")
    recent = dict(bars[0], symbol=live, ts=(now - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ"), signals=[])
    replayed = dict(bars[0], symbol=replay, source="replay", signals=[])
    bulk_index([recent, replayed])
    backend = backend_factory()
    try:
        for name, state_, label in ((symbol, "stale", "stale since "), (live, "live", "live"),
                                    (replay, "replay", "replay of sample data")):
            page.goto(f"{backend.url}?symbol={name}")
            badge = page.locator("#freshness")
            page.wait_for_function("([s]) => document.querySelector('#freshness').dataset.state === s",
                                   arg=[state_], timeout=WAIT_MS)
            assert badge.inner_text().startswith(label), (name, badge.inner_text())
            assert badge.is_visible()
    finally:
        unindex([recent, replayed])
    assert page.problems == []


def test_the_timeframe_switch_redraws_candles_and_indicators_at_that_length(page, series, backend_factory):
    symbol, bars = series
    candles = five_minute_candles(bars[:-1])
    family = BY_NAME["stock-bars-5m"]
    send_bulk([line for c in candles for line in (
        {"index": {"_index": family.index_for(c["window_start"]), "_id": f"{symbol}|{c['window_start']}"}}, c)])
    backend = backend_factory()
    try:
        page.goto(f"{backend.url}?symbol={symbol}")
        wait_state(page, "(s, n) => s.status === 'ok' && s.candles === n", CANDLES)
        assert state(page)["patternMarkers"] == 1, "the bar's candlestick pattern is marked"
        page.locator("#timeframe button[data-timeframe='5m']").click()
        wait_state(page, "(s, n) => s.timeframe === '5m' && s.status === 'ok' && s.candles === n", len(candles))
        assert page.locator("#legend-candles").inner_text() == "5-min candles"
        assert page.locator("#timeframe button[aria-pressed='true']").inner_text() == "5m"
        assert "timeframe=5m" in page.url
        last_final = candles[-2]
        assert state(page)["lastBarTime"] == int(datetime.fromisoformat(
            candles[-1]["window_start"].replace("Z", "+00:00")).timestamp())
        indicators = dict(zip(page.locator("#indicators dt").all_inner_texts(),
                              page.locator("#indicators dd").all_inner_texts()))
        assert indicators["Close"] == f"{candles[-1]['close']:,.2f}" and indicators["RSI 14"] == "—", \
            "the open candle is provisional: no indicators yet"
        assert last_final["rsi_14"] is not None
        page.locator("#timeframe button[data-timeframe='1m']").click()
        wait_state(page, "(s, n) => s.timeframe === '1m' && s.candles === n", CANDLES)
        assert page.locator("#legend-candles").inner_text() == "1-min candles"
    finally:
        send_bulk([{"delete": {"_index": family.index_for(c["window_start"]), "_id": f"{symbol}|{c['window_start']}"}}
                   for c in candles])
    assert page.problems == []
