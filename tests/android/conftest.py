"""Fixtures for the Android agent tests: the enrollment app (built-in CA, org tree, tokens) served
over real HTTP on loopback, and reference agents talking to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.enrollment import conftest as enrollment_fixtures
from tests.support.android_agent import ReferenceAgent

# The enrollment tests' fixtures: built-in CA, app without APNs, live server, org tree, tokens.
enroll_settings = enrollment_fixtures.enroll_settings
provisioned_ca = enrollment_fixtures.provisioned_ca
enroll_app = enrollment_fixtures.enroll_app
enroll_client = enrollment_fixtures.enroll_client
live_server = enrollment_fixtures.live_server
tree = enrollment_fixtures.tree
make_token = enrollment_fixtures.make_token


@pytest.fixture
def android_token(make_token: Any, tree: Any) -> Callable[..., str]:
    """The secret of a fresh android enrollment token for a unit (default: the ambulance)."""

    def make(unit: Any = None, *, uses: int = 1) -> str:
        return make_token(unit or tree.ambulance, uses=uses, platform="android").secret

    return make


@pytest.fixture
def agent_factory(live_server: Any) -> Any:
    agents: list[ReferenceAgent] = []

    def make(**kwargs: Any) -> ReferenceAgent:
        agent = ReferenceAgent(live_server.url, **kwargs)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.http.close()
