"""A real HTTP receiver for alert webhooks on a free local port: records what it is sent, and can
refuse (HTTP 500) every request about given symbols."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class AlertReceiver:
    def __init__(self, failing_symbols: tuple[str, ...] = ()):
        self.received: list[dict] = []  # accepted alerts
        self.attempts: dict[str, int] = {}  # alert id -> requests seen, accepted or not
        self.failing = set(failing_symbols)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                alert = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.attempts[alert["id"]] = outer.attempts.get(alert["id"], 0) + 1
                    ok = alert["symbol"] not in outer.failing
                    if ok:
                        outer.received.append(alert)
                self.send_response(204 if ok else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts?token=not-logged"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ids(self) -> list[str]:
        with self.lock:
            return [a["id"] for a in self.received]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
