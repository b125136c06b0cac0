"""`hikeshi serve`: gunicorn with threaded workers, the app built once per worker."""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.app.base import BaseApplication

from mdm.config import Settings
from mdm.push.certificates import expiry_warning

log = logging.getLogger("hikeshi")


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):  # type: ignore[no-untyped-def]
        from mdm import create_app

        return create_app(self._settings)


def startup_warnings(settings: Settings) -> list[str]:
    from mdm.db import make_engine, make_session_factory
    from mdm.push.certificates import active_push_certificate

    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            warning = expiry_warning(active_push_certificate(session))
    finally:
        engine.dispose()
    return [warning] if warning else []


def run_server(settings: Settings, *, host: str, port: int, workers: int, threads: int) -> None:
    for warning in startup_warnings(settings):
        print(f"WARNING: {warning}", flush=True)
    url = f"http://{host}:{port}/"
    print(f"Hikeshi MDM listening on {url} (public URL {settings.public_url})", flush=True)
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 120,
        "graceful_timeout": 20,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": "info",
    }
    _Server(settings, options).run()
