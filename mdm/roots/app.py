"""The application factory: the composition root that wires every layer together."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from mdm.doors.appctx import Hikeshi, close_db_session
from mdm.ground.config import Settings
from mdm.ground.db import ensure_migrated, make_engine, make_session_factory, transaction
from mdm.ground.transport import check_public_url
from mdm.roots.wiring import wire
from mdm.services.android_channel.policy_basis import raise_policy_generation

log = logging.getLogger(__name__)


def build_app(settings: Settings | None = None, *, check_migrations: bool = True, **overrides: Any) -> Flask:
    settings = settings or Settings.from_env(**overrides)
    for warning in check_public_url(settings):  # raises TransportError for an unsafe public URL
        log.warning("%s", warning)
    engine = make_engine(settings.database_url)
    if check_migrations:
        ensure_migrated(engine)
    factory = make_session_factory(engine)
    # What every commit of the app runs (mdm.roots.wiring): inventory settled and compliance
    # evaluated, readiness recomputed, then pushes, MQTT wake-ups, readiness webhooks and the
    # sealing of its audit events into the hash chain.
    wiring = wire(factory, settings)
    assert wiring.dispatcher is not None
    wiring.dispatcher.start()  # the MQTT wake-up connection, only when HIKESHI_MQTT_URL is set
    # PostgreSQL: this process's one listening connection, so a command or readiness change
    # committed on any node wakes the long polls and readiness streams held here.
    assert wiring.signals is not None
    wiring.signals.start()

    app = Flask(__name__)
    app.config.update(SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=None, JSON_SORT_KEYS=False)
    app.extensions["hikeshi"] = Hikeshi(settings, engine, factory, wiring.dispatcher, wiring.commands)
    app.extensions["hikeshi.wiring"] = wiring
    app.teardown_appcontext(close_db_session)
    provision_builtin_ca(factory, settings)
    with transaction(factory) as session:
        # This process's code may render an agent's policy differently from the last one's (a new
        # release): every agent's next sync builds its policy again, once.
        raise_policy_generation(session)
    _register_blueprints(app)

    return app


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

    from mdm.doors.ade import http as ade_http
    from mdm.doors.enrollment import http as enrollment_http
    from mdm.doors.scep import views as scep_views

    app.register_blueprint(scep_views.bp)
    app.register_blueprint(enrollment_http.bp)
    app.register_blueprint(ade_http.bp)

    from mdm.doors.apps import http as apps_http

    app.register_blueprint(apps_http.bp)


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
