"""The APNs client's pool of HTTP/2 connections (mdm.ground.push.h2pool) against the real HTTP/2
TLS stand-in: streams bounded by the server's SETTINGS_MAX_CONCURRENT_STREAMS and by our own cap,
a second connection only when the open ones are full, and no answer lost when a connection goes."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from mdm.ground.push.apns import ApnsClient, PushCredentials, PushOutcome
from tests.support.apns_server import ApnsTestServer, start_apns_server

FAST = {"backoff_base": 0.01, "backoff_cap": 0.05}


def token() -> str:
    return secrets.token_hex(32)


def push_all(server: ApnsTestServer, creds: PushCredentials, count: int, **options) -> list[PushOutcome]:
    async def run() -> list[PushOutcome]:
        async with ApnsClient(server.url, creds, ca_file=server.ca_file, **options) as client:
            return await client.push_many([(token(), f"magic-{i}") for i in range(count)])

    return asyncio.run(run())


@pytest.fixture
def limited_server(tmp_path) -> ApnsTestServer:  # type: ignore[misc]
    """A stand-in that allows only 5 concurrent streams per connection, as APNs may."""
    server = start_apns_server(tmp_path / "limited", max_concurrent_streams=5)
    server.set_delay(0.02)  # hold each answer a little, so streams overlap
    yield server
    server.stop()


def test_streams_per_connection_follow_the_servers_limit(limited_server: ApnsTestServer) -> None:
    creds = limited_server.issue_client_credentials()

    outcomes = push_all(limited_server, creds, 60, connections=1, max_concurrency=100)

    assert all(o.delivered and o.attempts == 1 for o in outcomes)
    assert limited_server.connection_count == 1
    assert limited_server.peak_streams_by_connection == {1: 5}  # concurrent, never above the limit
    assert limited_server.errors == []


def test_full_connections_bring_more_up_to_the_pool_size(limited_server: ApnsTestServer) -> None:
    creds = limited_server.issue_client_credentials()

    outcomes = push_all(limited_server, creds, 120, connections=3, max_concurrency=100)

    assert all(o.delivered and o.attempts == 1 for o in outcomes)
    assert limited_server.connection_count == 3
    peaks = limited_server.peak_streams_by_connection
    assert len(peaks) == 3 and max(peaks.values()) == 5
    assert limited_server.peak_streams_in_flight > 5  # the connections carried pushes side by side
    assert len({p.token for p in limited_server.pushes}) == 120


def test_light_traffic_keeps_one_connection(apns_server: ApnsTestServer) -> None:
    creds = apns_server.issue_client_credentials()
    apns_server.set_delay(0.01)

    outcomes = push_all(apns_server, creds, 50, connections=4, max_concurrency=100)

    assert all(o.delivered for o in outcomes)
    assert apns_server.tcp_connection_count == 1 and apns_server.connection_count == 1


def test_our_own_cap_bounds_each_connection(apns_server: ApnsTestServer) -> None:
    creds = apns_server.issue_client_credentials()
    apns_server.set_delay(0.02)

    outcomes = push_all(apns_server, creds, 60, connections=2, max_concurrency=7)

    assert all(o.delivered for o in outcomes)
    assert apns_server.connection_count == 2
    assert max(apns_server.peak_streams_by_connection.values()) == 7


def test_pushes_in_flight_on_a_dropped_connection_are_retried(apns_server: ApnsTestServer) -> None:
    creds = apns_server.issue_client_credentials()
    apns_server.set_delay(0.3)

    async def run() -> list[PushOutcome]:
        async def drop_midway() -> None:
            await asyncio.to_thread(apns_server.wait_for_pushes, 20)
            apns_server.set_delay(0)
            await asyncio.to_thread(apns_server.close_connections)  # GOAWAY with answers pending

        async with ApnsClient(apns_server.url, creds, ca_file=apns_server.ca_file, **FAST) as client:
            outcomes, _ = await asyncio.gather(
                client.push_many([(token(), "m") for _ in range(20)]), drop_midway()
            )
            return outcomes

    outcomes = asyncio.run(run())

    assert all(o.delivered for o in outcomes)
    assert all(o.attempts == 2 for o in outcomes)  # each lost its first answer, none was dropped
    assert apns_server.connection_count == 2


def test_pool_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="connections"):
        ApnsClient("https://127.0.0.1:1", PushCredentials("t", b"", b""), connections=0)


def test_waiting_for_a_free_stream_is_not_a_timeout(limited_server: ApnsTestServer) -> None:
    """Only the answer is timed: a push queued behind others is not given up (and then sent twice)."""
    creds = limited_server.issue_client_credentials()
    limited_server.set_delay(0.25)  # 40 pushes, 5 at a time: 2 s in all, each answered in 0.25 s

    outcomes = push_all(limited_server, creds, 40, connections=1, timeout=1.0, **FAST)

    assert all(o.delivered and o.attempts == 1 for o in outcomes)
    assert len(limited_server.pushes) == 40
