"""Serving a simulated Apple web service on 127.0.0.1 (a free port) in a thread, for tests.

The handler reads the simulator's state as `self.server.service`.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ServiceServer(ThreadingHTTPServer):
    daemon_threads = True
    service: Any


class QuietHandler(BaseHTTPRequestHandler):
    server: ServiceServer

    def log_message(self, format: str, *args: Any) -> None:
        return


class LoopbackService:
    """`service` answered by `handler` until stop(); `url` ends with the service's `base_path`."""

    def __init__(self, service: Any, handler: type[QuietHandler], base_path: str = "") -> None:
        self.service = service
        self._base_path = base_path
        self._server = ServiceServer(("127.0.0.1", 0), handler)
        self._server.service = service
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self._base_path}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
