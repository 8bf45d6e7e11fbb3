"""The live local dashboard's backend: the page, its static files and a read-only JSON API.

    python -m dashboards.live.server [--port N] [--opensearch URL]

Defaults: ``DASHBOARD_PORT`` (8050) and the local OpenSearch on ``OPENSEARCH_PORT`` (9200).

The browser talks only to this server: it never learns where OpenSearch is and can ask only the
questions below. API (GET, JSON; errors are ``{"error": "..."}`` with a 4xx/5xx status):

    /api/health                                   OpenSearch reachable? 200 or 503
    /api/symbols                                  symbols with enriched bars, each with its freshness
    /api/bars?symbol=IBM[&limit=N][&after=T][&timeframe=1m|5m|15m]
                                                  enriched bars (1m) or candles (5m, 15m) in time order
                                                  (latest N, or from T on)
    /api/signals[?symbol=IBM][&since=T][&limit=N] signals, newest first (from T on)
    /api/alerts[?since=T][&limit=N]               alerts sent (``python -m alerts``), newest first

T is epoch milliseconds or ISO-8601 UTC. Charts come from the npm package ``lightweight-charts``,
served from ``dashboards/live/node_modules`` (``npm ci`` in ``dashboards/live`` installs it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from dashboards.live import params
from dashboards.live.alerts_reader import AlertsReader
from dashboards.live.freshness import freshness
from dashboards.live.opensearch_reader import OpenSearchUnavailable, Reader
from stack.services import Ports

log = logging.getLogger("dashboards.live")

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
CHARTS_JS = HERE / "node_modules" / "lightweight-charts" / "dist" / "lightweight-charts.standalone.production.js"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}
# The page loads only its own scripts and styles and talks only to this server.
PAGE_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
BARS_DEFAULT_LIMIT = 1000
SIGNALS_DEFAULT_LIMIT = 50
ALERTS_DEFAULT_LIMIT = 20
OPENSEARCH_DOWN = ("OpenSearch is unreachable; the dashboard retries by itself "
                   "(start it with `.venv/bin/python -m stack.services start opensearch`)")


def static_files() -> dict[str, Path]:
    """URL path -> file, fixed at start: nothing outside this map is ever read from disk."""
    files = {"/": STATIC_DIR / "index.html",
             "/vendor/lightweight-charts.standalone.production.js": CHARTS_JS}
    files.update({f"/static/{p.name}": p for p in STATIC_DIR.iterdir() if p.suffix in CONTENT_TYPES})
    return files


class DashboardHandler(BaseHTTPRequestHandler):
    server_version = "StockDashboard/1"
    reader: Reader  # set per server by make_server
    alerts: AlertsReader
    files: dict[str, Path]

    # --- routing ---------------------------------------------------------------------------------
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        api: dict[str, Callable[[dict], object]] = {
            "/api/health": self.health, "/api/symbols": self.symbols,
            "/api/bars": self.bars, "/api/signals": self.signals, "/api/alerts": self.recent_alerts,
        }
        if url.path in api:
            self.answer_api(api[url.path], query)
        elif url.path in self.files:
            self.send_file(self.files[url.path])
        else:
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no such path: {url.path}"})

    do_HEAD = do_GET  # noqa: N815 (same headers, no body: see send_body)

    def refuse(self) -> None:
        self.send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "read-only: only GET is served"},
                       {"Allow": "GET"})

    do_POST = do_PUT = do_DELETE = do_PATCH = refuse  # noqa: N815

    def answer_api(self, endpoint: Callable[[dict], object], query: dict) -> None:
        try:
            body = endpoint(query)
        except params.BadRequest as err:
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(err)})
        except OpenSearchUnavailable:
            self.send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": OPENSEARCH_DOWN})
        else:
            self.send_json(HTTPStatus.OK, body)

    # --- API -------------------------------------------------------------------------------------
    def health(self, query: dict) -> dict:
        return {"status": "ok", "opensearch": self.reader.health()}

    def symbols(self, query: dict) -> dict:
        now = datetime.now(timezone.utc)
        return {"symbols": [{**s, "freshness": freshness(s.get("last_ts"), s.get("last_source"), now).to_dict()}
                            for s in self.reader.symbols()]}

    def bars(self, query: dict) -> dict:
        symbol = params.symbol(query)
        limit = params.limit(query, BARS_DEFAULT_LIMIT)
        after = params.timestamp(query, "after")
        timeframe = params.timeframe(query)
        if timeframe == "1m":
            return {"symbol": symbol, "timeframe": timeframe, "bars": self.reader.bars(symbol, limit, after)}
        return {"symbol": symbol, "timeframe": timeframe,
                "bars": self.reader.candles(symbol, timeframe, limit, after)}

    def signals(self, query: dict) -> dict:
        symbol = params.symbol(query, required=False)
        limit = params.limit(query, SIGNALS_DEFAULT_LIMIT)
        since = params.timestamp(query, "since")
        return {"signals": self.reader.signals(limit, since, symbol)}

    def recent_alerts(self, query: dict) -> dict:
        return self.alerts.recent(params.limit(query, ALERTS_DEFAULT_LIMIT), params.timestamp(query, "since"))

    # --- responses -------------------------------------------------------------------------------
    def send_json(self, status: HTTPStatus, body: object, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        self.send_body(status, payload, "application/json", {"Cache-Control": "no-store", **(headers or {})})

    def send_file(self, path: Path) -> None:
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            hint = "run `npm ci` in dashboards/live" if path == CHARTS_JS else "the checkout is incomplete"
            self.send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"{path.name} is missing: {hint}"})
            return
        headers = {"Cache-Control": "no-cache"}
        if path.suffix == ".html":
            headers["Content-Security-Policy"] = PAGE_POLICY
        self.send_body(HTTPStatus.OK, payload, CONTENT_TYPES[path.suffix], headers)

    def send_body(self, status: HTTPStatus, payload: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_request(self, code="-", size="-") -> None:
        # The page polls every second: log only what went wrong.
        if isinstance(code, int) and code >= 400:
            log.warning("%s %s -> %s", self.command, self.path, code)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        log.warning(format, *args)  # what still reaches here are http.server's own error reports


def make_server(host: str, port: int, opensearch: str, index_prefix: str = "",
                alerts: AlertsReader | None = None) -> ThreadingHTTPServer:
    """A server bound to (host, port); port 0 picks a free one (see ``server_address``)."""
    handler = type("Handler", (DashboardHandler,), {
        "reader": Reader(opensearch, index_prefix), "files": static_files(), "alerts": alerts or AlertsReader(None)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.live.server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    ports = Ports.from_env()
    parser.add_argument("--port", type=int, default=ports.dashboard,
                        help=f"port to listen on; 0 picks a free one (default: DASHBOARD_PORT or {ports.dashboard})")
    parser.add_argument("--opensearch", default=ports.url("opensearch"),
                        help=f"OpenSearch base URL (default: {ports.url('opensearch')}, from OPENSEARCH_PORT)")
    parser.add_argument("--index-prefix", default="", help="prefix of the index names (default: none)")
    parser.add_argument("--alerts-table", help="DynamoDB table of the alerts (default: no alerts feed)")
    parser.add_argument("--dynamodb", help="DynamoDB endpoint URL of the alerts table (default: AWS's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not CHARTS_JS.exists():
        log.warning("lightweight-charts is not installed, the page cannot draw charts: "
                    "run `npm ci` in dashboards/live (or `make setup`)")
    try:
        server = make_server(args.host, args.port, args.opensearch, args.index_prefix,
                             AlertsReader(args.alerts_table, args.dynamodb))
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port} ({err.strerror}); "
              "choose another port with --port", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    print(f"live dashboard on http://{host}:{port}/ (reading {args.opensearch})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
