"""The application factory: the composition root that wires every layer together."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from mdm.doors.appctx import Hikeshi, close_db_session
from mdm.ground.config import Settings
from mdm.ground.db import ensure_migrated, make_engine, make_session_factory, transaction
from mdm.ground.push.dispatcher import PushDispatcher
from mdm.ground.transport import check_public_url
from mdm.roots.commands import wire_commands

log = logging.getLogger(__name__)


def build_app(settings: Settings | None = None, *, check_migrations: bool = True, **overrides: Any) -> Flask:
    settings = settings or Settings.from_env(**overrides)
    for warning in check_public_url(settings):  # raises TransportError for an unsafe public URL
        log.warning("%s", warning)
    engine = make_engine(settings.database_url)
    if check_migrations:
        ensure_migrated(engine)
    factory = make_session_factory(engine)
    # Command results need the settings (wipe certificates are signed at the acknowledgement)
    # and the profile services; queued commands, the configured lifetime.
    wire_commands(factory, settings)
    dispatcher = PushDispatcher(factory, settings)
    dispatcher.install()
    dispatcher.start()  # the MQTT wake-up connection, only when HIKESHI_MQTT_URL is set

    app = Flask(__name__)
    app.config.update(SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=None, JSON_SORT_KEYS=False)
    app.extensions["hikeshi"] = Hikeshi(settings, engine, factory, dispatcher)
    app.teardown_appcontext(close_db_session)
    load_services()
    provision_builtin_ca(factory, settings)
    _register_blueprints(app)

    return app


def load_services() -> None:
    """Import the services whose hooks (result handlers, enrollment hooks) must be registered."""
    # The first inventory after enrollment, compliance after every result; profile installs on
    # enrollment. (What a command's result does is its class's: commands.catalog.)
    import enrollment.hooks  # noqa: F401
    import profiles.assignment  # noqa: F401


def _register_blueprints(app: Flask) -> None:
    from mdm.doors import health
    from mdm.doors.android import http as android_http
    from mdm.doors.apple import checkin, connect

    health.register(app)
    app.register_blueprint(checkin.bp)
    app.register_blueprint(connect.bp)
    app.register_blueprint(android_http.bp)

    from web import init_web

    init_web(app)

    from mdm.doors.enrollment import http as enrollment_http
    from mdm.doors.scep import views as scep_views

    app.register_blueprint(scep_views.bp)
    app.register_blueprint(enrollment_http.bp)


def provision_builtin_ca(factory: sessionmaker[Session], settings: Settings) -> None:
    """Create the built-in CA and profile signer on first start (idempotent).

    Several workers may start at once: each tries inside its own transaction, the unique
    (purpose, generation) row lets exactly one win, and the others roll back and find it.
    """
    from sqlalchemy.exc import IntegrityError

    from mdm.ground.ca import ensure_ca

    for attempt in range(3):
        try:
            with transaction(factory) as session:
                created = ensure_ca(session, settings)
            if created:
                log.info("created built-in %s", ", ".join(created))
            return
        except IntegrityError:
            if attempt == 2:
                raise
