"""The application factory: the composition root that wires every layer together."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify

from mdm.appctx import Hikeshi, close_db_session
from mdm.config import Settings
from mdm.db import ensure_migrated, make_engine, make_session_factory
from mdm.push.dispatcher import PushDispatcher

log = logging.getLogger(__name__)


def build_app(settings: Settings | None = None, *, check_migrations: bool = True, **overrides: Any) -> Flask:
    settings = settings or Settings.from_env(**overrides)
    engine = make_engine(settings.database_url)
    if check_migrations:
        ensure_migrated(engine)
    factory = make_session_factory(engine)
    dispatcher = PushDispatcher(factory, settings)
    dispatcher.install()

    app = Flask(__name__)
    app.config.update(SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=None, JSON_SORT_KEYS=False)
    app.extensions["hikeshi"] = Hikeshi(settings, engine, factory, dispatcher)
    app.teardown_appcontext(close_db_session)
    load_services()
    _register_blueprints(app)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    return app


def load_services() -> None:
    """Import the services whose hooks (result handlers, enrollment hooks) must be registered."""
    import commands.kinds  # noqa: F401


def _register_blueprints(app: Flask) -> None:
    from mdm.apple import checkin, connect

    app.register_blueprint(checkin.bp)
    app.register_blueprint(connect.bp)
