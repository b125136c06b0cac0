"""Every Android agent error is the protocol's JSON body, the database being away included
(docs/android-agent-protocol.md, "Errors"); the rest of the server keeps its own formats."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import create_engine

from tests.support.android_agent import ReferenceAgent


def test_database_unavailable_is_a_json_503_with_retry_after(
    agent_factory: Any, android_token: Any, enroll_app: Any, live_server: Any
) -> None:
    agent: ReferenceAgent = agent_factory()
    agent.enroll(android_token())
    ext = enroll_app.extensions["hikeshi"]
    working = ext.session_factory.kw["bind"]
    # A real connection refused (nothing listens on port 9), as during a database outage.
    broken = create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 1}
    )
    ext.session_factory.configure(bind=broken)
    try:
        response = agent.request("POST", "/android/v1/sync", {"results": []})
        wait = agent.request("GET", "/android/v1/wait?timeout=0")
    finally:
        ext.session_factory.configure(bind=working)
        broken.dispose()
    for answer in (response, wait):
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.headers["Retry-After"] == "30"
        assert answer.json() == {
            "protocol": 1,
            "error": "unavailable",
            "message": "the server cannot answer now; retry later",
        }
    # Back to normal once the database is back.
    assert agent.request("POST", "/android/v1/sync", {"results": []}).status_code == 200


def test_unknown_paths_and_wrong_methods_are_json(live_server: Any) -> None:
    with httpx.Client(base_url=live_server.url) as http:
        wrong_method = http.get("/android/v1/enroll")
        unknown = http.post("/android/v1/nothing-here", json={})
        elsewhere = http.get("/no-such-page")
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "POST"
    assert wrong_method.json() == {"protocol": 1, "error": "method_not_allowed", "message": "use POST"}
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    # Outside the agent protocol nothing changes.
    assert elsewhere.status_code == 404 and not elsewhere.headers["content-type"].startswith(
        "application/json"
    )
