"""Apps and Books fixtures: the service simulator on loopback and a token uploaded for it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.support.vpp_service import RunningVppService, VolumePurchaseService, token_file

# The secret inside the test token: searched for in logs, audit and answers.
SECRET = "c2VjcmV0LWxvY2F0aW9uLXRva2VuLTQ0"


@pytest.fixture
def vpp_file() -> str:
    return token_file(secret=SECRET)


@pytest.fixture
def vpp(vpp_file: str) -> Any:
    running = RunningVppService(VolumePurchaseService(vpp_file))
    yield running
    running.stop()


@pytest.fixture
def vpp_settings(settings: Any, vpp: Any) -> Any:
    return replace(settings, vpp_url=vpp.url)


@pytest.fixture
def uploaded(vpp_settings: Any, session_factory: Any, vpp_file: str) -> int:
    from mdm.ground.audit import Actor
    from mdm.services.vpp.token import store_token

    with session_factory() as session:
        row = store_token(
            session, vpp_settings, vpp_file.encode(), actor=Actor("admin:test", "admin", "127.0.0.1")
        )
        session.commit()
        return row.id
